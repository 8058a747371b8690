"""Keep one repository's collection equal to its files on disk.

plan (scan + snapshot) → read, hash, split → embed (cache first) → store, per group of files,
following the per-file commit protocol (see `codectxd.snapshot`): embed first, so the old chunks
stay searchable until the new ones are ready; mark dirty; delete-by-path + insert; mark indexed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from codectxd.config import ScanSettings, Settings
from codectxd.embeddings.service import EmbedCancelled, Embedder
from codectxd.errors import CodectxError, ProviderError, StoreError
from codectxd.languages import extension_of
from codectxd.lexical import identifier_parts, lexical_text
from codectxd.scanner import FileEntry, Scanner, ScanResult, Skipped
from codectxd.snapshot import DIRTY, INDEXED, SKIPPED, FileState, IndexedFile, Snapshot
from codectxd.splitter import Chunk, Splitter
from codectxd.store import Row, Store

log = logging.getLogger(__name__)

#: Chunks embedded and written together; the memory manager may lower it.
DEFAULT_GROUP_CHUNKS = 256
#: Bump when the splitter or the text given to the embedder / BM25 changes: every collection
#: built with another version is re-split on its next full sync.
CHUNKING_VERSION = 4
_BINARY_PROBE_BYTES = 8192


def repo_key(root: Path) -> str:
    """A stable short key for a repository root (its resolved absolute path)."""
    return hashlib.blake2b(str(root).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


def chunk_id(repo: str, path: str, chunk: Chunk, content_hash: str) -> str:
    raw = f"{repo}\x00{path}\x00{chunk.start_line}\x00{chunk.end_line}\x00{content_hash}"
    return hashlib.blake2b(raw.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def embedding_text(path: str, chunk: Chunk) -> str:
    """What the embedding model reads for a chunk: the file path, the symbol spelled out in
    words, then the code.

    The path gives the model context the code alone lacks (module and package names); the
    words let a question in English meet `applyDiscountCode` (a sentence model tokenises
    identifiers into word pieces it barely understands).
    """
    words = " ".join(identifier_parts(chunk.symbol.replace(",", " "))) if chunk.symbol else ""
    header = f"{path} {words}" if words else path
    return f"{header}\n{chunk.content}"


@dataclass(slots=True)
class Progress:
    """A snapshot of one sync, passed to the progress callback."""

    phase: str = "idle"  # scanning | indexing | idle
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    errors: int = 0
    current: str = ""


@dataclass(slots=True)
class SyncReport:
    scanned: int = 0
    unchanged: int = 0
    files_read: int = 0
    indexed: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Where the time went (seconds): listing files, reading + hashing + splitting, computing
    # embeddings (cache lookups included), writing to the store + snapshot.
    scan_s: float = 0.0
    parse_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0


@dataclass(slots=True)
class _Prepared:
    entry: FileEntry
    hash: str
    chunks: list[Chunk]


class SyncCancelled(Exception):
    """The stop event was set; work done so far is committed, the rest stays pending."""


class RepoIndexer:
    """Indexes one repository into one collection."""

    def __init__(
        self,
        root: Path,
        collection: str,
        *,
        settings: Settings,
        store: Store,
        snapshot: Snapshot,
        embedder: Embedder,
        splitter: Splitter | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        group_chunks: Callable[[], int] | None = None,
        stop: threading.Event | None = None,
        between_groups: Callable[[], None] | None = None,
        on_commit: Callable[[int, int, float], None] | None = None,
        scan: ScanSettings | None = None,
    ) -> None:
        self.root = root
        self.key = repo_key(root)
        self.collection = collection
        self.settings = settings
        self.store = store
        self.snapshot = snapshot
        self.embedder = embedder
        self.splitter = splitter or Splitter(settings.splitter)
        self.scanner = Scanner(root, scan or settings.scan)
        self.on_progress = on_progress
        self.group_chunks = group_chunks or (lambda: DEFAULT_GROUP_CHUNKS)
        self.stop = stop or threading.Event()
        # Called between groups of a full sync, in its thread and holding the lock, so urgent
        # incremental changes (a file just saved) need not wait for a long initial index.
        self.between_groups = between_groups
        self.on_commit = on_commit
        self.last_scan: ScanResult | None = None
        self.progress = Progress()
        self._lock = threading.RLock()  # one sync at a time per repository (re-entrant: hook)
        self._in_full_sync = False

    def ensure_collection(self) -> None:
        self.store.ensure_collection(
            self.collection,
            self.embedder.dimension,
            {"root": str(self.root), "model": self.embedder.identity},
        )

    # --- entry points ---------------------------------------------------------------------

    def full_sync(self, force: bool = False) -> SyncReport:
        """Reconcile the whole repository with its snapshot (start-up, periodic, reindex).

        Unchanged files (same size and mtime_ns) are not read; `force` re-reads and re-splits
        every file (the embedding cache still avoids paying for unchanged text).
        """
        with self._lock:
            started = time.perf_counter()
            self.ensure_collection()
            self._set(phase="scanning", files_total=0, files_done=0, chunks_done=0, errors=0)
            scan_started = time.perf_counter()
            scan = self.scanner.scan()
            scan_s = time.perf_counter() - scan_started
            self.last_scan = scan
            known = self.snapshot.load(self.collection)
            on_disk = {entry.path: entry for entry in scan.files}
            gone = [path for path in known if path not in on_disk]
            fingerprint = self._chunking_fingerprint()
            if self.snapshot.get_meta(self.collection, "chunking") != fingerprint and known:
                log.info("%s: chunking settings changed; re-splitting every file", self.root)
                force = True
            report = SyncReport(scanned=len(scan.files), scan_s=scan_s)
            todo = self._changed(scan.files, known, force, report)
            self._in_full_sync = True
            try:
                report = self._run(todo, gone, known, force, report, started)
            finally:
                self._in_full_sync = False
            if not report.cancelled:  # failed files stay dirty and are retried anyway
                self.snapshot.set_meta(self.collection, "chunking", fingerprint)
                self.snapshot.set_meta(self.collection, "complete", f"{time.time():.0f}")
            return report

    def sync_paths(self, paths: Iterable[str]) -> SyncReport:
        """Bring specific repository-relative paths (files or directories) up to date.

        A path that no longer exists removes everything recorded under it (a deleted
        directory); an existing directory is rescanned (watchers miss files created with it).
        """
        with self._lock:
            started = time.perf_counter()
            self.ensure_collection()
            known = self.snapshot.load(self.collection)
            if self._in_full_sync:
                # Called from the between-groups hook: keep the full sync's progress intact.
                saved = Progress(**{k: getattr(self.progress, k) for k in Progress.__slots__})
                try:
                    return self._sync_paths_locked(paths, known, started)
                finally:
                    self.progress = saved
            return self._sync_paths_locked(paths, known, started)

    def _sync_paths_locked(
        self, paths: Iterable[str], known: dict[str, FileState], started: float
    ) -> SyncReport:
        entries: dict[str, FileEntry] = {}
        gone: set[str] = set()
        report = SyncReport()
        checked_files: set[str] = set()
        checked_dirs: list[str] = []
        skips: list[Skipped] = []
        for rel in sorted(set(paths)):
            abs_path = self.root / rel
            if os.path.isdir(abs_path) and not os.path.islink(abs_path):
                sub = self.scanner.scan(rel)
                entries.update((e.path, e) for e in sub.files)
                prefix = rel + "/" if rel else ""
                gone.update(p for p in known if p.startswith(prefix) and p not in entries)
                checked_dirs.append(rel)
                skips.extend(sub.skipped)
                report.skipped += sum(sub.skipped_counts.values())
                continue
            found = self.scanner.check_file(rel)
            checked_files.add(rel)
            if isinstance(found, FileEntry):
                entries[found.path] = found
            else:
                if isinstance(found, Skipped):
                    report.skipped += 1
                    skips.append(found)
                prefix = rel + "/"
                gone.update(p for p in known if p == rel or p.startswith(prefix))
        self._update_scan_skips(checked_files, checked_dirs, skips)
        report.scanned = len(entries)
        todo = self._changed(list(entries.values()), known, False, report)
        return self._run(todo, sorted(gone), known, False, report, started)

    def _update_scan_skips(self, files: set[str], dirs: list[str], skips: list[Skipped]) -> None:
        """Make `last_scan` (what `status` reports beside the snapshot's content skips) agree
        with the scanner's verdicts on paths checked since the last full scan: their old skip
        records go, the new ones come first. `unsupported` stays as the full scan counted it
        (only examples of it are kept, so a single path cannot be accounted for)."""
        checked_paths = files.union(dirs)
        everything = "" in checked_paths

        def checked(path: str) -> bool:  # the path, or a directory above it, was checked
            if everything or path in checked_paths:
                return True
            at = path.find("/")
            while at != -1:
                if path[:at] in checked_paths:
                    return True
                at = path.find("/", at + 1)
            return False

        skips = [s for s in skips if s.reason != "unsupported"]
        old = self.last_scan or ScanResult()
        stale = [s for s in old.skipped if s.reason != "unsupported" and checked(s.path)]
        if not stale and not skips:
            return
        counts = old.skipped_counts.copy()
        counts.subtract(s.reason for s in stale)
        counts.update(s.reason for s in skips)
        stale_ids = {id(s) for s in stale}
        # A new object, swapped in whole: `status` reads it from another thread.
        self.last_scan = ScanResult(
            files=old.files,
            skipped=skips + [s for s in old.skipped if id(s) not in stale_ids],
            skipped_counts=+counts,
            ignored=old.ignored,
        )

    def is_complete(self) -> bool:
        """Whether a full sync of this collection has ever completed (it can serve searches)."""
        return self.snapshot.get_meta(self.collection, "complete") is not None

    def _chunking_fingerprint(self) -> str:
        s = self.settings.splitter
        return f"v{CHUNKING_VERSION}:{s.type}:{s.chunk_size}:{s.chunk_overlap}"

    # --- planning -------------------------------------------------------------------------

    @staticmethod
    def _changed(
        entries: list[FileEntry], known: dict[str, FileState], force: bool, report: SyncReport
    ) -> list[FileEntry]:
        todo: list[FileEntry] = []
        for entry in entries:
            old = known.get(entry.path)
            if (
                not force
                and old is not None
                and old.state in (INDEXED, SKIPPED)
                and old.size == entry.size
                and old.mtime_ns == entry.mtime_ns
            ):
                report.unchanged += 1
                continue
            todo.append(entry)
        return todo

    def _run(
        self,
        todo: list[FileEntry],
        gone: list[str],
        known: dict[str, FileState],
        force: bool,
        report: SyncReport,
        started: float,
    ) -> SyncReport:
        self._set(
            phase="indexing",
            files_total=len(todo) + len(gone),
            files_done=0,
            chunks_done=0,
            errors=0,
        )
        try:
            self._remove(gone, known, report)
            self._process(todo, known, force, report)
        except SyncCancelled:
            report.cancelled = True
        finally:
            report.seconds = time.perf_counter() - started
            self._set(phase="idle", current="")
        log.info(
            "%s: %d scanned, %d unchanged, %d indexed, %d removed, %d skipped, %d failed (%.2fs)%s",
            self.root,
            report.scanned,
            report.unchanged,
            report.indexed,
            report.removed,
            report.skipped,
            report.failed,
            report.seconds,
            " [cancelled]" if report.cancelled else "",
        )
        return report

    # --- work -----------------------------------------------------------------------------

    def _remove(self, gone: list[str], known: dict[str, FileState], report: SyncReport) -> None:
        stored = [p for p in gone if (old := known.get(p)) and old.state in (INDEXED, DIRTY)]
        if stored:
            self.snapshot.mark_dirty(self.collection, stored)
            try:
                self.store.delete_paths(self.collection, stored)
            except StoreError as exc:
                self._fail(stored, str(exc), report)
                return
        if gone:
            self.snapshot.remove(self.collection, gone)
            report.removed += len(gone)
            self._advance(len(gone), 0, "")

    def _process(
        self, todo: list[FileEntry], known: dict[str, FileState], force: bool, report: SyncReport
    ) -> None:
        group: list[_Prepared] = []
        group_size = 0
        for entry in todo:
            if self.stop.is_set():
                raise SyncCancelled
            self._set(current=entry.path)
            parse_started = time.perf_counter()
            prepared = self._prepare(entry, known.get(entry.path), force, report)
            report.parse_s += time.perf_counter() - parse_started
            if prepared is None:
                continue
            group.append(prepared)
            group_size += len(prepared.chunks)
            if group_size >= self.group_chunks():
                self._commit(group, report)
                group, group_size = [], 0
                if self.between_groups is not None and self._in_full_sync:
                    self.between_groups()
        if group:
            self._commit(group, report)

    def _prepare(
        self, entry: FileEntry, old: FileState | None, force: bool, report: SyncReport
    ) -> _Prepared | None:
        """Read, check, hash and split one file; None when it needs no store write."""
        try:
            data = self._read(entry)
        except _Skip as skip:
            self._skip(entry, old, skip.reason, skip.detail, report)
            return None
        except OSError as exc:
            if not os.path.lexists(self.root / entry.path):
                self._remove([entry.path], {entry.path: old} if old else {}, report)
                return None
            reason = "unreadable"
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link, or a loop was followed
                reason = (
                    "symlink_loop"
                    if self.scanner.settings.follow_symlinks
                    else (
                        self.scanner.resolved_reason(
                            entry.path, os.path.realpath(self.root / entry.path)
                        )
                        or "symlink"
                    )
                )
            self._skip(entry, old, reason, exc.strerror or str(exc), report)
            return None
        report.files_read += 1
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if not force and old is not None and old.state == INDEXED and old.hash == digest:
            # Touched but not changed: remember the new stat, write nothing.
            self.snapshot.mark_indexed(
                self.collection,
                [IndexedFile(entry.path, entry.size, entry.mtime_ns, digest, old.chunks)],
            )
            report.unchanged += 1
            self._advance(1, 0, entry.path)
            return None
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        if _looks_minified(text):
            self._skip(entry, old, "minified", "", report)
            return None
        chunks = self.splitter.split(text, entry.language)
        return _Prepared(
            FileEntry(entry.path, len(data), entry.mtime_ns, entry.language), digest, chunks
        )

    def _read(self, entry: FileEntry) -> bytes:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        if not self.scanner.settings.follow_symlinks:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        path = self.root / entry.path
        fd = os.open(path, flags)
        try:
            st = os.fstat(fd)
            # O_NOFOLLOW only guards the last component: a parent directory may have become a
            # symlink (to outside the repository) since the scan. Check what was opened.
            real = _opened_path(fd, st) or os.path.realpath(path)
            reason = self.scanner.resolved_reason(entry.path, real)
            if reason is not None:
                raise _Skip(reason, "reached through a symbolic link")
            if not stat.S_ISREG(st.st_mode):
                raise _Skip("not_regular")
            limit = self.scanner.settings.max_file_bytes
            if st.st_size > limit:
                raise _Skip("too_large", f"{st.st_size} bytes > {limit}")
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise _Skip("too_large", f"more than {limit} bytes")
        if b"\x00" in data[:_BINARY_PROBE_BYTES]:
            raise _Skip("binary")
        return data

    def _skip(
        self,
        entry: FileEntry,
        old: FileState | None,
        reason: str,
        detail: str,
        report: SyncReport,
    ) -> None:
        if old is not None and old.state in (INDEXED, DIRTY):
            self.snapshot.mark_dirty(self.collection, [entry.path])
            try:
                self.store.delete_paths(self.collection, [entry.path])
            except StoreError as exc:
                self._fail([entry.path], str(exc), report)
                return
        message = reason + (f": {detail}" if detail else "")
        self.snapshot.mark_skipped(
            self.collection, [(entry.path, entry.size, entry.mtime_ns, message)]
        )
        report.skipped += 1
        self._advance(1, 0, entry.path)

    def _commit(self, group: list[_Prepared], report: SyncReport) -> None:
        started = time.perf_counter()
        paths = [p.entry.path for p in group]
        texts = [embedding_text(p.entry.path, c) for p in group for c in p.chunks]
        try:
            vectors = self.embedder.embed_texts(texts, should_stop=self.stop.is_set)
        except EmbedCancelled:
            raise SyncCancelled from None
        except (ProviderError, CodectxError) as exc:
            # Nothing was written: old chunks stay searchable, the files stay pending.
            self._fail(paths, f"embedding failed: {exc}", report)
            return
        finally:
            report.embed_s += time.perf_counter() - started
        store_started = time.perf_counter()
        rows: list[Row] = []
        position = 0
        for prepared in group:
            ext = extension_of(prepared.entry.path)
            for chunk in prepared.chunks:
                chunk_hash = hashlib.blake2b(
                    chunk.content.encode("utf-8", "surrogatepass"), digest_size=16
                ).hexdigest()
                rows.append(
                    Row(
                        id=chunk_id(self.key, prepared.entry.path, chunk, chunk_hash),
                        path=prepared.entry.path,
                        language=prepared.entry.language,
                        ext=ext,
                        start_line=chunk.start_line,
                        end_line=chunk.end_line,
                        symbol=chunk.symbol,
                        kind=chunk.kind,
                        content=chunk.content,
                        content_hash=chunk_hash,
                        lexical=lexical_text(
                            f"{prepared.entry.path} {chunk.symbol}\n{chunk.content}"
                        ),
                        dense=vectors[position],
                    )
                )
                position += 1
        self.snapshot.mark_dirty(self.collection, paths)
        try:
            self.store.replace_files(self.collection, paths, rows)
        except StoreError as exc:
            self._fail(paths, str(exc), report)
            return
        self.snapshot.mark_indexed(
            self.collection,
            [
                IndexedFile(p.entry.path, p.entry.size, p.entry.mtime_ns, p.hash, len(p.chunks))
                for p in group
            ],
        )
        report.store_s += time.perf_counter() - store_started
        report.indexed += len(group)
        report.chunks_written += len(rows)
        self._advance(len(group), len(rows), "")
        if self.on_commit is not None:
            self.on_commit(len(group), len(rows), time.perf_counter() - started)

    def _fail(self, paths: list[str], message: str, report: SyncReport) -> None:
        log.warning("%s: %d file(s) left pending: %s", self.root, len(paths), message)
        self.snapshot.mark_dirty(self.collection, paths, reason=message[:500])
        report.failed += len(paths)
        report.errors.extend((p, message) for p in paths[:20])
        self._set(errors=self.progress.errors + len(paths))
        self._advance(len(paths), 0, "")

    # --- progress -------------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.progress, key, value)
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _advance(self, files: int, chunks: int, current: str) -> None:
        self._set(
            files_done=self.progress.files_done + files,
            chunks_done=self.progress.chunks_done + chunks,
            current=current,
        )


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _opened_path(fd: int, st: os.stat_result) -> str | None:
    """The real path of an open file, from /proc (Linux); None where it cannot be known."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if st.st_nlink == 0:  # unlinked since it was opened
        real = real.removesuffix(" (deleted)")
    return real if real.startswith("/") else None


def _looks_minified(text: str) -> bool:
    """Generated / minified text: long lines that would make useless chunks."""
    if len(text) < 2000:
        return False
    lines = text.count("\n") + 1
    if len(text) / lines > 300:
        return True
    return any(len(line) > 5000 for line in text.split("\n"))
