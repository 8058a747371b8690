"""Hybrid search over one or more repository collections.

Dense (embedding) and lexical (BM25 over code-aware tokens) searches run separately in Milvus;
their result lists are fused here with weighted reciprocal rank fusion, then hits of several
repositories are merged by that fused score and overlapping hits of one file are joined.
`search` runs the steps one after another (developer CLI, benchmarks); `search_async` runs the
BM25 searches while the query is embedded, in worker threads of the caller's event loop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from codectx_client.protocol import SearchHit
from codectxd.embeddings.service import Embedder
from codectxd.errors import ProviderError
from codectxd.filters import Filters, PathFilter, build_expr
from codectxd.lexical import lexical_query
from codectxd.store import Hit, Store

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "lexical")

#: Reciprocal rank fusion constant. Small values let a chunk ranked first by one retriever beat
#: chunks ranked moderately by both; docs/decisions.md has the measurements behind the choice.
RRF_K = 5
#: Weight of the lexical (BM25) list against the dense one in the fusion: BM25 is strongest on
#: exact identifiers, the embedding on questions in prose (docs/decisions.md).
LEXICAL_WEIGHT_CODE = 1.0
LEXICAL_WEIGHT_PROSE = 0.3
_CODE_LIKE = re.compile(r"[a-z][A-Z]|\w_\w|\w\.\w|[()\[\]{}]|::|->|=")


@dataclass(slots=True, frozen=True)
class Target:
    """A collection to search and the repository it belongs to.

    `lexical_only`: the collection's vectors come from another embedding model (the previous
    index, still serving while the new model's index is built), so only BM25 can query it.
    """

    repo: str
    collection: str
    lexical_only: bool = False


def lexical_weight_for(query: str) -> float:
    """Identifier-looking queries (`parseConfig`, `os.path`, `a_b`) trust BM25 fully."""
    return LEXICAL_WEIGHT_CODE if _CODE_LIKE.search(query) else LEXICAL_WEIGHT_PROSE


@dataclass(slots=True, frozen=True)
class _Query:
    """One search, prepared once for every target."""

    text: str
    lexical: str  # the BM25 query text
    mode: str
    limit: int
    fetch: int  # hits asked of each retriever: fusion, merging and glob checks need depth
    expr: str  # the filter Milvus evaluates
    path_filter: PathFilter  # the exact path check
    weights: tuple[float, float]  # dense, lexical
    rrf_k: int

    def wants_dense(self, target: Target) -> bool:
        return self.mode != "lexical" and not target.lexical_only

    def wants_lexical(self, target: Target) -> bool:
        return self.mode != "dense" or target.lexical_only


def _prepare(
    query: str,
    limit: int,
    filters: Filters | None,
    mode: str,
    rrf_k: int,
    lexical_weight: float | None,
) -> _Query:
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r} (accepted: {', '.join(MODES)})")
    filters = filters or Filters()
    path_filter = PathFilter(filters.paths)
    return _Query(
        text=query,
        lexical=lexical_query(query),
        mode=mode,
        limit=limit,
        fetch=max(limit * 3, 30) if not path_filter.spec else max(limit * 10, 60),
        expr=build_expr(filters, path_filter),
        path_filter=path_filter,
        weights=(1.0, lexical_weight_for(query) if lexical_weight is None else lexical_weight),
        rrf_k=rrf_k,
    )


def search(
    store: Store,
    embedder: Embedder | None,
    targets: Sequence[Target],
    query: str,
    *,
    limit: int = 10,
    filters: Filters | None = None,
    mode: str = "hybrid",
    rrf_k: int = RRF_K,
    lexical_weight: float | None = None,
) -> list[SearchHit]:
    """Search `targets` for `query`; hits best first, at most `limit`.

    Args:
        mode: "hybrid" (default), "dense" (embeddings only) or "lexical" (BM25 only).
        lexical_weight: BM25's weight in the fusion (default: by the look of the query).
    """
    q = _prepare(query, limit, filters, mode, rrf_k, lexical_weight)
    if not query.strip() or not targets:
        return []
    vector = _query_vector(embedder, q, targets)
    ranked: list[SearchHit] = []
    for target in targets:
        dense = _dense(store, q, target, vector) if vector is not None else None
        lexical = _lexical(store, q, target) if q.wants_lexical(target) else None
        ranked += _rank(q, target, dense, lexical)
    return _finish(q, ranked)


async def search_async(
    store: Store,
    embedder: Embedder | None,
    targets: Sequence[Target],
    query: str,
    *,
    limit: int = 10,
    filters: Filters | None = None,
    mode: str = "hybrid",
    limiter: anyio.CapacityLimiter | None = None,
    warnings: list[str] | None = None,
) -> list[SearchHit]:
    """`search`, with the BM25 searches running while the query is embedded and the
    repositories searched concurrently (worker threads, at most `limiter` at once).

    When the query cannot be embedded (the provider is down), a hybrid search answers with
    its keyword side and says so in `warnings`; a dense-only search raises the ProviderError.
    """
    q = _prepare(query, limit, filters, mode, RRF_K, None)
    if not query.strip() or not targets:
        return []
    dense: dict[int, list[Hit]] = {}
    lexical: dict[int, list[Hit]] = {}
    failures: list[Exception] = []

    async def run(results: dict[int, list[Hit]], i: int, fn: Any, *args: Any) -> None:
        try:
            results[i] = await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
        except Exception as exc:  # noqa: BLE001 - raised below, outside the task group
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for i, target in enumerate(targets):
            if q.wants_lexical(target):
                tg.start_soon(run, lexical, i, _lexical, store, q, target)
        vector: np.ndarray | None = None
        try:
            vector = await anyio.to_thread.run_sync(
                _query_vector, embedder, q, targets, limiter=limiter
            )
        except ProviderError as exc:
            if mode == "dense":
                failures.append(exc)
            elif warnings is not None:
                warnings.append(f"the query could not be embedded ({exc}): keyword results only")
        if vector is not None:
            for i, target in enumerate(targets):
                if q.wants_dense(target):
                    tg.start_soon(run, dense, i, _dense, store, q, target, vector)
    if failures:
        raise failures[0]
    ranked: list[SearchHit] = []
    for i, target in enumerate(targets):
        ranked += _rank(q, target, dense.get(i), lexical.get(i))
    return _finish(q, ranked)


def _query_vector(
    embedder: Embedder | None, q: _Query, targets: Sequence[Target]
) -> np.ndarray | None:
    if not any(q.wants_dense(t) for t in targets):
        return None
    if embedder is None:
        raise ValueError("dense search needs an embedder")
    return embedder.embed_query(q.text)


def _dense(store: Store, q: _Query, target: Target, vector: np.ndarray) -> list[Hit]:
    if not q.wants_dense(target):
        return []
    return store.search(target.collection, dense=vector, limit=q.fetch, expr=q.expr)


def _lexical(store: Store, q: _Query, target: Target) -> list[Hit]:
    if not q.lexical:  # nothing BM25 can match (punctuation only)
        return []
    return store.search(target.collection, lexical=q.lexical, limit=q.fetch, expr=q.expr)


def _rank(
    q: _Query, target: Target, dense: list[Hit] | None, lexical: list[Hit] | None
) -> list[SearchHit]:
    """One repository's hits, fused (or rank-scored) and path-checked."""
    lists = [hits for hits in (dense, lexical) if hits is not None]
    if len(lists) == 2:
        scored = fuse(lists, q.rrf_k, q.weights)
    else:
        scored = _rank_scored(lists[0] if lists else [], q.rrf_k)
    return [
        SearchHit(
            repo=target.repo,
            path=hit.path,
            start_line=hit.start_line,
            end_line=hit.end_line,
            symbol=hit.symbol,
            kind=hit.kind,
            language=hit.language,
            score=score,
            content=hit.content,
            file_kind=hit.file_kind,
        )
        for hit, score in scored
        if not q.path_filter or q.path_filter(hit.path)
    ]


def _finish(q: _Query, ranked: list[SearchHit]) -> list[SearchHit]:
    hits = merge_overlapping(ranked)[: q.limit]
    for hit in hits:
        hit.score = round(hit.score, 6)
    return hits


def fuse(
    ranked: Sequence[Sequence[Hit]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[Hit, float]]:
    """Reciprocal rank fusion: score = sum over lists of weight / (k + rank)."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for position, hit_list in enumerate(ranked):
        weight = weights[position] if weights else 1.0
        for rank, hit in enumerate(hit_list, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            hits.setdefault(hit.id, hit)
    return [(hits[i], scores[i]) for i in sorted(scores, key=lambda i: -scores[i])]


def _rank_scored(hits: list[Hit], k: int) -> list[tuple[Hit, float]]:
    """Single-retriever hits scored by reciprocal rank, comparable across repositories
    (Milvus reports BM25 as a negative distance, cosine as a similarity)."""
    return [(hit, 1.0 / (k + rank)) for rank, hit in enumerate(hits, start=1)]


def merge_overlapping(hits: list[SearchHit]) -> list[SearchHit]:
    """Merge hits of one file whose line ranges overlap (line-splitter overlap, or chunks of one
    long definition); the merged hit keeps the best score and the union of the lines."""
    by_file: dict[tuple[str, str], list[SearchHit]] = {}
    for hit in hits:
        by_file.setdefault((hit.repo, hit.path), []).append(hit)
    merged: list[SearchHit] = []
    for group in by_file.values():
        group.sort(key=lambda h: (h.start_line, h.end_line))
        current = group[0]
        for hit in group[1:]:
            if hit.start_line <= current.end_line:
                current = _union(current, hit)
            else:
                merged.append(current)
                current = hit
        merged.append(current)
    merged.sort(key=lambda h: -h.score)
    return merged


def _union(a: SearchHit, b: SearchHit) -> SearchHit:
    a_lines = a.content.split("\n")
    tail_from = a.end_line - b.start_line + 1  # lines of b already in a
    extra = b.content.split("\n")[tail_from:] if b.end_line > a.end_line else []
    best = a if a.score >= b.score else b
    return SearchHit(
        repo=a.repo,
        path=a.path,
        start_line=a.start_line,
        end_line=max(a.end_line, b.end_line),
        symbol=a.symbol if a.symbol == b.symbol or not b.symbol else (a.symbol or b.symbol),
        kind=best.kind,
        language=a.language,
        score=max(a.score, b.score),
        content="\n".join(a_lines + extra) if extra else a.content,
        file_kind=a.file_kind,
    )
