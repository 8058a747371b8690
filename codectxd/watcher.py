"""One watchfiles watcher over every repository root, turned into per-repo path sets.

watchfiles cannot add or remove paths from a running `awatch` (issue #298), so a change of the
repository set restarts it through its stop event. Events are only hints: a burst (git checkout)
arrives as one batch where a file may show as both deleted and added, so the indexer stats every
path; files created right after their directory may be missed, so a reported directory is
rescanned whole. When watching fails (inotify limit, unsupported file system) the daemon falls
back to periodic scans and says so in status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import anyio

log = logging.getLogger(__name__)

#: Upper bound on how long one burst of changes is grouped before it is handed over.
MAX_GROUP_MS = 1600
RETRY_AFTER_FAILURE_S = 60.0
#: How long the Rust watcher blocks a worker thread between checks of the stop event.
RUST_TIMEOUT_MS = 1000

ChangeHandler = Callable[[dict[str, set[str]]], None]


def _existing(roots: list[str]) -> list[str]:
    return [r for r in roots if os.path.isdir(r)]


def _owners(path: str, roots: list[str]) -> list[tuple[str, str]]:
    """(root, relative path) for every root containing `path` (nested repos get both)."""
    out = []
    for root in roots:
        if path == root:
            out.append((root, ""))
        elif path.startswith(root + os.sep):
            out.append((root, path[len(root) + 1 :].replace(os.sep, "/")))
    return out


class Watcher:
    """Runs until cancelled; call `set_roots` whenever the repository set changes."""

    def __init__(self, on_changes: ChangeHandler, *, step_ms: int = 50,
                 enabled: bool = True) -> None:
        self.on_changes = on_changes
        self.step_ms = max(1, step_ms)
        self.enabled = enabled  # False: periodic scans only (e.g. network file systems)
        self.mode = "off" if enabled else "polling"  # inotify | polling | off
        self.error: str | None = None
        self._roots: list[str] = []
        self._restart = anyio.Event()
        self._stop_current: anyio.Event | None = None
        self._stopped = False

    def set_roots(self, roots: list[str]) -> None:
        """Replace the watched roots (restarts the underlying watcher)."""
        self._roots = sorted(set(roots), key=len, reverse=True)
        if self._stop_current is not None:
            self._stop_current.set()
        self._restart.set()

    def stop(self) -> None:
        """End watching promptly (the Rust watcher checks this event every step)."""
        self._stopped = True
        if self._stop_current is not None:
            self._stop_current.set()
        self._restart.set()

    async def run(self) -> None:
        from watchfiles import awatch

        if not self.enabled:
            self.mode, self.error = "polling", None
            await anyio.sleep_forever()
        while not self._stopped:
            roots = await anyio.to_thread.run_sync(_existing, list(self._roots))
            if not roots:
                self.mode = "off"
                self._restart = anyio.Event()
                with anyio.move_on_after(30):  # a missing root may come back
                    await self._restart.wait()
                continue
            self._restart = anyio.Event()
            stop = anyio.Event()
            self._stop_current = stop
            try:
                self.mode, self.error = "inotify", None
                async for changes in awatch(
                    *roots, watch_filter=None, debounce=MAX_GROUP_MS, step=self.step_ms,
                    stop_event=stop, recursive=True, rust_timeout=RUST_TIMEOUT_MS,
                ):
                    self._dispatch(changes, roots)
            except Exception as exc:  # noqa: BLE001 - any watch failure → polling fallback
                self.mode, self.error = "polling", f"file watching failed: {exc}"
                log.warning("%s; falling back to periodic scans", self.error)
                with anyio.move_on_after(RETRY_AFTER_FAILURE_S):
                    await self._restart.wait()
                continue
            if not stop.is_set():
                # awatch ended by itself (e.g. a watched root was deleted): restart shortly.
                await anyio.sleep(1.0)

    def _dispatch(self, changes: set[tuple[object, str]], roots: list[str]) -> None:
        by_repo: dict[str, set[str]] = {}
        for _, path in changes:
            for root, rel in _owners(path, roots):
                by_repo.setdefault(root, set()).add(rel)
        if by_repo:
            self.on_changes(by_repo)

