"""The watcher over real inotify: roots that disappear and come back are watched again."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import anyio
import pytest

from codectxd import watcher as watcher_mod
from codectxd.watcher import Watcher


async def _wait_for(
    batches: list[dict[str, set[str]]], root: str, rel: str, timeout_s: float = 10.0
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(rel in b.get(root, ()) for b in batches):
            return True
        await anyio.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "recreate", ["missing_at_start", "deleted_and_recreated", "recloned_at_once"]
)
async def test_root_that_comes_back_is_watched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recreate: str
) -> None:
    monkeypatch.setattr(watcher_mod, "ROOT_CHECK_S", 0.2)
    stay, victim = tmp_path / "stay", tmp_path / "victim"
    stay.mkdir()
    if recreate != "missing_at_start":
        victim.mkdir()
        (victim / "old.py").write_text("x = 0\n")
    batches: list[dict[str, set[str]]] = []
    watcher = Watcher(batches.append, quiet_ms=10, max_batch_ms=100)
    watcher.set_roots([str(stay), str(victim)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher.run)
        try:
            await anyio.sleep(0.5)
            assert watcher.mode == "inotify"
            if recreate != "missing_at_start":
                shutil.rmtree(victim)
            if recreate == "deleted_and_recreated":
                await anyio.sleep(0.3)
            # `rm -rf && git clone`: often the same inode number, but a new directory that
            # the old watch does not see.
            victim.mkdir()
            batches.clear()
            # The root that came back is reported whole (its contents need a rescan) ...
            assert await _wait_for(batches, str(victim), "")
            await anyio.sleep(1.0)  # that report may be the deletion's: let the restart end
            # ... and watched: a file created in it is reported.
            (victim / "new.py").write_text("x = 1\n")
            assert await _wait_for(batches, str(victim), "new.py")
            # The other root is still watched.
            (stay / "other.py").write_text("y = 2\n")
            assert await _wait_for(batches, str(stay), "other.py")
        finally:
            watcher.stop()
            tg.cancel_scope.cancel()


async def test_covering_means_a_change_right_after_is_reported(tmp_path: Path) -> None:
    """`covering` returns once the watches are in place: a file created at once after it is
    reported, for the first root and for one added later (which restarts the watcher)."""
    first, added, missing = tmp_path / "first", tmp_path / "added", tmp_path / "missing"
    first.mkdir()
    added.mkdir()
    batches: list[dict[str, set[str]]] = []
    watcher = Watcher(batches.append, quiet_ms=10, max_batch_ms=100)
    watcher.set_roots([str(first)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher.run)
        try:
            assert await watcher.covering(str(first))
            (first / "a.py").write_text("a = 1\n")
            assert await _wait_for(batches, str(first), "a.py")
            watcher.set_roots([str(first), str(added), str(missing)])
            assert await watcher.covering(str(added))
            (added / "b.py").write_text("b = 1\n")
            (first / "c.py").write_text("c = 1\n")
            assert await _wait_for(batches, str(added), "b.py")
            assert await _wait_for(batches, str(first), "c.py")
            # A root that does not exist has nothing to wait for.
            assert await watcher.covering(str(missing))
        finally:
            watcher.stop()
            tg.cancel_scope.cancel()


async def test_covering_without_watching_returns_at_once(tmp_path: Path) -> None:
    watcher = Watcher(lambda _: None, enabled=False)
    watcher.set_roots([str(tmp_path)])
    assert await watcher.covering(str(tmp_path), timeout_s=5)


async def test_a_restart_loses_no_change_in_the_other_roots(tmp_path: Path) -> None:
    """Adding roots restarts watchfiles; files written in a watched root all through the
    restarts are all reported (the old watch runs until the new one's watches are set up)."""
    kept = tmp_path / "kept"
    kept.mkdir()
    batches: list[dict[str, set[str]]] = []
    watcher = Watcher(batches.append, quiet_ms=10, max_batch_ms=100)
    watcher.set_roots([str(kept)])
    written: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher.run)
        try:
            assert await watcher.covering(str(kept))
            roots = [str(kept)]
            for i in range(4):
                added = tmp_path / f"added{i}"
                added.mkdir()
                roots.append(str(added))
                watcher.set_roots(roots)
                done = anyio.Event()

                async def write(i: int = i, done: anyio.Event = done) -> None:
                    n = 0
                    while not done.is_set():
                        name = f"f{i}_{n}.py"
                        (kept / name).write_text("x = 1\n")
                        written.append(name)
                        n += 1
                        await anyio.sleep(0.002)

                tg.start_soon(write)
                assert await watcher.covering(str(added))
                await anyio.sleep(0.05)
                done.set()
            for name in written:
                assert await _wait_for(batches, str(kept), name), name
        finally:
            watcher.stop()
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("where", ["directory_at_start", "file_created_while_watched"])
async def test_a_name_that_is_not_utf8_leaves_only_its_root_to_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """watchfiles fails for good on the first event of a path that is not UTF-8 (even the walk
    that sets a directory's watch up): that root goes to periodic scans, and is reported
    whole; the other roots stay watched."""
    monkeypatch.setattr(watcher_mod, "RESCAN_DELAY_S", 0.05)
    good, odd = tmp_path / "good", tmp_path / "odd"
    good.mkdir()
    odd.mkdir()
    if where == "directory_at_start":
        (odd / "sub").mkdir()
        (odd / "sub" / os.fsdecode(b"dir\xff")).mkdir()
    batches: list[dict[str, set[str]]] = []
    watcher = Watcher(batches.append, quiet_ms=10, max_batch_ms=100)
    watcher.set_roots([str(good), str(odd)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher.run)
        try:
            assert await watcher.covering(str(good))
            if where == "file_created_while_watched":
                assert await watcher.covering(str(odd))
                (odd / os.fsdecode(b"late\xfe.py")).write_bytes(b"x = 1\n")
            assert await _wait_for(batches, str(odd), "")  # rescan the root, whole
            assert watcher.mode_of(str(odd)) == "polling"
            why = watcher.error_of(str(odd))
            assert why is not None and "not UTF-8" in why, why
            assert watcher.mode_of(str(good)) == "inotify" and watcher.error_of(str(good)) is None
            assert await watcher.covering(str(odd))  # nothing will watch it: do not wait
            assert await watcher.covering(str(good))
            (good / "after.py").write_text("x = 2\n")
            assert await _wait_for(batches, str(good), "after.py")
        finally:
            watcher.stop()
            tg.cancel_scope.cancel()
