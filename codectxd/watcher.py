"""One watchfiles watcher over every repository root, turned into per-repo path sets.

watchfiles cannot add or remove paths from a running `awatch` (issue #298), so a change of the
repository set starts a new one, and the old one is stopped once the new one's watches are in
place: no change is lost in between. Events are only hints: a burst (git checkout)
arrives as one batch where a file may show as both deleted and added, so the indexer stats every
path; files created right after their directory may be missed, so a reported directory is
rescanned whole. When watching fails (inotify limit, unsupported file system) the daemon falls
back to periodic scans and says so in status.

watchfiles cannot report a path that is not UTF-8: the first event on one (even the walk that
sets a directory's watch up) fails the whole `awatch` for good. A repository holding such a
name is scanned periodically instead (its status says why) and the others go on being watched;
it is tried again every `UNWATCHABLE_RETRY_S` (the name may be gone by then).

inotify watches directories, not paths: a root deleted (or renamed away) and created again is a
new directory its old watch never sees, and a root missing when `awatch` started is not watched
at all. So the identity (device, inode) of every root is checked every few seconds; when it
changes `awatch` restarts over the roots that exist, and a root that (re)appeared is reported
whole ("" → a full rescan), which covers what happened while it was not watched.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 60.0
#: How long the Rust watcher blocks a worker thread between checks of the stop event.
RUST_TIMEOUT_MS = 1000
#: How often the roots are checked for having disappeared, appeared or been recreated.
ROOT_CHECK_S = 2.0
#: How long a full sync waits for the watcher to cover its repository before it scans anyway.
COVER_TIMEOUT_S = 10.0
#: After a restart, wait this long (the new watches are in place) before asking for a rescan
#: of the roots that (re)appeared.
RESCAN_DELAY_S = 0.5
#: How long a repository whose names watchfiles cannot report stays on periodic scans before
#: watching it is tried again.
UNWATCHABLE_RETRY_S = 600.0

_DELETED = 3  # watchfiles.Change.deleted (imported lazily with watchfiles)

ChangeHandler = Callable[[dict[str, set[str]]], None]


def _identities(roots: list[str]) -> dict[str, tuple[int, int]]:
    """(st_dev, st_ino) of every root that is an existing directory."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        try:
            st = os.stat(root)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            out[root] = (st.st_dev, st.st_ino)
    return out


def _owners(path: str, roots: list[str]) -> list[tuple[str, str]]:
    """(root, relative path) for every root containing `path` (nested repos get both)."""
    out = []
    for root in roots:
        if path == root:
            out.append((root, ""))
        elif path.startswith(root + os.sep):
            out.append((root, path[len(root) + 1 :].replace(os.sep, "/")))
    return out


_UNDECODABLE = re.compile(r'Unable to decode path "(.*)" to string')


def _cause(exc: BaseException) -> BaseException:
    """The error inside the task groups `awatch` wraps it in (a group of one, often nested)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Generation:
    """One `awatch` over a set of roots."""

    def __init__(self, roots: list[str], seq: int, overlapped: bool) -> None:
        self.roots = roots
        self.seq = seq  # later generations have higher ones
        self.overlapped = overlapped  # older ones were still watching when it started
        self.stop = anyio.Event()
        self.ended = anyio.Event()
        self.failed = False


class Watcher:
    """Runs until cancelled; call `set_roots` whenever the repository set changes."""

    def __init__(
        self,
        on_changes: ChangeHandler,
        *,
        quiet_ms: int = 50,
        max_batch_ms: int = 1600,
        enabled: bool = True,
    ) -> None:
        """A watcher of no roots yet (see `set_roots`).

        Args:
            on_changes: called with {root: relative paths} for every batch of changes.
            quiet_ms: a batch is handed over once no new change arrived for this long
                (watchfiles' `step`): the latency of a single save.
            max_batch_ms: a burst that keeps changing (a checkout, a build) is handed over at
                least this often (watchfiles' `debounce`).
            enabled: False: periodic scans only (network file systems).
        """
        self.on_changes = on_changes
        self.quiet_ms = max(1, quiet_ms)
        self.max_batch_ms = max(self.quiet_ms, max_batch_ms)
        self.enabled = enabled
        self.mode = "off" if enabled else "polling"  # inotify | polling | off
        self.error: str | None = None
        self._roots: list[str] = []
        self._restart = anyio.Event()
        self._current: _Generation | None = None  # the newest awatch
        self._generations: list[_Generation] = []  # every one still running
        self._seq = itertools.count()
        self._stopped = False
        self._watching: dict[str, tuple[int, int]] = {}  # roots of the current awatch
        self._missing: set[str] = set()  # roots that did not exist at the last start
        self._deleted_roots: set[str] = set()  # roots seen deleted since the last start
        self._covered: set[str] = set()  # roots whose watches are in place
        self._coverage = anyio.Event()  # set (and replaced) when `_covered` or `mode` change
        # Roots left to periodic scans: {root: (why, since: time.monotonic())}.
        self._unwatchable: dict[str, tuple[str, float]] = {}

    def set_roots(self, roots: list[str]) -> None:
        """Replace the watched roots (restarts the underlying watcher)."""
        self._roots = sorted(set(roots), key=len, reverse=True)
        self._restart.set()

    def mode_of(self, root: str) -> str:
        """How changes under `root` are noticed: inotify | polling | off."""
        return "polling" if root in self._unwatchable else self.mode

    def error_of(self, root: str) -> str | None:
        """Why `root` is not watched (None: it is, or the daemon-wide `error` says why not)."""
        entry = self._unwatchable.get(root)
        return entry[0] if entry else None

    def stop(self) -> None:
        """End watching promptly (the Rust watcher checks this event every step)."""
        self._stopped = True
        self._stop_generations()
        self._restart.set()
        self._coverage.set()

    async def covering(self, root: str, timeout_s: float = COVER_TIMEOUT_S) -> bool:
        """Wait until a change under `root` would be reported: its watches are in place, or
        nothing will watch it (periodic scans, a missing root). A scan that starts before
        then may report a repository fresh while a change made right after goes unseen until
        the next periodic rescan. False: still not covered after `timeout_s`."""
        with anyio.move_on_after(timeout_s):
            while not (
                root in self._covered
                or self.mode_of(root) == "polling"
                or self._stopped
                or root in self._missing
            ):
                await self._coverage.wait()
            return True
        return False

    def _set_covered(self, roots: set[str]) -> None:
        self._covered = roots
        self._coverage.set()
        self._coverage = anyio.Event()

    async def run(self) -> None:
        if not self.enabled:
            self.mode, self.error = "polling", None
            await anyio.sleep_forever()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._check_roots)
            await self._watch_loop(tg)
            tg.cancel_scope.cancel()

    async def _watch_loop(self, tg: anyio.abc.TaskGroup) -> None:
        """A new `awatch` (a generation) for every change of the roots. The one it replaces
        keeps watching until the new one's watches are in place, so a restart (a repository
        added or removed) loses no change in the other repositories; a change both see is
        reported twice, which costs a stat."""
        while not self._stopped:
            self._restart = anyio.Event()
            previous = self._watching
            ids = await anyio.to_thread.run_sync(_identities, list(self._roots))
            self._watching = ids
            # Roots that (re)appeared since the last start: what happened in them was not seen.
            back = [
                r
                for r, ident in ids.items()
                if r in previous
                and previous[r] != ident
                or r not in previous
                and r in self._missing
                or r in self._deleted_roots
            ]
            # Roots that vanished: their own deletion events may have been lost in the restart;
            # a whole-root report makes the daemon notice (and say so in status).
            gone = [r for r in previous if r not in ids and r in self._roots]
            self._deleted_roots.clear()
            self._missing = {r for r in self._roots if r not in ids}
            self._unwatchable = {r: v for r, v in self._unwatchable.items() if r in ids}
            if back or gone:
                tg.start_soon(self._report_whole, back + gone)
            roots = sorted((r for r in ids if r not in self._unwatchable), key=len, reverse=True)
            if not roots:
                self._current = None
                self._stop_generations()
                self.mode = "off"
                self._set_covered(set())
                await self._restart.wait()  # set_roots, stop, or a root appearing
                continue
            generation = _Generation(roots, next(self._seq), overlapped=bool(self._generations))
            self._current = generation
            self._generations.append(generation)
            log.debug("watch generation %d: %d roots", generation.seq, len(roots))
            tg.start_soon(self._watch, generation, tg)
            await self._restart.wait()

    def _stop_generations(self) -> None:
        for generation in self._generations:
            generation.stop.set()

    async def _watch(self, generation: _Generation, tg: anyio.abc.TaskGroup) -> None:
        """Run one generation's `awatch` until it is stopped, fails or ends by itself."""
        from watchfiles import awatch

        try:
            tg.start_soon(self._armed, generation)
            async for changes in awatch(
                *generation.roots,
                watch_filter=None,
                debounce=self.max_batch_ms,
                step=self.quiet_ms,
                stop_event=generation.stop,
                recursive=True,
                rust_timeout=RUST_TIMEOUT_MS,
            ):
                self._dispatch(changes, generation.roots)
        except Exception as group:  # noqa: BLE001 - any watch failure → polling fallback
            exc = _cause(group)
            log.debug("watch generation %d failed", generation.seq, exc_info=exc)
            generation.failed = True
            if self._current is generation and self._leave_out_undecodable(exc, generation):
                # What it held is lost: rescan every root it covered (a stat per file).
                tg.start_soon(self._report_whole, generation.roots)
                self._restart.set()
            elif self._current is generation and generation.overlapped:
                # The older watches may hold what the inotify limit allows: let them go and
                # start again without overlap before falling back to scans.
                log.info("watching failed beside the older watches (%s); starting again", exc)
                for older in list(self._generations):
                    if older is not generation:
                        older.stop.set()
                        await older.ended.wait()
                if self._current is generation:
                    self._restart.set()
            elif self._current is generation:
                self._stop_generations()
                self.mode, self.error = "polling", f"file watching failed: {exc}"
                self._set_covered(set())
                log.warning("%s; falling back to periodic scans", self.error)
                # What it held is lost, and the repositories wait for changes: rescan them.
                tg.start_soon(self._report_whole, generation.roots)
                await anyio.sleep(RETRY_AFTER_FAILURE_S)  # unless the roots change first
                if self._current is generation:
                    self._restart.set()
            return
        finally:
            self._generations.remove(generation)
            generation.ended.set()
            log.debug("watch generation %d ended", generation.seq)
        if self._current is generation and not generation.stop.is_set():
            # awatch ended by itself (e.g. a watched root was deleted): restart shortly.
            self._set_covered(set())
            await anyio.sleep(1.0)
            if self._current is generation:
                self._restart.set()

    def _leave_out_undecodable(self, exc: BaseException, generation: _Generation) -> bool:
        """If `exc` is watchfiles failing on a name that is not UTF-8, leave the roots holding
        it to periodic scans (True: watch the others again at once)."""
        found = _UNDECODABLE.search(str(exc))
        if found is None:
            return False
        shown = found.group(1)  # Rust's rendering: the bytes that are not UTF-8 as \xNN
        owners = _owners(shown, generation.roots)
        if not owners:
            return False
        roots = [root for root, _ in owners]
        name = owners[0][1] or shown
        why = f"a name that is not UTF-8 ({name}) cannot be watched; periodic scans instead"
        for root in roots:
            self._unwatchable[root] = (why, time.monotonic())
            log.warning("%s: %s", root, why)
        self._set_covered(self._covered - set(roots))
        return True

    async def _armed(self, generation: _Generation) -> None:
        """Started just before `awatch` is first iterated: this task runs at the watching
        task's first await, which inside `awatch` comes after its `RustNotify` set the
        (recursive) watches up. A failure to set them up ends `awatch` before that await."""
        if generation.stop.is_set() or generation.failed:
            return
        if self._current is not generation:
            generation.stop.set()  # a newer generation replaces it; the older one still runs
            return
        self.mode, self.error = "inotify", None
        self._set_covered(set(generation.roots))
        log.debug("watch generation %d: watches in place", generation.seq)
        # A stopped awatch drops the changes it holds and has not handed over yet: the older
        # ones hand over what they saw before this one's watches were set up (a batch is
        # handed over within `max_batch_ms`), then stop.
        await anyio.sleep((self.max_batch_ms + 2 * self.quiet_ms) / 1000 + 0.1)
        if generation.failed or self._current is not generation:
            return  # the one that replaces it stops the older ones once its watches are set up
        for older in self._generations:
            if older.seq < generation.seq:
                older.stop.set()

    async def _check_roots(self) -> None:
        """Restart watching when a root disappears, appears or is recreated."""
        while True:
            await anyio.sleep(ROOT_CHECK_S)
            try:
                ids = await anyio.to_thread.run_sync(_identities, list(self._roots))
            except Exception:  # noqa: BLE001 - never let the check end the watcher
                log.exception("checking the watched roots failed")
                continue
            stale = [r for r, (_, since) in self._unwatchable.items()
                     if time.monotonic() - since > UNWATCHABLE_RETRY_S]  # fmt: skip
            if stale:
                log.info("trying to watch %s again", ", ".join(stale))
                for root in stale:
                    del self._unwatchable[root]
                self._restart.set()
            elif ids != self._watching:
                log.info(
                    "watched roots changed (%d → %d present); restarting the watcher",
                    len(self._watching),
                    len(ids),
                )
                self._restart.set()

    async def _report_whole(self, roots: list[str]) -> None:
        await anyio.sleep(RESCAN_DELAY_S)
        if not self._stopped:
            self.on_changes({root: {""} for root in roots})

    def _dispatch(self, changes: set[tuple[Any, str]], roots: list[str]) -> None:
        by_repo: dict[str, set[str]] = {}
        for change, path in changes:
            if path in self._watching and change == _DELETED:
                # The root's own watch died with it, even if a directory of the same name
                # (often with the same inode number) is already back: watch afresh.
                self._deleted_roots.add(path)
                self._set_covered(self._covered - {path})
                self._restart.set()
            for root, rel in _owners(path, roots):
                by_repo.setdefault(root, set()).add(rel)
        if by_repo:
            self.on_changes(by_repo)
