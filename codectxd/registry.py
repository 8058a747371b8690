"""The registered repositories, persisted as a small JSON file in the data dir.

Rewritten atomically (temp file + rename) on add / remove only; it holds a few entries.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from codectxd.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RepoOptions:
    """One repository's own scan options, on top of the configured ones."""

    ignore: tuple[str, ...] = ()  # extra ignore patterns for this repository
    extensions: tuple[str, ...] = ()  # extra file extensions to index here
    lexical_only: tuple[str, ...] | None = None  # kinds not embedded (None: the setting's)
    skip_kinds: tuple[str, ...] | None = None  # kinds not indexed (None: the setting's)

    def __bool__(self) -> bool:
        return self != NO_OPTIONS


#: A repository with no options of its own.
NO_OPTIONS = RepoOptions()


@dataclass(frozen=True, slots=True)
class RepoEntry:
    root: str
    added_at: float
    options: RepoOptions = NO_OPTIONS


def _kinds(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._repos: dict[str, RepoEntry] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the repository list {self.path}: {exc}") from None
        for item in data.get("repos", []):
            options = RepoOptions(
                tuple(item.get("ignore", ())),
                tuple(item.get("extensions", ())),
                _kinds(item.get("lexical_only")),
                _kinds(item.get("skip_kinds")),
            )
            entry = RepoEntry(str(item["root"]), float(item.get("added_at", 0)), options)
            self._repos[entry.root] = entry

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repos = [
            {"root": e.root, "added_at": e.added_at, **asdict(e.options)}
            for e in self._repos.values()
        ]
        payload = json.dumps({"repos": repos}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".repos.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def entries(self) -> list[RepoEntry]:
        with self._lock:
            return list(self._repos.values())

    def get(self, root: str) -> RepoEntry | None:
        with self._lock:
            return self._repos.get(root)

    def add(self, root: str, options: RepoOptions = NO_OPTIONS) -> RepoEntry:
        """Register `root`, or update its options; the entry as saved."""
        with self._lock:
            old = self._repos.get(root)
            entry = RepoEntry(root, old.added_at if old else time.time(), options)
            if old != entry:
                self._repos[root] = entry
                self._save()
            return entry

    def remove(self, root: str) -> bool:
        with self._lock:
            if self._repos.pop(root, None) is None:
                return False
            self._save()
            return True
