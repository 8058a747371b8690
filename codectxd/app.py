"""The daemon: builds every component once, wires them together, starts and stops them.

Requests arrive through `dispatch` (the server's one call into the daemon), which the router
turns into a handler call over a narrow context; everything that runs in the background
(supervisors, the watcher) lives in task groups owned here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread

from codectx_client import protocol as p
from codectx_client.paths import SOCKET_NAME
from codectxd.bytecode import compile_packages
from codectxd.config import Settings
from codectxd.engine import Engine
from codectxd.events import EventBus
from codectxd.handlers import Context
from codectxd.indexer import GROUP_CHUNKS, RepoIndexer
from codectxd.memory import MemoryManager
from codectxd.metrics import Metrics
from codectxd.registry import Registry, RepoEntry
from codectxd.repos import RepoSet
from codectxd.router import Replied, Router
from codectxd.supervisor import Services
from codectxd.watcher import Watcher

log = logging.getLogger(__name__)

#: Searches run in worker threads, at most this many at once, beside indexing. A thread mostly
#: waits for Milvus, and the more searches wait together the larger the batches the store
#: sends (codectxd.batching): 50 clients on 117k rows, 8 threads ~87/s, 32 ~137/s, 64 ~122/s.
SEARCH_THREADS = 32
#: Near the memory budget, a collection unused this long is released (longer if it loads
#: slowly: codectxd.residency). Longer than one indexing group takes to embed and commit, so
#: a repository being indexed keeps its collection.
PRESSURE_IDLE_S = 30.0
#: Milvus opens once every repository's start-up scan is done, or after this long. Its import
#: holds the GIL for most of a second: beside a scan it slowed a warm restart by ~0.4 s. A
#: repository whose first sync needs the store (it has no search image) opens it earlier.
STORE_OPEN_AFTER_S = 3.0


class Daemon:
    """Everything that lives for the daemon's lifetime. Use from the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        daemon = settings.daemon
        self.socket_path: Path = settings.paths.runtime_dir / SOCKET_NAME
        self.metrics = Metrics()
        self.memory = MemoryManager(
            daemon.memory_budget_mb,
            full_group=GROUP_CHUNKS,
            relieve=self._relieve_memory if daemon.release_idle_s > 0 else None,
        )
        self.engine = Engine(
            settings,
            on_embed_latency=lambda seconds: self.metrics.embed_batch_ms.add(seconds * 1000),
            embed_batch_cap=self.memory.admit_batch,
            open_store_now=False,
        )
        self.events = EventBus()
        self._store_opening = anyio.Event()  # `Services.store_opening`
        services = Services(
            store=self.engine.store,
            snapshot=self.engine.snapshot,
            memory=self.memory,
            metrics=self.metrics,
            events=self.events,
            settings=daemon,
            full_slot=anyio.CapacityLimiter(1),
            model_slot=anyio.CapacityLimiter(1),
            watching=lambda root: self.watcher.mode_of(root),
            watch_error=lambda root: self.watcher.error_of(root),
            covering=lambda root: self.watcher.covering(root),
            store_opening=self._store_opening,
        )
        registry = Registry(settings.paths.data_dir / "repos.json")
        self.repos = RepoSet(
            registry, self._indexer_for, services, lambda roots: self.watcher.set_roots(roots)
        )
        self.watcher = Watcher(
            self.repos.on_changes,
            quiet_ms=daemon.watch_quiet_ms,
            max_batch_ms=daemon.watch_max_batch_ms,
            enabled=daemon.watch == "auto",
        )
        self.should_exit = anyio.Event()
        self.ready = anyio.Event()
        self._resting: anyio.CancelScope | None = None  # the rest loop's; `close` cancels it
        self._imaging: anyio.CancelScope | None = None  # the image loop's; likewise
        self._stop_images = threading.Event()  # an image being written stops at its next batch
        context = Context(
            settings=settings,
            repos=self.repos,
            engine=self.engine,
            memory=self.memory,
            metrics=self.metrics,
            events=self.events,
            watcher=self.watcher,
            socket_path=self.socket_path,
            search_limiter=anyio.CapacityLimiter(SEARCH_THREADS),
            request_exit=self.should_exit.set,
        )
        router = Router(
            context,
            ready=self.ready,
            exiting=self.should_exit,
            request_timeout_s=daemon.request_timeout_s,
        )
        #: The server's one call into the daemon: a request in, a reply (or a stream) out.
        self.dispatch: Callable[[p.Request], Awaitable[p.Reply | Replied]] = router.dispatch

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the background work (in `task_group`): load the model, start a supervisor
        per registered repository (each reconciles its repository), watch."""
        for note in self.settings.deprecated:
            log.warning("configuration: %s", note)
        task_group.start_soon(anyio.to_thread.run_sync, compile_packages)
        await anyio.to_thread.run_sync(lambda: self.engine.embedder)
        # The model's session loads while the repositories are planned and scanned (its load
        # runs outside the GIL): a warm restart's scan needs no model (−0.25 s to fresh).
        task_group.start_soon(anyio.to_thread.run_sync, self._warm_model)
        await task_group.start(self.repos.run)
        task_group.start_soon(self._open_store)
        task_group.start_soon(self.watcher.run)
        if self.settings.daemon.release_idle_s > 0:
            task_group.start_soon(self._rest_when_idle)
        if self.engine.store.images is not None and self.settings.daemon.image_quiet_s > 0:
            task_group.start_soon(self._keep_images)
        self.ready.set()
        log.info(
            "daemon ready: %d repositories, model %s",
            len(self.repos),
            self.engine.embedder.identity,
        )

    async def _open_store(self) -> None:
        with anyio.move_on_after(STORE_OPEN_AFTER_S):
            for supervisor in self.repos:
                await supervisor.scanned.wait()
        self.engine.store.open_soon()
        self._store_opening.set()

    def _warm_model(self) -> None:
        try:
            self.engine.embedder.provider.warm()
        except Exception:  # noqa: BLE001 - the first text to embed reports it again
            log.warning("loading the embedding model failed", exc_info=True)

    def _relieve_memory(self) -> bool:
        """Near the budget: release the collections of repositories nobody used for half a
        minute (not one being indexed: each group's writes use it again)."""
        return bool(self.engine.store.release_idle(PRESSURE_IDLE_S))

    async def _rest_when_idle(self) -> None:
        """Hand back the memory of what nobody uses (`Engine.rest`), then the heap pages that
        freed. Runs until `close`."""
        min_idle_s = self.settings.daemon.release_idle_s

        def rest() -> None:
            if self.engine.rest(min_idle_s):
                self.memory.rest()

        with anyio.CancelScope() as self._resting:
            while True:
                await anyio.sleep(min(max(min_idle_s / 6, 1.0), 30.0))
                try:
                    await anyio.to_thread.run_sync(rest)
                except Exception:  # noqa: BLE001 - what failed to be released stays loaded
                    log.warning("releasing idle collections or the model failed", exc_info=True)

    async def _keep_images(self) -> None:
        """Write the search images of large collections once they are quiet
        (`Store.write_images`). Runs until `close`."""
        daemon = self.settings.daemon
        with anyio.CancelScope() as self._imaging:
            while True:
                await anyio.sleep(min(max(daemon.image_quiet_s / 4, 1.0), 60.0))
                try:
                    await anyio.to_thread.run_sync(
                        self.engine.store.write_images,
                        daemon.image_min_rows,
                        daemon.image_quiet_s,
                        self._stop_images.is_set,
                    )
                except Exception:  # noqa: BLE001 - without an image, searches wait for a load
                    log.warning("writing search images failed", exc_info=True)

    async def close(self) -> None:
        """Stop indexing at the next safe point; everything committed so far is persisted."""
        self._stop_images.set()
        for scope in (self._resting, self._imaging):
            if scope is not None:
                scope.cancel()
        self.watcher.stop()
        await self.repos.stop()
        await anyio.to_thread.run_sync(self.engine.close)

    def _indexer_for(self, entry: RepoEntry) -> RepoIndexer:
        return self.engine.indexer_for(Path(entry.root), entry.options)
