"""A repository's second phase: a task that embeds what the first phase stored for keyword
search, a group at a time, while the repository's supervisor goes on with file changes.

Only one repository embeds at a time (the model slot: the model uses every core). The lane
waits while its repository runs the first phase of a full sync (keyword search over
everything comes first), reads files outside the repository's write lock, embeds them outside
it too, and takes the lock only to commit, after checking the files are still as read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import anyio
import anyio.to_thread

from codectx_client import protocol as p
from codectxd.embeddings.service import EmbedCancelled
from codectxd.errors import CodectxError
from codectxd.indexer import RepoIndexer
from codectxd.indexer.backlog import Pending
from codectxd.memory import MemoryManager
from codectxd.metrics import Metrics, Throughput
from codectxd.snapshot import ChunkCounts, Snapshot

log = logging.getLogger(__name__)

#: Directories a search looked at recently, embedded before the rest (most recent first).
_INTEREST = 8
#: After a failed group (provider down), wait this long before trying again.
_FAILURE_PAUSE_S = 30.0
#: Memory goes back to the system when the lane runs dry after at least this many chunks (a
#: full collection and a heap trim are not worth paying after every saved file).
_REST_AFTER_CHUNKS = 256


def cancel_requested() -> bool:
    """In a worker thread: whether the task waiting for it was cancelled. (The event loop's
    cancellation class cannot be asked for here, outside the loop; it is the only
    BaseException `check_cancelled` raises.)"""
    try:
        anyio.from_thread.check_cancelled()
    except (Exception, KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - the loop's CancelledError (asyncio) or Cancelled (trio)
        return True
    return False


class EmbedLane:
    def __init__(
        self,
        indexer: Callable[[], RepoIndexer],
        snapshot: Snapshot,
        memory: MemoryManager,
        metrics: Metrics,
        model_slot: anyio.CapacityLimiter,
        write_lock: anyio.Lock,
        on_stale: Callable[[set[str]], None],
        on_change: Callable[[], None],
    ) -> None:
        """Args:
        indexer: the repository's current indexer (it changes when the options do).
        write_lock: held by whoever writes the repository's collection.
        on_stale: gets paths that changed since they were indexed (index them again).
        on_change: called when the counts changed (the repository's state may follow).
        """
        self._indexer = indexer
        self._snapshot = snapshot
        self._memory = memory
        self._metrics = metrics
        self._model_slot = model_slot
        self._write_lock = write_lock
        self._on_stale = on_stale
        self._on_change = on_change
        self.counts = ChunkCounts()
        self._rate = Throughput(window_s=60.0)
        self._wake = anyio.Event()
        self._held = 0  # first phases of full syncs running: wait for them
        self._since_rest = 0  # chunks embedded since memory last went back
        self._released = anyio.Event()
        self._interest: deque[str] = deque(maxlen=_INTEREST)
        self.error: str | None = None

    # --- from the supervisor (event loop) -------------------------------------------------

    def wake(self) -> None:
        """Something may wait for vectors now (the first phase committed chunks)."""
        self._wake.set()

    def hold(self) -> None:
        self._held += 1

    def release(self) -> None:
        self._held = max(0, self._held - 1)
        if not self._held:
            self._released.set()
            self._released = anyio.Event()
            self._wake.set()

    def interest(self, directories: list[str]) -> None:
        """A search looked here: embed files under these directories first."""
        for directory in directories:
            if directory in self._interest:
                self._interest.remove(directory)
            self._interest.appendleft(directory)

    @property
    def idle(self) -> bool:
        return self.counts.waiting == 0

    def message(self) -> p.EmbeddingProgress | None:
        """Progress of the second phase while it has work (None when everything is embedded)."""
        counts = self.counts
        if counts.waiting == 0:
            return None
        rate = self._rate.rate()
        return p.EmbeddingProgress(
            chunks_embedded=counts.embedded,
            chunks_total=counts.embedded + counts.waiting,
            chunks_per_s=rate,
            eta_s=round(counts.waiting / rate, 1) if rate > 0 else None,
            error=self.error,
        )

    async def refresh(self) -> None:
        """Re-read the counts from the snapshot (after the first phase wrote)."""
        indexer = self._indexer()
        self.counts = await anyio.to_thread.run_sync(
            self._snapshot.chunk_counts, indexer.collection
        )
        self._on_change()

    # --- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        await self.refresh()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._held:
                await self._released.wait()
            while await self._one_group():
                if self._held:
                    break
            else:  # nothing waits: what embedding allocated can go back
                if self._since_rest >= _REST_AFTER_CHUNKS:
                    self._since_rest = 0
                    await anyio.to_thread.run_sync(self._memory.rest)

    async def _one_group(self) -> bool:
        """Embed and commit the next group; False when nothing waits (or a failure pauses)."""
        indexer = self._indexer()
        started = time.perf_counter()
        pending: Pending | None = None
        try:
            size = await self._memory.admit_group()
            interest = list(self._interest)
            pending = await anyio.to_thread.run_sync(indexer.next_embedding, size, interest)
            if pending is None:
                await self.refresh()
                return False
            if pending.stale:
                self._on_stale(set(pending.stale))
            if not pending.group:
                return True
            async with self._model_slot:
                vectors = await anyio.to_thread.run_sync(
                    indexer.embed_pending, pending, cancel_requested
                )
            async with self._write_lock:
                written = await anyio.to_thread.run_sync(indexer.commit_embedding, pending, vectors)
        except EmbedCancelled:
            return False
        except CodectxError as exc:  # provider or store failed: the files keep waiting
            self.error = f"embedding failed: {exc}"
            if pending is not None and pending.group:
                with contextlib.suppress(CodectxError):
                    await anyio.to_thread.run_sync(indexer.embedding_failed, pending, self.error)
            log.info("%s: the second phase retries in %.0fs", indexer.root, _FAILURE_PAUSE_S)
            with anyio.move_on_after(_FAILURE_PAUSE_S):
                await self._wake.wait()  # new work may mean the cause is gone
            self._wake.set()
            return False
        self.error = None
        self._rate.add(written)
        self._since_rest += written
        self._metrics.record_group(len(pending.group), written, time.perf_counter() - started)
        await self.refresh()
        return True
