"""The embedding service: cache first, then the provider in batches, with retries and stats.

Batches are formed by count and by an estimated token budget, texts sorted by length so the
local model pads little. Remote providers run with bounded concurrency and retry retryable
failures (429 / 5xx / timeouts) with exponential backoff and jitter, honouring Retry-After.

Spend guard (remote providers): tokens sent are counted per UTC day and provider identity in
the cache database; with `max_tokens_per_day` set, a document batch that would take today's
total over the limit is refused with `SpendLimitReached` before anything is sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np

from codectx_client import protocol as p
from codectxd.embeddings.base import EmbeddingProvider
from codectxd.embeddings.cache import EmbeddingCache, text_key
from codectxd.embeddings.queries import QueryBatcher, RecentQueries
from codectxd.errors import ProviderError, SpendLimitReached

log = logging.getLogger(__name__)
_T = TypeVar("_T")


#: Local vectors are written to the cache this many at a time.
_LOCAL_CACHE_EVERY = 64


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
    #: Spend guard: the daily limit (0: off), tokens sent on `usage_day` (UTC), and whether
    #: the last document batch was refused for the limit.
    spend_limit: int = 0
    tokens_today: int = 0
    usage_day: str = ""
    spend_paused: bool = False
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def message(self) -> p.EmbeddingStatus:
        """These counters as `status` reports them."""
        looked_up = self.cache_hits + self.cache_misses
        current = self.usage_day == utc_day(self.clock())  # a new day starts from zero
        return p.EmbeddingStatus(
            requests=self.requests,
            failed_requests=self.failed_requests,
            retries=self.retries,
            texts_embedded=self.texts,
            tokens=self.tokens,
            cache_hits=self.cache_hits,
            cache_misses=self.cache_misses,
            cache_hit_rate=round(self.cache_hits / looked_up, 4) if looked_up else None,
            truncated=self.truncated,
            embed_seconds=round(self.seconds, 3),
            last_error=self.last_error,
            tokens_today=self.tokens_today if current else 0,
            spend_limit=self.spend_limit,
            spend_paused=self.spend_paused and current,
        )


def utc_day(timestamp: float) -> str:
    """The UTC calendar day of a Unix timestamp, as YYYY-MM-DD (the spend guard's day)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def _until_midnight(timestamp: float) -> str:
    now = datetime.fromtimestamp(timestamp, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((midnight - now).total_seconds() // 60))
    return f"{minutes // 60}h {minutes % 60:02d}m"


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
        batch_cap: Callable[[int], int] | None = None,
        max_tokens_per_day: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Set up batching, retries and the spend guard around `provider`.

        Args:
            on_latency: called with the seconds of every successful provider request.
            batch_cap: given the batch size wanted, the size memory allows (local providers:
                inference memory grows with the batch).
            max_tokens_per_day: spend guard for remote providers (0: off); see the module doc.
            clock: Unix time source for the spend guard's UTC day (tests move it).
        """
        self.provider = provider
        self.cache = cache
        self.batch_size = batch_size or provider.max_batch
        self.concurrency = max(1, concurrency) if provider.remote else 1
        self.max_retries = max_retries
        self.max_tokens_per_day = max_tokens_per_day if provider.remote else 0
        self.stats = EmbedStats(spend_limit=self.max_tokens_per_day, clock=clock)
        self._sleep = sleep
        self._clock = clock
        self.on_latency = on_latency
        self.batch_cap = batch_cap
        # Remote requests in flight at once; the pool lives as long as the embedder.
        self._pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed")
            if self.concurrency > 1
            else None
        )
        self._stats_lock = threading.Lock()
        self._queries = RecentQueries()
        self._spend_lock = threading.Lock()
        self._reserved = 0  # estimated tokens of document requests in flight
        self._batcher = (
            QueryBatcher(lambda texts: self._call(lambda: provider.embed_queries(texts)))
            if provider.batches_queries
            else None
        )
        if provider.remote:
            with self._spend_lock:
                self._usage_for(utc_day(clock()))

    @property
    def identity(self) -> str:
        return self.provider.identity

    def close(self) -> None:
        """Stop the request pool and release the provider's resources."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.provider.close()

    @property
    def dimension(self) -> int:
        return self.provider.dimension

    def embed_query(self, text: str) -> np.ndarray:
        """The query vector (a small LRU keeps repeated queries free)."""
        cached = self._queries.get(text)
        if cached is not None:
            return cached
        query = self.provider.truncate(text)[0]
        if self._batcher is not None:
            vector = self._batcher.embed(query)
        else:
            vector = self._call(lambda: self.provider.embed_query(query))
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.provider.remote:
            # Counted, never refused: a search must keep working when indexing used up the
            # day's budget, and queries are tiny next to documents.
            with self._spend_lock:
                self._record(self.provider.count_tokens(query))
        self._queries.put(text, vector)
        return vector

    def cached(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The vectors the cache holds for `texts`, without asking the provider: (vectors,
        found) where `found[i]` says whether row i is a real vector (zeros otherwise)."""
        out = np.zeros((len(texts), self.dimension or 1), dtype=np.float32)
        found = np.zeros(len(texts), dtype=bool)
        if not texts or self.cache is None or not self.dimension:
            return out, found
        keys = [text_key(t) for t in texts]
        hits = self.cache.get_many(self.identity, keys, self.dimension)
        for i, key in enumerate(keys):
            vector = hits.get(key)
            if vector is not None:
                out[i], found[i] = vector, True
        with self._stats_lock:
            self.stats.cache_hits += int(found.sum())
        return out, found

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
        if self.batch_cap is not None and not self.provider.remote:
            # Local inference memory grows with the batch: let the memory budget size it.
            max_batch = self.batch_cap(min(max_batch or self.batch_size, self.batch_size))
        batches = self._batches([texts[missing[k][0]] for k in unique], max_batch)
        starts = np.cumsum([0] + [len(b) for b in batches]).tolist()

        # What was paid for is cached batch by batch: when a later batch fails (retries used
        # up, spend limit), it is kept and never requested again. Local vectors cost only
        # time: they are written a few batches at a time (a write per small batch costs more).
        every = 1 if self.provider.remote else _LOCAL_CACHE_EVERY
        unsaved: list[tuple[bytes, np.ndarray]] = []
        unsaved_lock = threading.Lock()  # remote batches run on several threads

        def save(force: bool) -> None:
            with unsaved_lock:
                if self.cache is not None and unsaved and (force or len(unsaved) >= every):
                    self.cache.put_many(self.identity, unsaved[:])
                    unsaved.clear()

        def run(index: int) -> np.ndarray:
            if should_stop is not None and should_stop():
                raise EmbedCancelled
            vectors = self._embed_batch(batches[index])
            with unsaved_lock:
                unsaved.extend(zip(unique[starts[index] : starts[index + 1]], vectors, strict=True))
            save(force=False)
            return vectors

        results: list[np.ndarray] = []
        try:
            if self._pool is not None and len(batches) > 1:
                results = list(self._pool.map(run, range(len(batches))))
            else:
                results = [run(index) for index in range(len(batches))]
        finally:
            save(force=True)
        vectors = np.concatenate(results) if results else np.zeros((0, self.dimension))
        if out.shape[1] != vectors.shape[1]:  # dimension learned from the first response
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            for i, key in enumerate(keys):
                if key in cached:
                    out[i] = cached[key]
        for key, vector in zip(unique, vectors, strict=True):
            for i in missing[key]:
                out[i] = vector
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
        estimate = sum(self.provider.count_tokens(t) for t in batch)
        if not self.provider.remote:
            vectors, used = self._call(lambda: self.provider.embed_batch(batch))
        else:

            def attempt() -> tuple[np.ndarray, int | None]:
                self._reserve(estimate)  # before every request, retries included
                sent = False
                try:
                    result = self.provider.embed_batch(batch)
                    sent = True
                    return result
                finally:
                    with self._spend_lock:
                        self._reserved -= estimate
                        if sent:
                            self._record(result[1] if result[1] is not None else estimate)

            vectors, used = self._call(attempt)
        with self._stats_lock:
            self.stats.texts += len(batch)
            self.stats.tokens += used if used is not None else estimate
        return np.asarray(vectors, dtype=np.float32)

    # --- spend guard ------------------------------------------------------------------------

    def _usage_for(self, day: str) -> int:
        """Tokens sent today, reloaded from the database when the UTC day changed.
        Caller holds `_spend_lock`."""
        if self.stats.usage_day != day:
            used = self.cache.usage(day, self.identity) if self.cache is not None else 0
            with self._stats_lock:
                self.stats.usage_day, self.stats.tokens_today = day, used
                self.stats.spend_paused = False
        return self.stats.tokens_today

    def _reserve(self, estimate: int) -> None:
        """Count `estimate` as in flight, or refuse the request when it would pass the limit."""
        with self._spend_lock:
            now = self._clock()
            used = self._usage_for(utc_day(now))
            limit = self.max_tokens_per_day
            if limit and used + self._reserved + estimate > limit:
                message = _limit_message(used, limit, self.identity, estimate, now)
                with self._stats_lock:
                    self.stats.spend_paused = True
                    self.stats.last_error = message
                raise SpendLimitReached(message)
            self._reserved += estimate

    def _record(self, tokens: int) -> None:
        """Add tokens the provider received today. Caller holds `_spend_lock`."""
        day = utc_day(self._clock())
        self._usage_for(day)
        if self.cache is not None:
            total = self.cache.add_usage(day, self.identity, tokens)
        else:
            total = self.stats.tokens_today + tokens
        with self._stats_lock:
            self.stats.tokens_today = total
            self.stats.spend_paused = False

    def _call(self, fn: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = fn()
            except SpendLimitReached:
                raise  # nothing was sent: not a failed request, and waiting will not help
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
                         self.max_retries, delay)  # fmt: skip
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
    """Exponential backoff (0.5 s doubling, at most 60 s) with equal jitter (a random delay
    between half of it and all of it); never less than the server's Retry-After, which is
    itself honoured up to 120 s."""
    base = min(60.0, 0.5 * (2**attempt))
    delay = random.uniform(base / 2, base)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 120.0))
    return delay


def _limit_message(used: int, limit: int, identity: str, estimate: int, now: float) -> str:
    return (
        f"daily embedding token limit reached: {used:,} of {limit:,} tokens already "
        f"sent to {identity} today (UTC), and the next request needs "
        f"~{estimate:,} more. Indexing resumes when the limit resets at 00:00 UTC "
        f"(in {_until_midnight(now)}); to go on now, raise "
        f"EMBEDDING_MAX_TOKENS_PER_DAY (embedding.max_tokens_per_day; 0 turns the "
        f"guard off)"
    )
