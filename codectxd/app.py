"""The daemon: wires engine, registry, watcher, memory manager and metrics, and implements the
request handlers the server dispatches to (one table, `Daemon.handlers`)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from codectx_client import protocol as p
from codectxd import __version__
from codectxd.config import Settings, describe
from codectxd.engine import Engine
from codectxd.errors import CodectxError, NotFoundError, ProtocolError
from codectxd.events import EventBus
from codectxd.ignore import compile_patterns
from codectxd.indexer import Progress, SyncReport
from codectxd.memory import MemoryManager
from codectxd.metrics import Metrics
from codectxd.registry import Registry
from codectxd.repos import ERROR, INDEXING, READY, SCANNING, RepoRuntime
from codectxd.search import Filters, Target, search
from codectxd.snapshot import DIRTY
from codectxd.watcher import Watcher

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]
#: Directories nobody means to index; `add` refuses them without force=True.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/etc",
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/var",
        "/boot",
        "/dev",
        "/proc",
        "/sys",
        "/opt",
        "/root",
        "/System",
        "/Library",
    }
)
_PROGRESS_INTERVAL_S = 0.25
_ERROR_RETRY_S = 30.0
_ERROR_MIN_RETRY_S = 1.0
_WAIT_GRACE_S = 0.15  # let the watcher report a just-saved file before judging freshness


class Daemon:
    """Everything that lives for the daemon's lifetime. Use from the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.registry = Registry(settings.paths.data_dir / "repos.json")
        self.metrics = Metrics()
        self.memory = MemoryManager(settings.daemon.memory_budget_mb)
        self.events = EventBus()
        self.watcher = Watcher(
            self._on_changes,
            step_ms=settings.daemon.debounce_ms,
            enabled=settings.daemon.watch == "auto",
        )
        self.repos: dict[str, RepoRuntime] = {}
        self.should_exit = anyio.Event()
        self.ready = anyio.Event()
        self.socket_path: Path | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # Full syncs one at a time (they saturate the CPU); incremental syncs of other repos
        # may run beside one. Searches have their own threads so they never queue behind.
        self._full_limiter = anyio.CapacityLimiter(1)
        self._incremental_limiter = anyio.CapacityLimiter(2)
        self.search_limiter = anyio.CapacityLimiter(8)
        self.handlers: dict[str, Handler] = {
            "ping": self.ping,
            "add": self.add,
            "remove": self.remove,
            "list": self.list,
            "search": self.search,
            "status": self.status,
            "reindex": self.reindex,
            "clear": self.clear,
            "shutdown": self.shutdown,
        }

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start background work: load the model, reconcile every repo, watch, rescan."""
        self._tg = task_group
        embedder = await anyio.to_thread.run_sync(lambda: self.engine.embedder)  # loads the model
        embedder.on_latency = lambda seconds: self.metrics.embed_batch_ms.add(seconds * 1000)
        embedder.batch_cap = self.memory.admit_batch
        for entry in self.registry.entries():
            try:
                runtime = self._start_repo(Path(entry.root), entry.ignore, entry.extensions)
            except ValueError as exc:  # e.g. an invalid ignore pattern saved by an old version
                log.error(
                    "repository %s not started: %s (run `codectx-client add %s` with "
                    "valid options)",
                    entry.root,
                    exc,
                    entry.root,
                )
                continue
            await self._plan_model_switch(runtime)
        self.watcher.set_roots(list(self.repos))
        task_group.start_soon(self.watcher.run)
        task_group.start_soon(self._periodic_rescan)
        self.ready.set()
        log.info(
            "daemon ready: %d repositories, model %s",
            len(self.repos),
            self.engine.embedder.identity,
        )

    async def close(self) -> None:
        """Stop indexing at the next safe point; everything committed so far is persisted."""
        self.memory.stop.set()
        self.watcher.stop()
        for runtime in self.repos.values():
            runtime.indexer.stop.set()
        for runtime in list(self.repos.values()):
            await runtime.idle.wait()
        await anyio.to_thread.run_sync(self.engine.close)

    def _start_repo(
        self, root: Path, ignore: tuple[str, ...] = (), extensions: tuple[str, ...] = ()
    ) -> RepoRuntime:
        runtime: RepoRuntime | None = None

        def between_groups() -> None:
            assert runtime is not None
            self._run_queued_inline(runtime)

        indexer = self.engine.indexer_for(
            root, on_progress=lambda pr: None, ignore=ignore, extensions=extensions
        )
        indexer.group_chunks = self.memory.admit_group
        indexer.between_groups = between_groups
        indexer.on_commit = self._on_commit
        runtime = RepoRuntime(root, indexer)
        indexer.on_progress = self._progress_publisher(runtime)
        self.repos[str(root)] = runtime
        runtime.add_full()
        assert self._tg is not None
        self._tg.start_soon(self._worker, runtime)
        return runtime

    async def _plan_model_switch(self, runtime: RepoRuntime) -> None:
        """After a change of embedding model, keep searching the old complete index until the
        new one is built (identities include model and dimension, so they never mix)."""

        def plan() -> tuple[list[str], str | None]:
            prefix = runtime.indexer.collection.split("_", 2)
            repo_prefix = f"{prefix[0]}_{prefix[1]}_"
            others = [
                c
                for c in self.engine.store.list_collections(repo_prefix)
                if c != runtime.indexer.collection
            ]
            if runtime.indexer.is_complete() or not others:
                return others, None
            complete = [
                c for c in others if self.engine.snapshot.get_meta(c, "complete") is not None
            ]
            return others, (complete[0] if complete else None)

        others, serving = await anyio.to_thread.run_sync(plan)
        runtime.retired = others
        if serving is not None:
            runtime.search_collection = serving
            log.info(
                "%s: embedding model changed; searches use %s until the new index %s is complete",
                runtime.name,
                serving,
                runtime.indexer.collection,
            )

    async def _finish_model_switch(self, runtime: RepoRuntime) -> None:
        retired, runtime.retired = runtime.retired, []
        runtime.search_collection = runtime.indexer.collection

        def drop() -> None:
            for name in retired:
                self.engine.store.drop_collection(name)
                self.engine.snapshot.clear(name)

        await anyio.to_thread.run_sync(drop)
        log.info(
            "%s: switched to %s; removed %s",
            runtime.name,
            runtime.indexer.collection,
            ", ".join(retired),
        )
        self.events.publish(
            "state",
            {
                "repo": runtime.name,
                "state": runtime.state,
                "collection": runtime.indexer.collection,
            },
        )

    def _on_commit(self, files: int, chunks: int, seconds: float) -> None:
        self.metrics.files.add(files)
        self.metrics.chunks.add(chunks)
        self.metrics.commit_ms.add(seconds * 1000)

    def _progress_publisher(self, runtime: RepoRuntime) -> Callable[[Progress], None]:
        last = [0.0, ""]

        def publish(progress: Progress) -> None:
            now = time.monotonic()
            if progress.phase == last[1] and now - last[0] < _PROGRESS_INTERVAL_S:
                return
            last[0], last[1] = now, progress.phase
            data = {
                "repo": runtime.name,
                "phase": progress.phase,
                "files_done": progress.files_done,
                "files_total": progress.files_total,
                "chunks_done": progress.chunks_done,
                "errors": progress.errors,
            }
            # RuntimeError: not in a worker thread of our loop, or the loop is closing.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._publish_progress, runtime, data)

        return publish

    def _publish_progress(self, runtime: RepoRuntime, data: dict[str, Any]) -> None:
        if data["phase"] in (SCANNING, INDEXING) and runtime.state != ERROR:
            runtime.state = data["phase"]
        self.events.publish("progress", data)

    # --- the per-repo worker ----------------------------------------------------------------

    async def _worker(self, runtime: RepoRuntime) -> None:
        with anyio.CancelScope() as scope:
            runtime.cancel_scope = scope
            while not self.should_exit.is_set():
                if not runtime.has_work():
                    await runtime.wake.wait()
                    runtime.wake = anyio.Event()
                    continue
                try:
                    await self._sync_once(runtime)
                except Exception as exc:  # noqa: BLE001 - a repo's failure never kills the daemon
                    log.exception("sync of %s failed", runtime.name)
                    runtime.state, runtime.error = ERROR, str(exc)
                    self.events.publish("error", {"repo": runtime.name, "message": str(exc)})
                    # Retry later, or as soon as something asks for it (reindex, a change).
                    wake = runtime.wake
                    await anyio.sleep(_ERROR_MIN_RETRY_S)
                    with anyio.move_on_after(_ERROR_RETRY_S):
                        await _first_of(self.should_exit, wake)
                    runtime.add_full()

    async def _sync_once(self, runtime: RepoRuntime) -> None:
        started = time.perf_counter()
        full = runtime.take_full()
        force, batch = full if full is not None else (False, runtime.take_paths())
        runtime.begin_sync()
        try:
            if not runtime.root.is_dir():
                runtime.finish(batch)  # the error path retries with a full sync
                raise NotFoundError(f"the repository directory {runtime.root} is missing")
            if full is not None:
                runtime.state = SCANNING
                self.events.publish("state", {"repo": runtime.name, "state": SCANNING})
                report: SyncReport = await anyio.to_thread.run_sync(
                    runtime.indexer.full_sync, force, limiter=self._full_limiter
                )
            else:
                if runtime.state != INDEXING:
                    runtime.state = INDEXING
                report = await anyio.to_thread.run_sync(
                    runtime.indexer.sync_paths, batch, limiter=self._incremental_limiter
                )
            runtime.finish(batch)
        finally:
            runtime.end_sync()
        self.metrics.sync_ms.add((time.perf_counter() - started) * 1000)
        if full is not None and not report.cancelled:
            runtime.initial_done = True
            if runtime.retired:
                await self._finish_model_switch(runtime)
        runtime.error = None
        runtime.last_report = dict(runtime.last_report or {})
        runtime.last_report["full" if full is not None else "paths"] = {
            "scanned": report.scanned,
            "unchanged": report.unchanged,
            "files_read": report.files_read,
            "indexed": report.indexed,
            "removed": report.removed,
            "skipped": report.skipped,
            "failed": report.failed,
            "chunks_written": report.chunks_written,
            "seconds": round(report.seconds, 3),
            "cancelled": report.cancelled,
            "scan_s": round(report.scan_s, 3),
            "parse_s": round(report.parse_s, 3),
            "embed_s": round(report.embed_s, 3),
            "store_s": round(report.store_s, 3),
            "finished": time.time(),
        }
        runtime.state = READY if not runtime.has_work() else runtime.state
        runtime.mark_synced()
        for path, message in report.errors[:20]:
            self.events.publish(
                "file_error", {"repo": runtime.name, "path": path, "message": message}
            )
        self.events.publish(
            "synced",
            {
                "repo": runtime.name,
                "indexed": report.indexed,
                "removed": report.removed,
                "skipped": report.skipped,
                "failed": report.failed,
                "seconds": round(report.seconds, 3),
                "state": runtime.state,
            },
        )

    def _run_queued_inline(self, runtime: RepoRuntime) -> None:
        """Between groups of a long full sync: index just-saved files right away."""
        batch = runtime.take_paths()
        if not batch:
            return
        try:
            runtime.indexer.sync_paths(batch)
        finally:
            runtime.finish(batch)
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(runtime.mark_synced)

    # --- watcher and periodic scans ---------------------------------------------------------

    def _on_changes(self, changes: dict[str, set[str]]) -> None:
        for root, paths in changes.items():
            runtime = self.repos.get(root)
            if runtime is None:
                continue
            rules = runtime.indexer.scanner.rules
            relevant: set[str] = set()
            rescan = False
            for rel in paths:
                name = rel.rsplit("/", 1)[-1]
                if rel in ("", ".git/info/exclude") or name in (".gitignore", ".codectxignore"):
                    rescan = True
                    continue
                if rules.is_ignored(rel):
                    continue
                relevant.add(rel)
            if rescan:
                rules.invalidate()
                runtime.add_full()
            if relevant:
                runtime.add_paths(relevant)
            if rescan or relevant:
                runtime.wake.set()

    async def _periodic_rescan(self) -> None:
        """Reconcile every repo now and then: watch events can be lost (queue overflow)."""
        last_full = time.monotonic()
        while True:
            polling = self.watcher.mode != "inotify"
            await anyio.sleep(
                self.settings.daemon.poll_interval_s
                if polling
                else min(60.0, self.settings.daemon.rescan_interval_s or 60.0)
            )
            interval = self.settings.daemon.rescan_interval_s
            due = polling or (interval > 0 and time.monotonic() - last_full >= interval)
            if not due:
                continue
            last_full = time.monotonic()
            for runtime in self.repos.values():
                if not runtime.syncing:
                    runtime.add_full()
                    runtime.wake.set()

    # --- helpers ----------------------------------------------------------------------------

    def find_repo(self, path: str) -> RepoRuntime:
        """The registered repo that is `path` or contains it (`path` already resolved)."""
        resolved = path
        best: RepoRuntime | None = None
        for root, runtime in self.repos.items():
            if (resolved == root or resolved.startswith(root + os.sep)) and (
                best is None or len(root) > len(best.name)
            ):
                best = runtime
        if best is None:
            raise NotFoundError(
                f"{path} is not inside a registered repository "
                f"(add it with: codectx-client add PATH)"
            )
        return best

    def _repo_info(self, runtime: RepoRuntime, counts: dict[str, int] | None = None) -> p.RepoInfo:
        counts = (
            counts
            if counts is not None
            else self.engine.snapshot.counts(runtime.indexer.collection)
        )
        progress = runtime.indexer.progress
        scan = runtime.indexer.last_scan
        scan_skipped = sum(scan.skipped_counts.values()) if scan else 0
        return p.RepoInfo(
            root=runtime.name,
            state=runtime.state,
            files_indexed=counts.get("indexed", 0),
            files_pending=runtime.pending() + counts.get(DIRTY, 0),
            files_skipped=scan_skipped + counts.get("skipped", 0),
            files_failed=counts.get("failed", 0),
            chunks=counts.get("chunks", 0),
            last_sync=runtime.last_sync,
            watching=self.watcher.mode,
            collection=runtime.indexer.collection,
            model=self.engine.embedder.identity,
            progress={
                "phase": progress.phase,
                "files_done": progress.files_done,
                "files_total": progress.files_total,
                "chunks_done": progress.chunks_done,
                "errors": progress.errors,
            }
            if runtime.syncing
            else None,
            error=runtime.error,
            last_report=runtime.last_report,
        )

    async def _info(self, runtime: RepoRuntime) -> p.RepoInfo:
        counts = await anyio.to_thread.run_sync(
            self.engine.snapshot.counts, runtime.indexer.collection
        )
        return self._repo_info(runtime, counts)

    async def _targets(self, repos: list[str]) -> list[RepoRuntime]:
        if not repos:
            return list(self.repos.values())
        found: dict[str, RepoRuntime] = {}
        for path in repos:
            runtime = self.find_repo(await resolve_path(path))
            found[runtime.name] = runtime
        return list(found.values())

    # --- handlers ---------------------------------------------------------------------------

    async def ping(self, params: p.PingParams) -> p.PingResult:
        return p.PingResult(
            version=__version__,
            protocol=p.PROTOCOL_VERSION,
            pid=os.getpid(),
            uptime_s=round(time.time() - self.metrics.started, 3),
        )

    async def add(self, params: p.AddParams) -> p.AddResult:
        root = await anyio.to_thread.run_sync(_validate_new_root, params.path, params.force)
        ignore, extensions = tuple(params.ignore), tuple(params.extensions)
        try:  # before anything is persisted: a bad pattern must not break every later start
            compile_patterns(ignore)
        except ValueError as exc:
            raise ProtocolError(f"invalid ignore pattern: {exc}") from None
        existing = self.repos.get(str(root))
        if existing is not None:
            entry = self.registry.get(str(root))
            if (
                entry is not None
                and (entry.ignore, entry.extensions) != (ignore, extensions)
                and (ignore or extensions)
            ):
                # New per-repo options: restart its indexer with them; a full sync follows.
                await anyio.to_thread.run_sync(self.registry.add, str(root), ignore, extensions)
                await self._stop_worker(existing)
                existing = self._start_repo(root, ignore, extensions)
                await self._plan_model_switch(existing)
                existing.wake.set()
            return p.AddResult(repo=await self._info(existing), added=False)
        for other in self.repos:
            if str(root).startswith(other + os.sep):
                log.info(
                    "%s is inside the registered repository %s; indexing it separately", root, other
                )
        await anyio.to_thread.run_sync(self.registry.add, str(root), ignore, extensions)
        runtime = self._start_repo(root, ignore, extensions)
        await self._plan_model_switch(runtime)
        runtime.wake.set()
        self.watcher.set_roots(list(self.repos))
        self.events.publish("state", {"repo": runtime.name, "state": runtime.state})
        log.info("added repository %s", root)
        return p.AddResult(repo=self._repo_info(runtime, {}), added=True)

    async def _stop_worker(self, runtime: RepoRuntime) -> None:
        """Stop a repo's worker and wait until its running sync (if any) has stopped."""
        runtime.indexer.stop.set()
        if runtime.cancel_scope is not None:
            runtime.cancel_scope.cancel()
        runtime.wake.set()
        await runtime.idle.wait()

    async def remove(self, params: p.RemoveParams) -> p.RemoveResult:
        runtime = self.repos.get(await resolve_path(params.path))
        if runtime is None:
            raise NotFoundError(f"{params.path} is not a registered repository")
        await self._drop(runtime)
        return p.RemoveResult(removed=[runtime.name])

    async def _drop(self, runtime: RepoRuntime) -> None:
        """Stop a repo's worker, delete its index and forget it."""
        self.repos.pop(runtime.name, None)
        self.watcher.set_roots(list(self.repos))
        await self._stop_worker(runtime)

        def drop() -> None:
            with runtime.indexer._lock:  # waits for a running sync to stop at its next group
                for name in {
                    runtime.indexer.collection,
                    runtime.search_collection,
                    *runtime.retired,
                }:
                    self.engine.store.drop_collection(name)
                    self.engine.snapshot.clear(name)
            self.registry.remove(runtime.name)

        await anyio.to_thread.run_sync(drop)
        self.events.publish("state", {"repo": runtime.name, "state": "removed"})
        log.info("removed repository %s", runtime.name)

    async def list(self, params: p.ListParams) -> p.ListResult:
        return p.ListResult(repos=[await self._info(r) for r in self.repos.values()])

    async def search(self, params: p.SearchParams) -> p.SearchResult:
        started = time.perf_counter()
        if not params.query.strip():
            raise ProtocolError("query is empty")
        if not 1 <= params.limit <= 200:
            raise ProtocolError("limit must be between 1 and 200")
        try:
            compile_patterns(params.paths)
        except ValueError as exc:
            raise ProtocolError(f"invalid path glob: {exc}") from None
        runtimes = await self._targets(params.repos)
        waited = 0.0
        if params.wait_s > 0:
            waited = await self._wait_fresh(runtimes, params.wait_paths, min(params.wait_s, 60.0))
        filters = Filters(
            paths=tuple(params.paths),
            languages=tuple(params.languages),
            extensions=tuple(params.extensions),
        )
        targets = [
            Target(
                r.name,
                r.search_collection,
                lexical_only=r.search_collection != r.indexer.collection,
            )
            for r in runtimes
        ]
        embedder = self.engine.embedder

        def run() -> list[Any]:
            # A collection that is missing, being created or never written answers nothing
            # (Store.search); the reply's `fresh`/`indexing` say the index is not complete.
            return search(
                self.engine.store,
                embedder,
                targets,
                params.query,
                limit=params.limit,
                filters=filters,
                mode=params.mode,
            )

        results = await anyio.to_thread.run_sync(run, limiter=self.search_limiter)
        took = (time.perf_counter() - started) * 1000
        self.metrics.search_ms.add(took - waited * 1000)
        pending = sum(r.pending() for r in runtimes)
        return p.SearchResult(
            results=[
                p.SearchHit(
                    repo=r.repo,
                    path=r.path,
                    start_line=r.start_line,
                    end_line=r.end_line,
                    symbol=r.symbol,
                    kind=r.kind,
                    language=r.language,
                    score=round(r.score, 6),
                    content=r.content,
                )
                for r in results
            ],
            fresh=all(r.fresh() for r in runtimes),
            pending=pending,
            indexing=[r.name for r in runtimes if not r.initial_done],
            took_ms=round(took, 3),
            waited_ms=round(waited * 1000, 3),
        )

    async def _wait_fresh(
        self, runtimes: list[RepoRuntime], wait_paths: list[str], timeout_s: float
    ) -> float:
        """Read-your-writes: queue `wait_paths` that changed on disk, then wait (bounded) until
        they, or everything pending in `runtimes` when no paths are given, are indexed."""
        started = time.perf_counter()
        watched: list[tuple[RepoRuntime, list[str]]] = []
        if wait_paths:
            by_repo: dict[str, list[str]] = {}
            for path in wait_paths:
                resolved = await resolve_path(path)
                runtime = self.find_repo(resolved)
                rel = resolved[len(runtime.name) + 1 :].replace(os.sep, "/")
                by_repo.setdefault(runtime.name, []).append(rel)
            for name, rels in by_repo.items():
                runtime = self.repos[name]
                runtime.add_paths(set(rels))  # do not wait for the watcher to notice
                runtime.wake.set()
                watched.append((runtime, rels))
        else:
            await anyio.sleep(min(_WAIT_GRACE_S, timeout_s))
            watched = [(r, []) for r in runtimes]
        with anyio.move_on_after(max(0.0, timeout_s - (time.perf_counter() - started))):
            while True:
                busy = [r for r, rels in watched if (r.waiting_on(rels) if rels else not r.fresh())]
                if not busy:
                    break
                with anyio.move_on_after(0.5):
                    await busy[0].synced.wait()
        return time.perf_counter() - started

    async def status(self, params: p.StatusParams) -> p.StatusResult:
        runtimes = await self._targets([params.repo] if params.repo else [])
        repos: list[p.RepoStatus] = []
        embed_stats = self.engine.embedder.stats.as_dict()
        for runtime in runtimes:
            info = await self._info(runtime)
            problems = await anyio.to_thread.run_sync(
                self.engine.snapshot.problems, runtime.indexer.collection, params.errors
            )
            scan = runtime.indexer.last_scan
            skipped = dict(scan.skipped_counts) if scan else {}
            for problem in problems:
                if problem.state == "skipped":
                    reason = problem.reason.split(":", 1)[0]
                    skipped[reason] = skipped.get(reason, 0) + 1
            listed = [
                {"path": s.path, "state": "skipped", "reason": s.reason}
                for s in (scan.skipped[: params.errors] if scan else [])
                if s.reason != "unsupported"
            ]
            repos.append(
                p.RepoStatus(
                    repo=info,
                    skipped=skipped,
                    problems=[
                        {"path": x.path, "state": x.state, "reason": x.reason} for x in problems
                    ]
                    + listed[: max(0, params.errors - len(problems))],
                    embedding=embed_stats,
                )
            )
        queue = sum(r.pending() for r in self.repos.values())
        daemon = {
            "version": __version__,
            "protocol": p.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "socket": str(self.socket_path) if self.socket_path else None,
            "data_dir": str(self.settings.paths.data_dir),
            "store": self.settings.store.address or "milvus-lite",
            "provider": self.engine.embedder.provider.name,
            "model": self.engine.embedder.provider.model,
            "dimension": self.engine.embedder.dimension,
            "watching": self.watcher.mode,
            "watch_error": self.watcher.error,
            "memory": self.memory.snapshot(),
            "metrics": self.metrics.snapshot(queue),
            "embedding": embed_stats,
            "subscribers": self.events.subscribers,
            "settings": describe(self.settings),
        }
        return p.StatusResult(daemon=daemon, repos=repos)

    async def reindex(self, params: p.ReindexParams) -> p.ReindexResult:
        runtimes = await self._targets([params.repo] if params.repo else [])
        for runtime in runtimes:
            runtime.add_full(force=params.force)
            runtime.wake.set()
        return p.ReindexResult(started=[r.name for r in runtimes])

    async def clear(self, params: p.ClearParams) -> p.ClearResult:
        if params.repo is None and not params.all:
            raise ProtocolError("clear needs a repository path, or all=true to clear every one")
        runtimes = await self._targets([params.repo] if params.repo else [])
        for runtime in runtimes:
            await self._drop(runtime)
        return p.ClearResult(cleared=[r.name for r in runtimes])

    async def shutdown(self, params: p.ShutdownParams) -> p.ShutdownResult:
        self.should_exit.set()
        return p.ShutdownResult(stopping=True)


async def _first_of(*events: anyio.Event) -> None:
    """Return when any of `events` is set."""
    async with anyio.create_task_group() as tg:

        async def until(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(until, event)


def _resolve(path: str, strict: bool = False) -> Path:
    """`path` with ~ expanded and symlinks resolved; a client error when that is impossible."""
    try:
        return Path(path).expanduser().resolve(strict=strict)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"{path} does not exist") from None
    except RuntimeError as exc:  # ~user of an unknown user, or a symlink loop
        raise NotFoundError(f"{path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"invalid path {path!r}: {exc}") from None


async def resolve_path(path: str) -> str:
    """Absolute, symlink-free form of a client-supplied path (off the event loop)."""
    return str(await anyio.to_thread.run_sync(_resolve, path))


def _validate_new_root(path: str, force: bool) -> Path:
    root = _resolve(path, strict=True)
    if not root.is_dir():
        raise ProtocolError(f"{path} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ProtocolError(f"{path} is not readable by you")
    if not force and (str(root) in SYSTEM_DIRS or root == Path.home()):
        raise ProtocolError(
            f"refusing to index {root}: it is a system or home directory, not a repository "
            f"(pass force to index it anyway)"
        )
    return root


__all__ = ["CodectxError", "Daemon"]
