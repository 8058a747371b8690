"""One repository's supervisor: a task that owns the repository's indexer, work queue, state
machine and retries.

It takes work from its queue (changed paths, full syncs, reconfiguration, removal) and runs
it in worker threads one group of files at a time; between the groups of a long full sync it
does whatever arrived meanwhile (a file just saved is indexed at once; a removal stops the
sync). A full sync also runs now and then by itself: watch events can be lost.

Syncs are the first phase: every file keyword-searchable as fast as it can be read and split
(small changes are embedded at once too). The repository's embedding lane (`embedlane`), a
second task, embeds the rest meanwhile; the two share the repository's write lock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from codectx_client import protocol as p
from codectxd.config import DaemonSettings
from codectxd.embedlane import EmbedLane, cancel_requested
from codectxd.errors import NotFoundError, StoreError
from codectxd.events import EventBus, RepoEvents
from codectxd.indexer import Job, RepoIndexer, SyncReport
from codectxd.memory import MemoryManager
from codectxd.metrics import Metrics
from codectxd.search import Target
from codectxd.serving import Serving
from codectxd.snapshot import Snapshot
from codectxd.store import Store
from codectxd.workqueue import (
    URGENT,
    Batch,
    FullSync,
    PathBatch,
    Reconfigure,
    Remove,
    Work,
    WorkQueue,
)

log = logging.getLogger(__name__)

QUEUED, SCANNING, INDEXING, READY, ERROR = "queued", "scanning", "indexing", "ready", "error"
KEYWORD_READY = "keyword_ready"
_ERROR_MIN_RETRY_S = 1.0
_ERROR_RETRY_S = 30.0


@dataclass(frozen=True, slots=True)
class Services:
    """The shared components a supervisor uses (their public interfaces only)."""

    store: Store
    snapshot: Snapshot
    memory: MemoryManager
    metrics: Metrics
    events: EventBus
    settings: DaemonSettings
    full_slot: anyio.CapacityLimiter  # full syncs saturate the CPU: one group at a time
    model_slot: anyio.CapacityLimiter  # one repository's second phase embeds at a time
    watching: Callable[[str], str]  # how a root's changes are noticed: inotify | polling | off
    watch_error: Callable[[str], str | None]  # why a root is not watched (`Watcher.error_of`)
    # Waits until a change under the root would be reported (`Watcher.covering`).
    covering: Callable[[str], Awaitable[bool]]
    # Set when the daemon starts opening the store: after every repository's start-up scan
    # (the import and a scan both hold the GIL), or a few seconds after start.
    store_opening: anyio.Event


class Supervisor:
    def __init__(self, indexer: RepoIndexer, services: Services) -> None:
        self.indexer = indexer
        self.services = services
        self.root: Path = indexer.root
        self.name = str(indexer.root)
        self.queue = WorkQueue()
        self.events = RepoEvents(services.events, self.name)
        self.state = QUEUED
        self.error: str | None = None
        self.last_sync: float | None = None
        self.last_report = p.LastSyncs()
        # Which collection searches read (and whether the index was ever complete).
        self.collections = Serving(self.name, indexer.collection, services.store, services.snapshot)
        # Set once `collections.plan` ran (or failed): until then a search could read the new,
        # empty collection of a model switch instead of the old complete one.
        self.planned = anyio.Event()
        # A full sync has completed since the daemon started (until then, changes made while
        # it was down may be missing).
        self.reconciled = False
        self.job: Job | None = None
        self.scanned = anyio.Event()  # the first full sync has scanned (or failed)
        self.synced = anyio.Event()  # set, then replaced, after every piece of work
        self._interrupt: anyio.CancelScope | None = None  # the running group's scope
        self._stash: Batch | None = None  # urgent work that ended a full sync, done next
        self._handling = False  # a batch of work is being done
        self._reports: list[tuple[bool, SyncReport]] = []  # (full, report) not yet announced
        self._write_lock = anyio.Lock()  # this repository's collection: one writer at a time
        self.lane = EmbedLane(
            lambda: self.indexer,
            services.snapshot,
            services.memory,
            services.metrics,
            services.model_slot,
            self._write_lock,
            on_stale=self.submit_paths,
            on_change=self._embedding_changed,
        )

    # --- requests (event loop) ------------------------------------------------------------

    def submit_paths(self, paths: set[str]) -> None:
        """Paths reported changed (watcher, read-your-writes); ignored ones are dropped."""
        keep, rescan = self.indexer.relevant(paths)
        if rescan:
            self._put(FullSync())
        if keep:
            self._put(PathBatch(frozenset(keep)))

    def request_full(self, force: bool = False) -> None:
        self._put(FullSync(force))

    def reconfigure(self, indexer: RepoIndexer) -> None:
        self._put(Reconfigure(indexer))

    async def remove(self) -> None:
        """Stop (at the next safe point) and delete this repository's index."""
        done = anyio.Event()
        self._put(Remove(done))
        await done.wait()

    def _put(self, work: Work) -> None:
        self.queue.put(work)
        if isinstance(work, URGENT) and self._interrupt is not None:
            self._interrupt.cancel()  # the running group stops between embedding batches

    # --- what it is -----------------------------------------------------------------------

    @property
    def collection(self) -> str:
        return self.indexer.collection

    @property
    def complete(self) -> bool:
        """The index has been built completely once (it may lag behind the files)."""
        return self.collections.complete

    async def target(self) -> Target:
        """What searches read; known once `collections.plan` has run (a few milliseconds
        after start)."""
        await self.planned.wait()
        return self.collections.target()

    def embedded(self) -> float:
        """Of the chunks to embed, the fraction embedded (0 until the index is complete)."""
        return self.lane.counts.fraction if self.complete else 0.0

    def fresh(self) -> bool:
        return self.reconciled and self.job is None and not self.queue.has_work()

    def pending(self) -> int:
        """Everything not yet reflected in the index: the queue + the rest of a running sync."""
        running = 0
        if self.job is not None:
            running = max(0, self.job.progress.files_total - self.job.progress.files_done)
        return self.queue.queued() + running

    def waiting_on(self, paths: list[str]) -> bool:
        """Whether a change of one of these paths may not be indexed yet (a running full sync
        indexes changed files between its groups: it does not count)."""
        return self.queue.full_requested or self.queue.waiting_on(paths)

    # --- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Until removed (or cancelled with the daemon): take work, do it, retry failures;
        the embedding lane runs beside."""
        try:
            await anyio.to_thread.run_sync(self.collections.plan, self.indexer)
        except StoreError as exc:
            # Milvus opens in the background and did not: the first sync fails on it too and
            # is retried; meanwhile searches read `active` (no older collection is found).
            log.warning("%s: cannot plan its collections: %s", self.name, exc)
        finally:
            self.planned.set()
        self.request_full()  # reconcile: files may have changed while nothing watched them
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.lane.run)
            tg.start_soon(self._tidy)
            removed = await self._work()
            tg.cancel_scope.cancel()
        await self._drop()
        removed.done.set()

    async def _tidy(self) -> None:
        """Drop what an interrupted model switch left (`Serving.tidy`), off the way of the
        start-up scans: once the daemon opens the store (listing collections would open it,
        and its import beside a scan slowed a warm restart), in a thread."""
        await self.services.store_opening.wait()
        try:
            await anyio.to_thread.run_sync(self.collections.tidy)
        except Exception:  # noqa: BLE001 - they stay until the next start; nothing depends on it
            log.warning("%s: removing older collections failed", self.name, exc_info=True)

    async def _work(self) -> Remove:
        """Take work and do it until a removal comes (returned)."""
        while True:
            batch = await self._next()
            if batch is None:
                self.request_full()  # periodic reconcile (watch events can be lost), or retry
            elif batch.remove is not None:
                return batch.remove
            else:
                await self._handle(batch)

    async def _next(self) -> Batch | None:
        """The next batch of work; None when it is time for a full sync (periodic, or the
        retry after a failure)."""
        if self._stash is not None:
            batch, self._stash = self._stash, None
            return batch
        failed = self.state == ERROR
        if failed:
            await anyio.sleep(_ERROR_MIN_RETRY_S)
        wait_s = _ERROR_RETRY_S if failed else rescan_interval(self.services, self.name)
        with anyio.move_on_after(wait_s):
            batch = await self.queue.take()
            batch.full |= failed  # a failed repository retries with a full sync
            return batch
        return None

    async def _handle(self, batch: Batch) -> None:
        started = time.perf_counter()
        self._handling = True
        try:
            if not await anyio.to_thread.run_sync(self.root.is_dir):
                raise NotFoundError(f"the repository directory {self.root} is missing")
            if batch.reconfigure is not None:
                self.indexer = batch.reconfigure
            if batch.full:
                await self._full(batch.force)
            elif batch.paths:
                await self._paths(batch.paths)
        except Exception as exc:  # noqa: BLE001 - a repository's failure never kills the daemon
            if not isinstance(exc, NotFoundError):
                log.exception("sync of %s failed", self.name)
            elif str(exc) != self.error:  # retried every half minute: said once, no traceback
                log.warning("%s: %s (retrying until it is back or removed)", self.name, exc)
            self.error = str(exc)
            self._set_state(ERROR)
            self.events.error(str(exc))
        else:
            self.error = None
        finally:
            self.scanned.set()  # e.g. the repository is missing: there was nothing to scan
            self._handling = False
            self.queue.finish(batch)
            self.services.metrics.sync_ms.add((time.perf_counter() - started) * 1000)
        self._settle()
        self._announce()

    def _settle(self) -> None:
        """When no sync runs or waits: keyword_ready while the lane embeds, then ready."""
        busy = self._handling or self.queue.has_work() or self._stash is not None
        if self.error is None and not busy:
            self._set_state(READY if self.lane.idle else KEYWORD_READY)

    def _embedding_changed(self) -> None:
        """The lane's counts changed: the state may follow; subscribers hear of it."""
        self._settle()
        progress = self.lane.message()
        if progress is not None:
            self.events.embedding(progress)

    # --- syncs ----------------------------------------------------------------------------

    async def _full(self, force: bool) -> None:
        self._set_state(SCANNING)
        # Scan only once the watcher covers the root: a change between this scan and the
        # watches being set up would be missed while the repository reports fresh.
        if not await self.services.covering(self.name):
            log.warning("%s: scanning before the watcher covers it", self.name)
        slot = self.services.full_slot
        try:
            job = await anyio.to_thread.run_sync(
                self.indexer.begin_full, force, cancel_requested, limiter=slot
            )
        finally:
            self.scanned.set()
        self._set_state(INDEXING)
        self.lane.hold()  # keyword search over everything first
        try:
            again = await self._run(job, slot, between=self._between_groups)
        finally:
            self.lane.release()
        if not job.report.cancelled:
            self.reconciled = True
            if not self.complete or self.collections.retired:
                retired = await anyio.to_thread.run_sync(self.collections.completed)
                if retired:
                    self.events.state(self.state, collection=self.collection)
        if again:
            self.request_full()

    async def _between_groups(self, job: Job) -> bool:
        """Work that arrived during a full sync: changed files are indexed now; a removal or
        reconfiguration ends the sync (it is handled next). True: another full sync is due."""
        urgent = self.queue.poll()
        if urgent.remove is not None or urgent.reconfigure is not None:
            self._stash = urgent
            job.cancel()
            return False
        if urgent.paths:
            try:
                await self._paths(urgent.paths)
            finally:
                self.queue.finish(urgent)
            self._announce()
        return urgent.full

    async def _paths(self, paths: set[str]) -> None:
        if self.job is None:
            self._set_state(INDEXING)
        job = await anyio.to_thread.run_sync(self.indexer.begin_paths, paths, cancel_requested)
        await self._run(job, None)

    async def _run(
        self,
        job: Job,
        slot: anyio.CapacityLimiter | None,
        between: Callable[[Job], Awaitable[bool]] | None = None,
    ) -> bool:
        """Step `job` to its end, publishing its progress; `between` runs after every group.
        True when `between` asked for another full sync."""
        outer, self.job = self.job, job
        again = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.events.follow, job.progress.message)
                while await self._step(job, slot):
                    if between is not None:
                        again |= await between(job)
                tg.cancel_scope.cancel()
        finally:
            self.job = outer
        report = await anyio.to_thread.run_sync(job.finish)
        self._reports.append((job.plan.full, report))
        await self.lane.refresh()
        if not self.lane.idle:
            self.lane.wake()  # chunks wait for their vectors (a failed lane tries again now)
        return again

    async def _step(self, job: Job, slot: anyio.CapacityLimiter | None) -> bool:
        """One group of `job`; False when the job is done (or was interrupted)."""
        if job.done:
            return False
        size = await self.services.memory.admit_group()
        files, chunks = job.report.indexed, job.report.chunks_written
        started = time.perf_counter()
        with anyio.CancelScope() as scope:
            self._interrupt = scope
            try:
                async with self._write_lock:
                    await anyio.to_thread.run_sync(job.step, size, limiter=slot)
            finally:
                self._interrupt = None
        if scope.cancelled_caught:
            job.cancel()  # interrupted by urgent work: the rest waits for a later sync
        written = job.report.indexed - files, job.report.chunks_written - chunks
        self.services.metrics.record_group(*written, time.perf_counter() - started)
        return not job.done

    def _announce(self) -> None:
        """After work: record the reports, tell subscribers, wake read-your-writes waiters."""
        for full, report in self._reports:
            summary = report.summary()
            if full:
                self.last_report.full = summary
            else:
                self.last_report.paths = summary
            self.events.synced(summary, report.errors, self.state, self.embedded())
        self._reports.clear()
        self.last_sync = time.time()
        self.synced.set()
        self.synced = anyio.Event()

    # --- removal --------------------------------------------------------------------------

    async def _drop(self) -> None:
        async with self._write_lock:
            await anyio.to_thread.run_sync(self.collections.drop_all)
        self.events.state("removed")
        log.info("removed repository %s", self.name)

    # --- events ---------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.events.state(state)


def rescan_interval(services: Services, root: str) -> float:
    """How long a repository waits for work before it reconciles with a full sync: watch
    events can be lost, and without watching, scans are all there is."""
    if services.watching(root) != "inotify":
        return services.settings.poll_interval_s
    return services.settings.rescan_interval_s or math.inf
