"""Hybrid search over one or more repository collections.

For each repository four lists are gathered: dense (the query's prose embedded), lexical
(BM25 over code-aware tokens of the whole query), definitions (chunks defining a name the
query mentions, from the snapshot's definitions) and paths (chunks of files, and traceback
lines, the query mentions); `codectxd.ranking` fuses them. `search` runs the steps one after
another (developer CLI, benchmarks); `search_async` runs them concurrently in worker threads
of the caller's event loop, the BM25 searches while the query is embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from codectx_client.protocol import FileHit, SearchHit
from codectxd.embeddings.service import Embedder
from codectxd.errors import ProviderError
from codectxd.filters import Filters, PathFilter, build_expr
from codectxd.lexical import lexical_query
from codectxd.query import QueryShape, analyse, path_candidates
from codectxd.ranking import DEFAULT, Lists, Weights, fuse, group_files, merge_overlapping
from codectxd.snapshot import INDEXED, Definition, Snapshot
from codectxd.store import Hit, Store

__all__ = ["MODES", "Target", "merge_overlapping", "search", "search_async"]

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "lexical")
#: Chunks each retriever returns at least for a file-level search: a file's score sums its
#: chunks', so it needs more of them than the files asked for (bench/localization.py).
FILE_FETCH = 300


@dataclass(slots=True, frozen=True)
class Target:
    """A collection to search and the repository it belongs to.

    `lexical_only`: the collection's vectors come from another embedding model (the previous
    index, still serving while the new model's index is built), so only BM25 can query it.
    """

    repo: str
    collection: str
    lexical_only: bool = False


@dataclass(slots=True, frozen=True)
class _Query:
    """One search, prepared once for every target."""

    shape: QueryShape
    lexical: str  # the BM25 query text
    mode: str
    limit: int
    group: str  # chunk | file
    fetch: int  # hits asked of each retriever: fusion, merging and glob checks need depth
    expr: str  # the filter Milvus evaluates
    path_filter: PathFilter  # the exact path check
    weights: Weights

    def wants_dense(self, target: Target) -> bool:
        return self.mode != "lexical" and not target.lexical_only

    def wants_lexical(self, target: Target) -> bool:
        return self.mode != "dense" or target.lexical_only

    @property
    def exact(self) -> bool:
        """Whether names and paths are looked up (hybrid searches that mention some)."""
        return self.mode == "hybrid" and bool(self.shape.names or self.shape.paths)


def _prepare(
    query: str,
    limit: int,
    filters: Filters | None,
    mode: str,
    group: str,
    weights: Weights,
) -> _Query:
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r} (accepted: {', '.join(MODES)})")
    filters = filters or Filters()
    path_filter = PathFilter(filters.paths)
    depth = limit * (4 if group == "file" else 1)
    return _Query(
        shape=analyse(query),
        lexical=lexical_query(query),
        mode=mode,
        limit=limit,
        group=group,
        fetch=max(depth * 3, FILE_FETCH if group == "file" else 30)
        if not path_filter.spec
        else max(depth * 10, 60),
        expr=build_expr(filters, path_filter),
        path_filter=path_filter,
        weights=weights,
    )


def search(
    store: Store,
    embedder: Embedder | None,
    targets: Sequence[Target],
    query: str,
    *,
    snapshot: Snapshot | None = None,
    limit: int = 10,
    filters: Filters | None = None,
    mode: str = "hybrid",
    group: str = "chunk",
    weights: Weights = DEFAULT,
) -> list[SearchHit]:
    """Search `targets` for `query`; hits best first, at most `limit` (with group "file",
    each file's best hit, in file order: `search_files` returns the files themselves).

    Args:
        snapshot: the definitions and file records (names and paths in the query are looked
            up exactly when it is given).
        mode: "hybrid" (default), "dense" (embeddings only) or "lexical" (BM25 only).
    """
    hits, files = _search_sync(store, embedder, targets, query, snapshot, limit, filters, mode,
                               group, weights)  # fmt: skip
    return [f.hits[0] for f in files] if files is not None else hits


def search_files(
    store: Store, embedder: Embedder | None, targets: Sequence[Target], query: str, **options: Any
) -> list[FileHit]:
    """`search` with group "file": the files, best first."""
    _, files = _search_sync(
        store, embedder, targets, query, options.get("snapshot"), options.get("limit", 10),
        options.get("filters"), options.get("mode", "hybrid"), "file",
        options.get("weights", DEFAULT),
    )  # fmt: skip
    return files or []


def _search_sync(
    store: Store,
    embedder: Embedder | None,
    targets: Sequence[Target],
    query: str,
    snapshot: Snapshot | None,
    limit: int,
    filters: Filters | None,
    mode: str,
    group: str,
    weights: Weights,
) -> tuple[list[SearchHit], list[FileHit] | None]:
    q = _prepare(query, limit, filters, mode, group, weights)
    if not query.strip() or not targets:
        return [], ([] if group == "file" else None)
    vector = _query_vector(embedder, q, targets)
    per_target: list[Lists] = []
    for target in targets:
        lists = Lists()
        if vector is not None and q.wants_dense(target):
            lists.dense = _dense(store, q, target, vector)
        if q.wants_lexical(target):
            lists.lexical = _lexical(store, q, target)
        if snapshot is not None and q.exact:
            _exact(store, snapshot, q, target, lists)
        per_target.append(lists)
    return _finish(q, targets, per_target)


async def search_async(
    store: Store,
    embedder: Embedder | None,
    targets: Sequence[Target],
    query: str,
    *,
    snapshot: Snapshot | None = None,
    limit: int = 10,
    filters: Filters | None = None,
    mode: str = "hybrid",
    group: str = "chunk",
    limiter: anyio.CapacityLimiter | None = None,
    warnings: list[str] | None = None,
) -> tuple[list[SearchHit], list[FileHit]]:
    """`search`, with the BM25 searches and exact lookups running while the query is
    embedded and the repositories searched concurrently (worker threads, at most `limiter`
    at once); (hits, files — empty unless group is "file").

    When the query cannot be embedded (the provider is down), a hybrid search answers with
    its keyword side and says so in `warnings`; a dense-only search raises the ProviderError.
    """
    q = _prepare(query, limit, filters, mode, group, DEFAULT)
    if not query.strip() or not targets:
        return [], []
    lists = [Lists() for _ in targets]
    failures: list[Exception] = []

    async def run(fn: Callable[..., Any], *args: Any) -> None:
        try:
            await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
        except Exception as exc:  # noqa: BLE001 - raised below, outside the task group
            failures.append(exc)

    def keyword_side(i: int) -> None:  # one thread hop for both: each costs a loop wake-up
        if q.wants_lexical(targets[i]):
            lists[i].lexical = _lexical(store, q, targets[i])
        if snapshot is not None and q.exact:
            _exact(store, snapshot, q, targets[i], lists[i])

    def dense_side(only: int | None) -> None:
        vector: np.ndarray | None = None
        try:
            vector = _query_vector(embedder, q, targets)
        except ProviderError as exc:
            if mode == "dense":
                raise
            if warnings is not None:
                warnings.append(f"the query could not be embedded ({exc}): keyword results only")
        if vector is None:
            return
        vectors.append(vector)
        if only is not None and q.wants_dense(targets[only]):
            lists[only].dense = _dense(store, q, targets[only], vector)

    def set_dense(i: int) -> None:
        lists[i].dense = _dense(store, q, targets[i], vectors[0])

    vectors: list[np.ndarray] = []
    async with anyio.create_task_group() as tg:
        for i, target in enumerate(targets):
            if q.wants_lexical(target) or (snapshot is not None and q.exact):
                tg.start_soon(run, keyword_side, i)
        # One repository: embedding and its dense search in the same thread; several: each
        # repository's dense search in its own, once the vector is there.
        if any(q.wants_dense(t) for t in targets):
            await run(dense_side, 0 if len(targets) == 1 else None)
        if vectors and len(targets) > 1:
            for i, target in enumerate(targets):
                if q.wants_dense(target):
                    tg.start_soon(run, set_dense, i)
    if failures:
        raise failures[0]
    hits, files = _finish(q, targets, lists)
    return hits if files is None else [f.hits[0] for f in files], files or []


def _query_vector(
    embedder: Embedder | None, q: _Query, targets: Sequence[Target]
) -> np.ndarray | None:
    if not any(q.wants_dense(t) for t in targets):
        return None
    if embedder is None:
        raise ValueError("dense search needs an embedder")
    return embedder.embed_query(q.shape.prose)


def _dense(store: Store, q: _Query, target: Target, vector: np.ndarray) -> list[Hit]:
    return store.search(target.collection, dense=vector, limit=q.fetch, expr=q.expr)


def _lexical(store: Store, q: _Query, target: Target) -> list[Hit]:
    if not q.lexical:  # nothing BM25 can match (punctuation only)
        return []
    return store.search(target.collection, lexical=q.lexical, limit=q.fetch, expr=q.expr)


def _exact(store: Store, snapshot: Snapshot, q: _Query, target: Target, lists: Lists) -> None:
    """The identifier list (chunks defining the name the query consists of), the definitions
    list (chunks defining other names it mentions, the most mentioned first) and the paths
    list (files the query mentions, the chunk of a traceback frame's line first)."""
    shape = q.shape
    # Other names only when they earn a bonus (issue-length queries): a lookup they would not
    # change is a snapshot query and a Milvus read on every search.
    bonus = q.weights.definitions_for(shape)
    names = shape.names if bonus > 0 else shape.names[:1] if shape.identifier else ()
    definitions = snapshot.definitions(target.collection, names)
    files: list[str] = []
    frame_lines: dict[str, int] = {}
    for frame in reversed(shape.frames):  # the innermost frame is the last one
        for candidate in path_candidates(frame.path):
            frame_lines.setdefault(candidate, frame.line)
    mentions = [path_candidates(p) for p in shape.paths]
    known = snapshot.states(target.collection, [c for m in mentions for c in m])
    for candidates in mentions:  # a mention's file: its longest candidate that is indexed
        found = next((c for c in candidates if (s := known.get(c)) and s.state == INDEXED), None)
        if found is not None and found not in files:
            files.append(found)
    if not definitions and not files:
        return
    rows = _candidate_rows(store, snapshot, target, definitions, files, q.expr)
    if q.path_filter:
        rows = [r for r in rows if q.path_filter(r.path)]
    by_path: dict[str, list[Hit]] = {}
    for row in rows:
        by_path.setdefault(row.path, []).append(row)

    def chunk_of(d: Definition) -> Hit | None:  # the chunk holding the definition's own line
        line = d.def_line or d.start_line
        return next((r for r in by_path.get(d.path, ()) if r.start_line <= line <= r.end_line),
                    None)  # fmt: skip

    order = {name: i for i, name in enumerate(shape.names)}
    first = shape.identifier.rsplit(".", 1)[-1] if shape.identifier else ""

    def rank(d: Definition) -> tuple[int, int, int]:
        exact = d.qualified == shape.identifier or d.name == first
        return (0 if exact else 1, order.get(d.name, len(order)), d.start_line)

    seen: set[str] = set()
    named: dict[str, int] = {}  # a name's rank among the mentioned names that are defined
    for d in sorted(definitions, key=rank):
        hit = chunk_of(d)
        if hit is None or hit.id in seen:
            continue
        seen.add(hit.id)
        if rank(d)[0] == 0 and shape.identifier:
            lists.identifier.append(hit)
        else:
            lists.definitions.append((hit, named.setdefault(d.name, len(named) + 1)))
    for path in files:
        own = sorted((r for r in rows if r.path == path), key=lambda r: r.start_line)
        line = frame_lines.get(path)
        chosen = next((r for r in own if line and r.start_line <= line <= r.end_line), None)
        best = chosen or _best_of(own, lists)
        if best is not None:
            lists.paths.append(best)


def _best_of(rows: list[Hit], lists: Lists) -> Hit | None:
    """A file's chunk to stand for it: its best in the lexical or dense list, else its first."""
    ids = {r.id for r in rows}
    for hit in (*lists.lexical, *lists.dense):
        if hit.id in ids:
            return hit
    return rows[0] if rows else None


def _candidate_rows(
    store: Store,
    snapshot: Snapshot,
    target: Target,
    definitions: Sequence[Definition],
    files: Sequence[str],
    expr: str,
) -> list[Hit]:
    """The chunk holding each definition, and every chunk of `files`.

    A definition's chunk is read by id (the snapshot's chunk spans): at 116k rows that is
    ~4 ms of Milvus CPU, where `path in [...]` scans every path and returns every chunk of the
    files (~18 ms; docs/decisions.md §12.1). Files whose spans are unknown (indexed by an older
    version) or whose chunk is not found (filtered out, or re-written since) are read by path.
    """
    spans = snapshot.chunk_spans(target.collection, {d.path for d in definitions})
    wanted: dict[str, str] = {}  # chunk id → its file
    by_path = set(files)
    for d in definitions:
        line = d.def_line or d.start_line
        chunk = next((i for first, last, i in spans.get(d.path, ()) if first <= line <= last),
                     None)  # fmt: skip
        if chunk is None:
            by_path.add(d.path)
        else:
            wanted[chunk] = d.path
    rows = store.hits_in(target.collection, "id", list(wanted), expr) if wanted else []
    found = {r.id for r in rows}
    by_path.update(path for chunk, path in wanted.items() if chunk not in found)
    if by_path:
        rows += [r for r in store.hits_in(target.collection, "path", sorted(by_path), expr)
                 if r.id not in found]  # fmt: skip
    return rows


def _finish(
    q: _Query, targets: Sequence[Target], per_target: Sequence[Lists]
) -> tuple[list[SearchHit], list[FileHit] | None]:
    ranked: list[SearchHit] = []
    words = frozenset(q.lexical.split())  # the BM25 query's, once for every repository
    for target, lists in zip(targets, per_target, strict=True):
        for hit, score in fuse(lists, q.shape, q.weights, words):
            if q.path_filter and not q.path_filter(hit.path):
                continue
            ranked.append(
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
            )
    hits = merge_overlapping(ranked)
    for hit in hits:
        hit.score = round(hit.score, 6)
    if q.group == "file":
        dense = {t.repo for t, lists in zip(targets, per_target, strict=True) if lists.dense}
        return hits, group_files(hits, q.weights, dense_repos=dense)[: q.limit]
    return hits[: q.limit], None
