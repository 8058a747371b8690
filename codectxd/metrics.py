"""What the daemon measures about itself for `status`: latency percentiles, throughput,
request counts and CPU."""

from __future__ import annotations

import threading
import time
from collections import deque

import psutil

from codectx_client import protocol as p


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

    def summary(self) -> p.Latency:
        with self._lock:
            values = sorted(self._samples)
            count = self._count
        if not values:
            return p.Latency(count=count, p50=None, p95=None, p99=None, max=None)

        def pct(q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))], 3)

        return p.Latency(
            count=count, p50=pct(0.50), p95=pct(0.95), p99=pct(0.99), max=round(values[-1], 3)
        )


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
    """Everything the daemon measures about itself (memory is the MemoryManager's)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.search_ms = Histogram()
        self.embed_batch_ms = Histogram()
        self.commit_ms = Histogram()  # one indexing group: read, split, embed, store
        self.sync_ms = Histogram()
        self.files = Throughput()
        self.chunks = Throughput()
        self.requests = 0
        self.errors = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime the CPU counter

    def count_request(self, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1

    def record_group(self, files: int, chunks: int, seconds: float) -> None:
        """An indexing group wrote `files` files (nothing is recorded for none)."""
        if files <= 0:
            return
        self.files.add(files)
        self.chunks.add(chunks)
        self.commit_ms.add(seconds * 1000)

    def message(self, queue_depth: int) -> p.MetricsStatus:
        with self._process.oneshot():
            cpu = self._process.cpu_percent(None)
            threads = self._process.num_threads()
        return p.MetricsStatus(
            uptime_s=round(time.time() - self.started, 1),
            cpu_percent=float(cpu),
            threads=threads,
            requests=self.requests,
            request_errors=self.errors,
            queue_depth=queue_depth,
            search_ms=self.search_ms.summary(),
            embed_batch_ms=self.embed_batch_ms.summary(),
            commit_ms=self.commit_ms.summary(),
            sync_ms=self.sync_ms.summary(),
            files_per_s=float(self.files.rate()),
            chunks_per_s=float(self.chunks.rate()),
            files_total=self.files.total,
            chunks_total=self.chunks.total,
        )
