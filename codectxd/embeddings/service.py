"""The embedding service: cache first, then the provider in batches, with retries and stats.

Batches are formed by count and by an estimated token budget, texts sorted by length so the
local model pads little. Remote providers run with bounded concurrency and retry retryable
failures (429 / 5xx / timeouts) with exponential backoff and jitter, honouring Retry-After.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from codectxd.embeddings.base import EmbeddingProvider
from codectxd.embeddings.cache import EmbeddingCache, text_key
from codectxd.errors import ProviderError

log = logging.getLogger(__name__)


class EmbedCancelled(Exception):
    """`should_stop` said stop between two batches; nothing of the call was cached."""


@dataclass(slots=True)
class EmbedStats:
    """Counters shown in status (per provider)."""

    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    texts: int = 0
    tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    truncated: int = 0
    seconds: float = 0.0
    last_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        looked_up = self.cache_hits + self.cache_misses
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "retries": self.retries,
            "texts_embedded": self.texts,
            "tokens": self.tokens,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": round(self.cache_hits / looked_up, 4) if looked_up else None,
            "truncated": self.truncated,
            "embed_seconds": round(self.seconds, 3),
            "last_error": self.last_error,
        }


class Embedder:
    """Embeds texts with `provider`, never sending a text whose vector is cached."""

    def __init__(
        self,
        provider: EmbeddingProvider,
        cache: EmbeddingCache | None,
        *,
        batch_size: int = 0,
        concurrency: int = 1,
        max_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.batch_size = batch_size or provider.max_batch
        self.concurrency = max(1, concurrency) if provider.remote else 1
        self.max_retries = max_retries
        self.stats = EmbedStats()
        self._sleep = sleep
        self.on_latency = on_latency
        self._stats_lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self.provider.identity

    @property
    def dimension(self) -> int:
        return self.provider.dimension

    def embed_query(self, text: str) -> np.ndarray:
        """The query vector (a small LRU keeps repeated queries free)."""
        with self._queries_lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
        vector = self._call(lambda: self.provider.embed_query(self.provider.truncate(text)[0]))
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._queries_lock:
            self._queries[text] = vector
            while len(self._queries) > 256:
                self._queries.popitem(last=False)
        return vector

    def embed_texts(
        self,
        texts: Sequence[str],
        max_batch: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Vectors for `texts` (shape (n, dimension)), from the cache where possible.

        Raises:
            ProviderError: a batch still failed after the retries; nothing was cached for it.
            EmbedCancelled: `should_stop()` became true between batches.
        """
        out = np.zeros((len(texts), self.dimension or 1), dtype=np.float32)
        if not texts:
            return out
        keys = [text_key(t) for t in texts]
        cached = self.cache.get_many(self.identity, keys, self.dimension) if self.cache else {}
        missing: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            vector = cached.get(key)
            if vector is not None:
                out[i] = vector
            else:
                missing.setdefault(key, []).append(i)
        with self._stats_lock:
            self.stats.cache_hits += len(texts) - sum(len(v) for v in missing.values())
            self.stats.cache_misses += sum(len(v) for v in missing.values())
        if not missing:
            return out
        unique = sorted(missing, key=lambda k: len(texts[missing[k][0]]))
        batches = self._batches([texts[missing[k][0]] for k in unique], max_batch)
        def run(batch: list[str]) -> np.ndarray:
            if should_stop is not None and should_stop():
                raise EmbedCancelled
            return self._embed_batch(batch)

        results: list[np.ndarray] = []
        if self.concurrency > 1 and len(batches) > 1:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed") as pool:
                results = list(pool.map(run, batches))
        else:
            results = [run(batch) for batch in batches]
        vectors = np.concatenate(results) if results else np.zeros((0, self.dimension))
        if out.shape[1] != vectors.shape[1]:  # dimension learned from the first response
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            for i, key in enumerate(keys):
                if key in cached:
                    out[i] = cached[key]
        for key, vector in zip(unique, vectors, strict=True):
            for i in missing[key]:
                out[i] = vector
        if self.cache is not None:
            self.cache.put_many(self.identity, list(zip(unique, vectors, strict=True)))
        return out

    def _batches(self, texts: list[str], max_batch: int | None) -> list[list[str]]:
        limit = min(self.batch_size, max_batch or self.batch_size)
        budget = self.provider.max_batch_tokens
        batches: list[list[str]] = []
        current: list[str] = []
        tokens = 0
        for text in texts:
            text, truncated = self.provider.truncate(text)
            if truncated:
                with self._stats_lock:
                    self.stats.truncated += 1
            cost = self.provider.count_tokens(text)
            if current and (len(current) >= limit or tokens + cost > budget):
                batches.append(current)
                current, tokens = [], 0
            current.append(text)
            tokens += cost
        if current:
            batches.append(current)
        return batches

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        vectors = self._call(lambda: self.provider.embed_documents(batch))
        with self._stats_lock:
            self.stats.texts += len(batch)
            self.stats.tokens += sum(self.provider.count_tokens(t) for t in batch)
        return np.asarray(vectors, dtype=np.float32)

    def _call(self, fn: Callable[[], np.ndarray]) -> np.ndarray:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = fn()
            except ProviderError as exc:
                elapsed = time.perf_counter() - started
                with self._stats_lock:
                    self.stats.failed_requests += 1
                    self.stats.requests += 1
                    self.stats.seconds += elapsed
                    self.stats.last_error = str(exc)
                if not exc.retryable or attempt >= self.max_retries:
                    raise
                delay = _backoff(attempt, getattr(exc, "retry_after", None))
                attempt += 1
                with self._stats_lock:
                    self.stats.retries += 1
                log.info("%s: %s; retry %d/%d in %.1fs", self.provider.name, exc, attempt,
                         self.max_retries, delay)
                self._sleep(delay)
                continue
            elapsed = time.perf_counter() - started
            with self._stats_lock:
                self.stats.requests += 1
                self.stats.seconds += elapsed
            if self.on_latency is not None:
                self.on_latency(elapsed)
            return result


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, at least the server's Retry-After, capped at 60 s."""
    base = min(60.0, 0.5 * (2**attempt))
    delay = random.uniform(base / 2, base)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 120.0))
    return delay
