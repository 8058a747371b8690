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
    ballast[::4096] = b"x" * len(ballast[::4096])
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


def test_embedding_batches_fit_the_room_left_under_the_budget() -> None:
    from codectxd.memory import INFERENCE_BASE_MB, INFERENCE_PER_TEXT_MB

    rss_mb = MemoryManager(10_000).rss() / 2**20
    roomy = MemoryManager(int(rss_mb + INFERENCE_BASE_MB + 64 * INFERENCE_PER_TEXT_MB + 200))
    assert roomy.admit_batch(32) == 32
    # Room for about 4 texts on top of the fixed cost of one inference.
    tight = MemoryManager(int(rss_mb + INFERENCE_BASE_MB + 4.5 * INFERENCE_PER_TEXT_MB))
    assert 1 <= tight.admit_batch(32) <= 6
    starved = MemoryManager(64, max_pause_s=0.3)
    assert starved.admit_batch(32) == 1  # never blocks for good, never zero
