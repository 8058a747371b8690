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
            entry = RepoEntry(str(item["root"]), float(item.get("added_at", 0)))
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

    def roots(self) -> list[str]:
        with self._lock:
            return list(self._repos)

    def add(self, root: str) -> bool:
        """Register `root`; False when it already was."""
        with self._lock:
            if root in self._repos:
                return False
            self._repos[root] = RepoEntry(root, time.time())
            self._save()
            return True

    def remove(self, root: str) -> bool:
        with self._lock:
            if self._repos.pop(root, None) is None:
                return False
            self._save()
            return True
