"""MemoryManager against the real process RSS (no fakes): budgets set relative to it."""

from __future__ import annotations

import gc
import sys
import threading
import time

import pytest

from codectxd.indexer import GROUP_CHUNKS
from codectxd.memory import INFERENCE_BASE_MB, INFERENCE_PER_TEXT_MB, MemoryManager


def manager(budget_mb: int, **options: float) -> MemoryManager:
    return MemoryManager(budget_mb, full_group=GROUP_CHUNKS, **options)  # type: ignore[arg-type]


def rss_mb() -> float:
    return manager(10_000).rss() / 2**20


def settled_rss_mb() -> float:
    """RSS once what a collection would give back is gone (the managers collect and trim the
    heap themselves: a budget set from an unsettled RSS would move under the test)."""
    manager(10_000).rest()
    return rss_mb()


async def test_group_size_follows_the_budget() -> None:
    roomy = manager(int(rss_mb() * 4) + 64)
    assert await roomy.admit_group() == roomy.full_group
    assert roomy.message().state == "ok"
    near = manager(int(settled_rss_mb() / 0.92) + 1)  # RSS at ~92 % of the budget
    size = await near.admit_group()
    assert near.min_group <= size < near.full_group
    assert near.gc_count >= 1


async def test_over_budget_pauses_then_resumes() -> None:
    baseline = settled_rss_mb()
    ballast = bytearray(200 * 2**20)  # +200 MB resident
    ballast[::4096] = b"x" * len(ballast[::4096])
    memory = manager(int(baseline + 100), max_pause_s=30)
    released = threading.Event()

    def release() -> None:
        time.sleep(1.0)
        nonlocal ballast
        ballast = bytearray(0)
        released.set()

    threading.Thread(target=release).start()
    started = time.monotonic()
    size = await memory.admit_group()  # waits while over budget
    waited = time.monotonic() - started
    assert released.is_set() and waited >= 0.9
    assert size >= memory.min_group
    status = memory.message()
    assert status.pauses == 1 and status.paused_s >= 0.9 and not status.starved


async def test_budget_below_baseline_does_not_deadlock() -> None:
    memory = manager(64, max_pause_s=0.5)  # far below any Python process with numpy
    started = time.monotonic()
    assert await memory.admit_group() == memory.min_group
    assert time.monotonic() - started < 5
    assert memory.message().starved is True
    assert await memory.admit_group() == memory.min_group  # no second long pause


def test_embedding_batches_fit_the_room_left_under_the_budget() -> None:
    baseline = settled_rss_mb()
    roomy = manager(int(baseline + INFERENCE_BASE_MB + 64 * INFERENCE_PER_TEXT_MB + 200))
    assert roomy.admit_batch(32) == 32
    # Room for about 4 texts on top of the fixed cost of one inference.
    tight = manager(int(baseline + INFERENCE_BASE_MB + 4.5 * INFERENCE_PER_TEXT_MB))
    assert 1 <= tight.admit_batch(32) <= 6
    starved = manager(64)
    assert starved.admit_batch(32) == 1  # never blocks, never zero


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_resting_gives_freed_heap_back_to_the_system() -> None:
    # 2 KB blocks come from malloc's heap, not Python's arenas; every 64th kept alive pins the
    # heap's top, so freeing the rest alone returns nothing to the system.
    blocks = [bytes(2048) for _ in range(80_000)]
    kept = blocks[::64]
    before_free = rss_mb()
    del blocks
    gc.collect()
    freed_only = rss_mb()
    manager(10_000).rest()
    rested = rss_mb()
    assert before_free - freed_only < 40  # glibc kept ~150 MB of free pages
    assert freed_only - rested > 100  # resting handed them back
    assert len(kept) == 1250


async def test_near_the_budget_what_is_idle_is_released_before_pausing() -> None:
    """`relieve` (the daemon releases other repositories' collections) frees memory near the
    budget: indexing goes on without a pause, at most one call per interval."""
    baseline = settled_rss_mb()
    ballast = bytearray(200 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    calls = 0

    def relieve() -> bool:
        nonlocal ballast, calls
        calls += 1
        ballast = bytearray(0)
        return True

    memory = MemoryManager(
        int(baseline + 100), full_group=GROUP_CHUNKS, max_pause_s=0.5, relieve=relieve
    )
    assert await memory.admit_group() >= memory.min_group
    assert (calls, memory.pauses) == (1, 0)
    ballast = bytearray(200 * 2**20)  # over the budget again, within the interval:
    ballast[::4096] = b"x" * len(ballast[::4096])
    await memory.admit_group()
    assert (calls, memory.pauses) == (1, 1)  # not asked again; the pause is the fallback
    del ballast
