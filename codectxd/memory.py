"""MemoryManager: keep the daemon inside its RSS budget.

Near the budget (85 %): collect garbage, let go of what other repositories are not using
(`relieve`: their Milvus Lite collections, loaded again by their next search) and make indexing
groups smaller. Over it: pause ingestion (a supervisor awaits `admit_group` before each group)
until RSS is back under, collecting garbage meanwhile. Local embedding batches are sized to the
room left under the budget, since inference memory comes and goes within a batch. Searches
never wait on this.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable

import anyio
import psutil

from codectx_client import protocol as p

log = logging.getLogger(__name__)

NEAR_FRACTION = 0.85
RESUME_FRACTION = 0.95
#: A pause ends after this long even if memory stayed high: when the budget is below what the
#: daemon needs at rest, waiting longer frees nothing; indexing then goes on in minimal batches.
MAX_PAUSE_S = 60.0
_MIN_GC_INTERVAL_S = 1.0
#: Transient memory of one local inference (bge-small int8, texts of up to 256 tokens, CPU
#: arena off), measured with bench/memory.py: ~120 MB for 2 texts, ~380 MB for 32.
INFERENCE_BASE_MB = 100.0
INFERENCE_PER_TEXT_MB = 9.0
_CHILDREN_REFRESH_S = 5.0
#: Under pressure `relieve` runs at most this often (it asks the engine; nothing changes faster).
_RELIEVE_INTERVAL_S = 5.0


class MemoryManager:
    """`admit_group()` is awaited on the event loop before each indexing group;
    `admit_batch()` is called from embedding threads (thread-safe, never blocks)."""

    def __init__(
        self,
        budget_mb: int,
        *,
        full_group: int,
        min_group: int = 8,
        max_pause_s: float = MAX_PAUSE_S,
        relieve: Callable[[], bool] | None = None,
    ) -> None:
        """`relieve` (blocking, run in a worker thread) releases what is idle when RSS nears
        the budget; returns whether it released anything."""
        self.budget_bytes = budget_mb * 2**20
        self.full_group = full_group
        self.min_group = min_group
        self.gc_count = 0
        self.paused_s = 0.0
        self.pauses = 0
        self.peak_rss = 0
        self.max_pause_s = max_pause_s
        self.starved = False  # the budget is below the daemon's resting footprint
        self._process = psutil.Process()
        self._children: list[psutil.Process] = []
        self._children_at = 0.0
        self._lock = threading.Lock()
        self._last_gc = 0.0
        self._paused_since: float | None = None
        self._relieve = relieve
        self._relieved_at = -_RELIEVE_INTERVAL_S

    def rss(self) -> int:
        """Resident memory of the daemon and its children (the Milvus Lite engine)."""
        now = time.monotonic()
        if now - self._children_at > _CHILDREN_REFRESH_S:
            self._children_at = now
            try:
                self._children = self._process.children(recursive=True)
            except psutil.Error:
                self._children = []
        value = int(self._process.memory_info().rss)
        for child in self._children:
            try:
                value += int(child.memory_info().rss)
            except psutil.Error:
                continue
        if value > self.peak_rss:
            self.peak_rss = value
        return value

    def collect(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_gc < _MIN_GC_INTERVAL_S:
                return
            self._last_gc = now
            self.gc_count += 1
        gc.collect()
        # Without this glibc keeps the freed pages: RSS never comes down, and a budget
        # below the indexing size pauses for nothing.
        _trim_heap()

    def rest(self) -> None:
        """Give back what the work just finished left free: collect garbage, then hand the
        allocator's free pages to the system (glibc keeps them otherwise: a daemon that has
        indexed stays at its indexing size for good)."""
        self.collect(force=True)

    async def admit_group(self) -> int:
        """How many chunks the next indexing group may hold; waits while over budget."""
        rss = self._settle()
        if rss > self.budget_bytes * NEAR_FRACTION and await self._relieved():
            rss = self._settle()
        if rss > self.budget_bytes and not self.starved:
            await self._pause()
            rss = self._settle()
        if rss <= self.budget_bytes * NEAR_FRACTION:
            return self.full_group
        # Scale down linearly between 85 % and 100 % of the budget.
        room = max(0.0, (self.budget_bytes - rss) / (self.budget_bytes * (1 - NEAR_FRACTION)))
        return max(self.min_group, int(self.full_group * room))

    async def _relieved(self) -> bool:
        now = time.monotonic()
        if self._relieve is None or now - self._relieved_at < _RELIEVE_INTERVAL_S:
            return False
        self._relieved_at = now
        if not await anyio.to_thread.run_sync(self._relieve):
            return False
        log.info("near the memory budget: released what other repositories were not using")
        return True

    def admit_batch(self, full: int) -> int:
        """How many texts the next local embedding batch may hold (at least one).

        Inference memory is transient (allocated and freed within a batch), so the RSS seen
        between groups never shows it: the batch must fit in the room left under the budget.
        """
        room_mb = (self.budget_bytes - self._settle()) / 2**20
        fits = int((room_mb - INFERENCE_BASE_MB) // INFERENCE_PER_TEXT_MB)
        return max(1, min(full, fits))

    def _settle(self) -> int:
        """RSS, after collecting garbage when near or over the budget."""
        rss = self.rss()
        if rss > self.budget_bytes:
            self.collect(force=True)
            rss = self.rss()
        elif rss > self.budget_bytes * NEAR_FRACTION:
            self.collect()
            rss = self.rss()
        return rss

    async def _pause(self) -> None:
        started = time.monotonic()
        self._paused_since = started
        self.pauses += 1
        log.warning(
            "memory over budget (%.0f MB > %.0f MB): pausing indexing",
            self.rss() / 2**20,
            self.budget_bytes / 2**20,
        )
        try:
            while True:
                await anyio.sleep(0.25)
                self.collect()
                if self.rss() <= self.budget_bytes * RESUME_FRACTION:
                    self.starved = False
                    break
                if time.monotonic() - started > self.max_pause_s:
                    self.starved = True
                    log.warning(
                        "memory still over budget after %.0fs of pause: the budget (%.0f MB) "
                        "is below what the daemon needs; indexing continues in small batches",
                        self.max_pause_s,
                        self.budget_bytes / 2**20,
                    )
                    break
        finally:
            self._paused_since = None
            self.paused_s += time.monotonic() - started
            log.info("memory back under budget: indexing resumes")

    def message(self) -> p.MemoryStatus:
        """The memory state as `status` reports it."""
        rss = self.rss()
        paused_now = (time.monotonic() - self._paused_since) if self._paused_since else 0.0
        state: str
        if self._paused_since is not None:
            state = "paused"
        elif rss > self.budget_bytes:
            state = "over"
        else:
            state = "near" if rss > self.budget_bytes * NEAR_FRACTION else "ok"
        return p.MemoryStatus(
            budget_mb=round(self.budget_bytes / 2**20),
            rss_mb=round(rss / 2**20, 1),
            peak_rss_mb=round(self.peak_rss / 2**20, 1),
            state=state,  # type: ignore[arg-type]
            gc_collections=self.gc_count,
            pauses=self.pauses,
            paused_s=round(self.paused_s + paused_now, 2),
            starved=self.starved,
        )


def _load_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, where there is one (Linux with glibc; not macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols: libc is loaded already, no library search
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _load_trim()


def _trim_heap() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
