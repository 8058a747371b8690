"""A repository's inbox: a memory object stream of work, coalesced as it is taken, with the
bookkeeping that tells what is still pending (for `fresh`, `pending` and read-your-writes).

Senders (the watcher, requests) and the receiving supervisor all run on the event loop.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import anyio

from codectxd.indexer import RepoIndexer


@dataclass(frozen=True, slots=True)
class PathBatch:
    """Repository-relative paths (files or directories) that changed."""

    paths: frozenset[str]


@dataclass(frozen=True, slots=True)
class FullSync:
    """Reconcile the whole repository (`force`: re-read and re-split every file)."""

    force: bool = False


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Index with this indexer from now on (new per-repository options); a full sync follows."""

    indexer: RepoIndexer


@dataclass(frozen=True, slots=True)
class Remove:
    """Stop, delete the repository's index, then set `done`."""

    done: anyio.Event


Work = PathBatch | FullSync | Reconfigure | Remove
#: Work that interrupts a running sync (at its next safe point) instead of waiting for it.
URGENT = (Reconfigure, Remove)


@dataclass(slots=True)
class Batch:
    """Everything taken from the inbox at once, merged."""

    paths: set[str] = field(default_factory=set)
    full: bool = False
    force: bool = False
    reconfigure: RepoIndexer | None = None
    remove: Remove | None = None

    def add(self, work: Work) -> None:
        if isinstance(work, PathBatch):
            self.paths |= work.paths
        elif isinstance(work, FullSync):
            self.full = True
            self.force = self.force or work.force
        elif isinstance(work, Reconfigure):
            self.reconfigure = work.indexer
            self.full = True
        else:
            self.remove = work

    def __bool__(self) -> bool:
        return bool(self.paths or self.full or self.remove)


class WorkQueue:
    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Work](math.inf)
        self._queued: Counter[str] = Counter()  # paths sent, not yet taken
        self._fulls = 0  # full syncs sent, not yet taken
        self.in_flight: set[str] = set()  # paths taken, being processed

    def put(self, work: Work) -> None:
        if isinstance(work, PathBatch):
            self._queued.update(work.paths)
        elif isinstance(work, FullSync | Reconfigure):
            self._fulls += 1
        self._send.send_nowait(work)

    async def take(self) -> Batch:
        """Wait for work, then take everything there is, merged."""
        batch = Batch()
        self._note(batch, await self._receive.receive())
        return self._drain(batch)

    def poll(self) -> Batch:
        """Take whatever work there is without waiting (possibly nothing)."""
        return self._drain(Batch())

    def finish(self, batch: Batch) -> None:
        """The batch's paths are processed (or will be retried as a full sync)."""
        self.in_flight -= batch.paths

    def _drain(self, batch: Batch) -> Batch:
        while True:
            try:
                self._note(batch, self._receive.receive_nowait())
            except anyio.WouldBlock:
                return batch

    def _note(self, batch: Batch, work: Work) -> None:
        batch.add(work)
        if isinstance(work, PathBatch):
            self._queued.subtract(work.paths)
            self._queued = +self._queued
            self.in_flight |= work.paths
        elif isinstance(work, FullSync | Reconfigure):
            self._fulls -= 1

    # --- what is pending --------------------------------------------------------------------

    @property
    def full_requested(self) -> bool:
        return self._fulls > 0

    def queued(self) -> int:
        """Paths waiting or being processed."""
        return len(self._queued.keys() | self.in_flight)

    def has_work(self) -> bool:
        return bool(self._queued) or self._fulls > 0 or bool(self.in_flight)

    def waiting_on(self, paths: list[str]) -> bool:
        """Whether any of these paths (or anything under or above them) is queued or being
        processed."""
        queued = self._queued.keys() | self.in_flight
        return any(
            q == p or q.startswith(p + "/") or p.startswith(q + "/") or q == ""
            for q in queued
            for p in paths
        )
