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
class RepoEntry:
    root: str
    added_at: float
    ignore: tuple[str, ...] = ()  # extra ignore patterns for this repository
    extensions: tuple[str, ...] = ()  # extra file extensions to index here


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
            entry = RepoEntry(
                str(item["root"]),
                float(item.get("added_at", 0)),
                tuple(item.get("ignore", ())),
                tuple(item.get("extensions", ())),
            )
            self._repos[entry.root] = entry

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"repos": [asdict(e) for e in self._repos.values()]}, indent=1)
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

    def add(
        self, root: str, ignore: tuple[str, ...] = (), extensions: tuple[str, ...] = ()
    ) -> RepoEntry:
        """Register `root`, or update its options; the entry as saved."""
        with self._lock:
            old = self._repos.get(root)
            entry = RepoEntry(root, old.added_at if old else time.time(), ignore, extensions)
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
