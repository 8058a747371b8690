"""The registered repositories while the daemon runs: the persisted registry (the one home of
the repository set) and one supervisor task per entry, owned by this set's task group."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread

from codectxd.errors import NotFoundError
from codectxd.indexer import RepoIndexer
from codectxd.registry import Registry, RepoEntry, RepoOptions
from codectxd.supervisor import Services, Supervisor

log = logging.getLogger(__name__)

#: Builds the indexer of a registered repository (with the entry's own options).
IndexerFactory = Callable[[RepoEntry], RepoIndexer]


class RepoSet:
    """Use from the event loop; `run` must be running (it owns the supervisors' tasks)."""

    def __init__(
        self,
        registry: Registry,
        indexer_for: IndexerFactory,
        services: Services,
        on_roots_changed: Callable[[list[str]], None],
    ) -> None:
        self.registry = registry
        self._indexer_for = indexer_for
        self._services = services
        self._on_roots_changed = on_roots_changed
        self._supervisors: dict[str, Supervisor] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopped = anyio.Event()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start a supervisor for every registered repository, then keep them until cancelled."""
        try:
            await self._run(task_status)
        finally:
            self._stopped.set()

    async def _run(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for entry in self.registry.entries():
                try:
                    self._start(entry)
                except ValueError as exc:  # e.g. an invalid ignore pattern saved by an old version
                    log.error(
                        "repository %s not started: %s (run `codectx-client add %s` with "
                        "valid options)",
                        entry.root,
                        exc,
                        entry.root,
                    )
            self._on_roots_changed(list(self._supervisors))
            task_status.started()
            await anyio.sleep_forever()

    async def stop(self) -> None:
        """Cancel every supervisor and wait until they are gone: running groups stop at their
        next safe point (what they committed is persisted)."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._stopped.wait()

    def _start(self, entry: RepoEntry) -> Supervisor:
        assert self._tg is not None, "RepoSet.run is not running"
        supervisor = Supervisor(self._indexer_for(entry), self._services)
        self._supervisors[entry.root] = supervisor
        self._tg.start_soon(supervisor.run, name=f"supervisor {entry.root}")
        return supervisor

    # --- changes --------------------------------------------------------------------------

    async def add(self, root: Path, options: RepoOptions) -> tuple[Supervisor, bool]:
        """Register `root` (or give it new options); (its supervisor, whether it is new).
        Adding a registered repository without options keeps the ones it has."""
        name = str(root)
        existing = self._supervisors.get(name)
        old = self.registry.get(name)
        if existing is not None and old is not None:
            if options and old.options != options:
                entry = await anyio.to_thread.run_sync(self.registry.add, name, options)
                existing.reconfigure(self._indexer_for(entry))
            return existing, False
        for other in self._supervisors:
            if name.startswith(other + os.sep):
                log.info(
                    "%s is inside the registered repository %s; indexing it separately", root, other
                )
        entry = await anyio.to_thread.run_sync(self.registry.add, name, options)
        supervisor = self._start(entry)
        self._on_roots_changed(list(self._supervisors))
        log.info("added repository %s", root)
        return supervisor, True

    async def remove(self, supervisor: Supervisor) -> None:
        """Stop watching a repository, delete its index and forget it."""
        if self._supervisors.pop(supervisor.name, None) is None:
            return
        self._on_roots_changed(list(self._supervisors))
        await supervisor.remove()
        await anyio.to_thread.run_sync(self.registry.remove, supervisor.name)

    # --- lookups --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Supervisor]:
        return iter(list(self._supervisors.values()))

    def __len__(self) -> int:
        return len(self._supervisors)

    def get(self, root: str) -> Supervisor | None:
        return self._supervisors.get(root)

    def find(self, path: str) -> Supervisor:
        """The registered repository that is `path` or contains it (`path` resolved)."""
        best: Supervisor | None = None
        for root, supervisor in self._supervisors.items():
            inside = path == root or path.startswith(root + os.sep)
            if inside and (best is None or len(root) > len(best.name)):
                best = supervisor
        if best is None:
            raise NotFoundError(
                f"{path} is not inside a registered repository "
                f"(add it with: codectx-client add PATH)"
            )
        return best

    def on_changes(self, changes: dict[str, set[str]]) -> None:
        """The watcher's report: {root: changed relative paths}."""
        for root, paths in changes.items():
            supervisor = self._supervisors.get(root)
            if supervisor is not None:
                supervisor.submit_paths(paths)
