"""One registered repository inside the daemon: its indexer, its work queue and its state.

The queue is touched from the event loop (watcher, requests) and from the indexing thread (the
between-groups hook), so it is guarded by a plain lock; anyio events are only set on the loop.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio

from codectxd.indexer import RepoIndexer

QUEUED, SCANNING, INDEXING, READY, ERROR = "queued", "scanning", "indexing", "ready", "error"


class RepoRuntime:
    def __init__(self, root: Path, indexer: RepoIndexer) -> None:
        self.root = root
        self.indexer = indexer
        self.state = QUEUED
        self.error: str | None = None
        self.last_sync: float | None = None
        self.last_report: dict[str, dict[str, object]] | None = None
        self.initial_done = False  # a full sync completed since the daemon started
        self.syncing = False
        self.idle = anyio.Event()  # set while no sync runs
        self.idle.set()
        self.wake = anyio.Event()
        self.synced = anyio.Event()  # set, then replaced, after every completed sync
        self.cancel_scope: anyio.CancelScope | None = None
        # Searches read this collection. After a model change it is the previous model's
        # complete index until the new one (indexer.collection) has finished its first sync.
        self.search_collection = indexer.collection
        self.retired: list[str] = []  # older collections of this repo, dropped after a switch
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._in_flight: set[str] = set()
        self._full = False
        self._force = False

    @property
    def name(self) -> str:
        return str(self.root)

    # --- queue (any thread) -----------------------------------------------------------------

    def add_paths(self, paths: set[str]) -> None:
        with self._lock:
            self._pending |= paths

    def add_full(self, force: bool = False) -> None:
        with self._lock:
            self._full = True
            self._force = self._force or force

    def has_work(self) -> bool:
        with self._lock:
            return self._full or bool(self._pending)

    def take_full(self) -> tuple[bool, set[str]] | None:
        """(force, paths it covers) when a full sync is requested; the queue moves in flight."""
        with self._lock:
            if not self._full:
                return None
            force = self._force
            self._full = self._force = False
            batch, self._pending = self._pending, set()
            self._in_flight |= batch
            return force, batch

    def take_paths(self) -> set[str]:
        with self._lock:
            batch, self._pending = self._pending, set()
            self._in_flight |= batch
            return batch

    def finish(self, batch: set[str]) -> None:
        with self._lock:
            self._in_flight -= batch

    def queued(self) -> int:
        """Paths waiting or being processed (not counting a running full sync)."""
        with self._lock:
            return len(self._pending | self._in_flight)

    def waiting_on(self, rel_paths: list[str]) -> bool:
        """Whether any of these paths (or anything under them) is still queued or running."""
        with self._lock:
            queued = self._pending | self._in_flight
            if not queued and not self._full:
                return False
            if self._full:
                return True
        return any(
            q == p or q.startswith(p + "/") or p.startswith(q + "/")
            for q in queued
            for p in rel_paths
        )

    # --- state (event loop) -----------------------------------------------------------------

    def pending(self) -> int:
        """Everything not yet reflected in the index: queue + the rest of a running sync."""
        progress = self.indexer.progress
        running = (progress.files_total - progress.files_done) if self.syncing else 0
        return self.queued() + max(running, 0)

    def fresh(self) -> bool:
        return self.initial_done and not self.syncing and self.queued() == 0 and not self._full

    def begin_sync(self) -> None:
        self.syncing = True
        self.idle = anyio.Event()

    def end_sync(self) -> None:
        self.syncing = False
        self.idle.set()

    def mark_synced(self) -> None:
        self.last_sync = time.time()
        self.synced.set()
        self.synced = anyio.Event()
