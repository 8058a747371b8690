"""PerformanceMonitor: latency percentiles, throughput and system figures for `status`."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psutil


class Histogram:
    """The most recent samples of one latency, for p50/p95/p99 (bounded memory)."""

    def __init__(self, size: int = 4096) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(value)
            self._count += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            values = sorted(self._samples)
            count = self._count
        if not values:
            return {"count": count, "p50": None, "p95": None, "p99": None, "max": None}

        def pct(p: float) -> float:
            return round(values[min(len(values) - 1, int(p * len(values)))], 3)

        return {
            "count": count,
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(values[-1], 3),
        }


class Throughput:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self.total = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self._events.append((now, n))
            self.total += n
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window_s:
            self._events.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if not self._events:
                return 0.0
            span = max(now - self._events[0][0], 1.0)
            return round(sum(n for _, n in self._events) / span, 2)


class Metrics:
    """Everything the daemon measures about itself."""

    def __init__(self) -> None:
        self.started = time.time()
        self.search_ms = Histogram()
        self.embed_batch_ms = Histogram()
        self.commit_ms = Histogram()  # one indexing group: embed + store write
        self.sync_ms = Histogram()
        self.files = Throughput()
        self.chunks = Throughput()
        self.requests = 0
        self.errors = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime the CPU counter

    def snapshot(self, queue_depth: int) -> dict[str, Any]:
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            cpu = self._process.cpu_percent(None)
            threads = self._process.num_threads()
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "rss_mb": round(rss / 2**20, 1),
            "cpu_percent": cpu,
            "threads": threads,
            "requests": self.requests,
            "request_errors": self.errors,
            "queue_depth": queue_depth,
            "search_ms": self.search_ms.summary(),
            "embed_batch_ms": self.embed_batch_ms.summary(),
            "commit_ms": self.commit_ms.summary(),
            "sync_ms": self.sync_ms.summary(),
            "files_per_s": self.files.rate(),
            "chunks_per_s": self.chunks.rate(),
            "files_total": self.files.total,
            "chunks_total": self.chunks.total,
        }
