"""MemoryManager against the real process RSS (no fakes): budgets set relative to it."""

from __future__ import annotations

import threading
import time

from codectxd.memory import MemoryManager


def test_group_size_follows_the_budget() -> None:
    probe = MemoryManager(10_000)
    rss_mb = probe.rss() / 2**20
    roomy = MemoryManager(int(rss_mb * 4) + 64)
    assert roomy.admit_group() == roomy.full_group
    assert roomy.snapshot()["state"] == "ok"
    near = MemoryManager(int(rss_mb / 0.92) + 1)  # RSS at ~92 % of the budget
    size = near.admit_group()
    assert near.min_group <= size < near.full_group
    assert near.gc_count >= 1


def test_over_budget_pauses_then_resumes() -> None:
    probe = MemoryManager(10_000)
    rss_mb = probe.rss() / 2**20
    ballast = bytearray(200 * 2**20)  # +200 MB resident
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    manager = MemoryManager(int(rss_mb + 100), max_pause_s=30)
    released = threading.Event()

    def release() -> None:
        time.sleep(1.0)
        nonlocal ballast
        ballast = bytearray(0)
        released.set()

    threading.Thread(target=release).start()
    started = time.monotonic()
    size = manager.admit_group()  # blocks while over budget
    waited = time.monotonic() - started
    assert released.is_set() and waited >= 0.9
    assert size >= manager.min_group
    snap = manager.snapshot()
    assert snap["pauses"] == 1 and snap["paused_s"] >= 0.9 and not snap["starved"]


def test_budget_below_baseline_does_not_deadlock() -> None:
    manager = MemoryManager(64, max_pause_s=0.5)  # far below any Python process with numpy
    started = time.monotonic()
    assert manager.admit_group() == manager.min_group
    assert time.monotonic() - started < 5
    assert manager.snapshot()["starved"] is True
    assert manager.admit_group() == manager.min_group  # no second long pause
