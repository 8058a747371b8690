"""Discover the files of a repository worth indexing, and why the others are skipped.

The scan only stats files (never reads them) so a warm restart over 10k unchanged files stays
cheap; content checks (binary, minified, encoding) happen when the indexer reads a file.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from codectxd.config import ScanSettings
from codectxd.ignore import IgnoreRules, is_secret_name
from codectxd.kinds import CODE, GENERATED, Attributes, kind_of_path
from codectxd.languages import language_for


@dataclass(slots=True, frozen=True)
class FileEntry:
    """A file to index: repository-relative POSIX path plus the stat fields we compare."""

    path: str
    size: int
    mtime_ns: int
    language: str
    kind: str = CODE  # codectxd.kinds, from the path (the content may still say generated)


@dataclass(slots=True, frozen=True)
class Skipped:
    path: str
    reason: str
    detail: str = ""


@dataclass(slots=True)
class ScanResult:
    files: list[FileEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: int = 0  # entries matched by ignore rules (directories count once)

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        self.skipped.append(Skipped(path, reason, detail))


class Scanner:
    """Walks one repository root applying ignore rules, the deny-list and the size limit."""

    def __init__(self, root: Path, settings: ScanSettings, rules: IgnoreRules | None = None):
        self.root = root
        self.settings = settings
        self.rules = rules or IgnoreRules(root, settings.ignore)
        self.attributes = Attributes(root)
        self._real_root = os.path.realpath(root)

    def scan(self, subdir: str = "") -> ScanResult:
        """Walk the repository (or one of its subdirectories) and classify every entry."""
        result = ScanResult()
        start = os.path.join(self.root, subdir) if subdir else str(self.root)
        if subdir and self.rules.is_ignored(subdir, is_dir=True):
            result.ignored += 1
            return result
        if subdir and (reason := self.resolved_reason(subdir, os.path.realpath(start))):
            result.skip(subdir, reason)  # reached through a symlinked directory
            return result
        seen_dirs: set[tuple[int, int]] = set()
        try:
            top = os.stat(start)
        except OSError:
            return result
        seen_dirs.add((top.st_dev, top.st_ino))
        stack = [(start, subdir)]
        while stack:
            abs_dir, rel_dir = stack.pop()
            try:
                with os.scandir(abs_dir) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if rel_dir:
                    result.skip(rel_dir, "unreadable", exc.strerror or str(exc))
                continue
            names = {entry.name for entry in entries}
            self.rules.listed(rel_dir, names)
            self.attributes.listed(rel_dir, names)
            subdirs: list[tuple[str, str]] = []
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                child = self._classify(entry, rel, result, seen_dirs)
                if child is not None:
                    subdirs.append((child, rel))
            stack.extend(reversed(subdirs))
        result.files.sort(key=lambda f: f.path)
        return result

    def _classify(
        self,
        entry: os.DirEntry[str] | _PathEntry,
        rel: str,
        result: ScanResult,
        seen_dirs: set[tuple[int, int]],
    ) -> str | None:
        """Record one directory entry; return its path when it is a directory to descend."""
        try:
            is_link = entry.is_symlink()
        except OSError as exc:
            result.skip(rel, "unreadable", exc.strerror or str(exc))
            return None
        try:
            is_dir = entry.is_dir(follow_symlinks=self.settings.follow_symlinks)
        except OSError as exc:  # following a link: ELOOP
            result.skip(rel, *_stat_error(exc, is_link))
            return None
        if "\n" in rel or "\r" in rel or not _is_utf8(rel):
            result.skip(
                rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), "bad_path"
            )
            return None
        if self.rules.decide(rel, is_dir):
            result.ignored += 1
            return None
        if is_link:
            target = os.path.realpath(entry.path)
            inside = self._inside(target)
            if not self.settings.follow_symlinks:
                result.skip(rel, "symlink" if inside else "symlink_outside")
                return None
            if not inside:
                result.skip(rel, "symlink_outside")
                return None
        if is_dir:
            try:
                st = entry.stat(follow_symlinks=self.settings.follow_symlinks)
            except OSError as exc:
                result.skip(rel, *_stat_error(exc, is_link))
                return None
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                result.skip(rel, "symlink_loop")
                return None
            seen_dirs.add(key)
            return entry.path
        self._classify_file(entry, rel, result)
        return None

    def _classify_file(
        self, entry: os.DirEntry[str] | _PathEntry, rel: str, result: ScanResult
    ) -> None:
        name = entry.name
        if self.settings.secrets_denylist and is_secret_name(name):
            result.skip(rel, "secret")
            return None
        language = language_for(rel, self.settings.extensions)
        if language is None:
            result.skip(rel, "unsupported")
            return None
        try:
            st = entry.stat(follow_symlinks=self.settings.follow_symlinks)
        except OSError as exc:
            result.skip(rel, *_stat_error(exc, entry.is_symlink()))
            return None
        if not stat.S_ISREG(st.st_mode):
            result.skip(rel, "not_regular")
            return None
        if st.st_size > self.settings.max_file_bytes:
            result.skip(rel, "too_large", f"{st.st_size} bytes > {self.settings.max_file_bytes}")
            return None
        kind = (
            GENERATED if self.attributes.generated(rel) else kind_of_path(rel, st.st_size, language)
        )
        if kind in self.settings.skip_kinds:
            result.skip(rel, kind)
            return None
        result.files.append(FileEntry(rel, st.st_size, st.st_mtime_ns, language, kind))
        return None

    def check_file(self, rel: str) -> FileEntry | Skipped | None:
        """Classify one path whose ignore rules the caller has checked (watcher events): an
        entry, a skip, or None (gone, or now a directory)."""
        parent = rel.rpartition("/")[0]
        if parent and (
            reason := self.resolved_reason(
                parent, os.path.realpath(os.path.join(self.root, parent))
            )
        ):
            # A parent directory was replaced by a symlink since the scan (e.g. `sub` → a link
            # to /elsewhere while `sub/mod.py` is queued): never read through it.
            return Skipped(rel, reason)
        result = ScanResult()
        entry = _PathEntry(os.path.join(self.root, rel))
        try:
            entry.stat(follow_symlinks=False)
        except OSError:
            return None  # gone
        if self._classify(entry, rel, result, set()) is not None:
            return None  # a directory: the caller rescans it
        if result.files:
            return result.files[0]
        return result.skipped[0] if result.skipped else None

    def _inside(self, real: str) -> bool:
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def resolved_reason(self, rel: str, real: str) -> str | None:
        """Why `rel`, whose resolved real path is `real`, must not be read (None: it may).

        Not following symlinks, a path is read only if no component of it is a link (it
        resolves to itself under the root); following them, only if it resolves inside the
        root.
        """
        if not self._inside(real):
            return "symlink_outside"
        if not self.settings.follow_symlinks and real != os.path.join(self._real_root, rel):
            return "symlink"
        return None


class _PathEntry:
    """The slice of `os.DirEntry` the classifier uses, for a single path (no scandir)."""

    __slots__ = ("path", "name")

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)

    def is_symlink(self) -> bool:
        return os.path.islink(self.path)

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=follow_symlinks)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode)

    def stat(self, follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(self.path, follow_symlinks=follow_symlinks)


def _stat_error(exc: OSError, is_link: bool) -> tuple[str, str]:
    """(reason, detail) for a failed stat: only ELOOP is a link loop; a link whose target is
    missing is unreadable (dangling)."""
    detail = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        return "symlink_loop", detail
    if is_link and exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "unreadable", f"dangling symbolic link ({detail})"
    return "unreadable", detail


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
