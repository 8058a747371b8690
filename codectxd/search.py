"""Hybrid search over one or more repository collections.

Dense (embedding) and lexical (BM25 over code-aware tokens) results are fused with reciprocal
rank fusion inside Milvus; results of several repositories are merged by that fused score.
Filters narrow the search in Milvus where they can (language, extension, path prefix) and are
checked again in Python for globs Milvus cannot express.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pathspec

from codectxd.embeddings.service import Embedder
from codectxd.lexical import lexical_query
from codectxd.store import Hit, Store, quote

log = logging.getLogger(__name__)

#: Runs BM25 searches beside the query embedding (the daemon caps concurrent searches at 8).
_LEXICAL_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bm25")

MODES = ("hybrid", "dense", "lexical")
_GLOB_CHARS = set("*?[")


@dataclass(slots=True, frozen=True)
class Filters:
    """Search filters; empty means no restriction."""

    paths: tuple[str, ...] = ()  # path prefixes ("src/") or globs ("src/**/*.py", "*.go")
    languages: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()  # "py" or ".py"


@dataclass(slots=True, frozen=True)
class Target:
    """A collection to search and the repository it belongs to.

    `lexical_only`: the collection's vectors come from another embedding model (the previous
    index, still serving while the new model's index is built), so only BM25 can query it.
    """

    repo: str
    collection: str
    lexical_only: bool = False


@dataclass(slots=True)
class Result:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    content: str
    extra: dict[str, object] = field(default_factory=dict)


def _like_prefix(prefix: str) -> str | None:
    """A Milvus `like` pattern matching every path that starts with `prefix` (a superset: the
    exact check is `PathFilter.__call__`); None when no useful pattern exists.

    Milvus Lite 2.5's `like` has no working escape for its wildcards (a backslash before `_` or
    `%` makes the pattern match nothing), so the prefix is cut at the first `_`, `%` or
    backslash: a shorter prefix still matches every wanted path.
    """
    cut = len(prefix)
    for special in "_%\\":
        at = prefix.find(special)
        if at != -1:
            cut = min(cut, at)
    head = prefix[:cut]
    if not head:
        return None
    return quote(head + "%")


def _literal_prefix(glob: str) -> str:
    """The directory part of a glob before its first wildcard ('' if it starts with one)."""
    head = ""
    for ch in glob:
        if ch in _GLOB_CHARS:
            break
        head += ch
    return head.rsplit("/", 1)[0] + "/" if "/" in head else ""


class PathFilter:
    """Matches repository-relative paths against prefixes and gitignore-style globs."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.prefixes = tuple(p.removeprefix("./") for p in patterns if not (set(p) & _GLOB_CHARS))
        globs = [p for p in patterns if set(p) & _GLOB_CHARS]
        self.spec = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
        self.globs = tuple(globs)

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.spec)

    def __call__(self, path: str) -> bool:
        for prefix in self.prefixes:
            base = prefix.rstrip("/")
            if path == base or path.startswith(base + "/"):
                return True
        return self.spec is not None and self.spec.match_file(path)

    def milvus_expr(self) -> str:
        """A `like` disjunction that over-approximates the filter (exactness checked after)."""
        heads = [*self.prefixes, *(_literal_prefix(g) for g in self.globs)]
        if not heads or any(h == "" for h in heads):
            return ""
        likes = [_like_prefix(h) for h in heads]
        if any(like is None for like in likes):
            return ""
        return "(" + " or ".join(f"path like {like}" for like in likes) + ")"


def build_expr(filters: Filters, path_filter: PathFilter) -> str:
    clauses: list[str] = []
    if filters.languages:
        clauses.append(f"language in [{', '.join(quote(x.lower()) for x in filters.languages)}]")
    if filters.extensions:
        exts = [x.lower().lstrip(".") for x in filters.extensions]
        clauses.append(f"ext in [{', '.join(quote(x) for x in exts)}]")
    if path_filter:
        expr = path_filter.milvus_expr()
        if expr:
            clauses.append(expr)
    return " and ".join(clauses)


def merge_overlapping(hits: list[Result]) -> list[Result]:
    """Merge hits of one file whose line ranges overlap (line-splitter overlap, or chunks of one
    long definition); the merged hit keeps the best score and the union of the lines."""
    by_file: dict[tuple[str, str], list[Result]] = {}
    for hit in hits:
        by_file.setdefault((hit.repo, hit.path), []).append(hit)
    merged: list[Result] = []
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


def _union(a: Result, b: Result) -> Result:
    a_lines = a.content.split("\n")
    tail_from = a.end_line - b.start_line + 1  # lines of b already in a
    extra = b.content.split("\n")[tail_from:] if b.end_line > a.end_line else []
    content = "\n".join(a_lines + extra) if extra else a.content
    best = a if a.score >= b.score else b
    symbol = a.symbol if a.symbol == b.symbol or not b.symbol else (a.symbol or b.symbol)
    return Result(
        a.repo,
        a.path,
        a.start_line,
        max(a.end_line, b.end_line),
        symbol,
        best.kind,
        a.language,
        max(a.score, b.score),
        content,
    )


#: Reciprocal rank fusion constant. Small values let a chunk ranked first by one retriever beat
#: chunks ranked moderately by both; docs/decisions.md has the measurements behind the choice.
RRF_K = 5
#: Weight of the lexical (BM25) list against the dense one in the fusion: BM25 is strongest on
#: exact identifiers, the embedding on questions in prose (docs/decisions.md).
LEXICAL_WEIGHT_CODE = 1.0
LEXICAL_WEIGHT_PROSE = 0.3
_CODE_LIKE = re.compile(r"[a-z][A-Z]|\w_\w|\w\.\w|[()\[\]{}]|::|->|=")


def lexical_weight_for(query: str) -> float:
    """Identifier-looking queries (`parseConfig`, `os.path`, `a_b`) trust BM25 fully."""
    return LEXICAL_WEIGHT_CODE if _CODE_LIKE.search(query) else LEXICAL_WEIGHT_PROSE


def fuse(
    ranked: Sequence[Sequence[Hit]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[Hit]:
    """Reciprocal rank fusion: score = sum over lists of weight / (k + rank)."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for position, hit_list in enumerate(ranked):
        weight = weights[position] if weights else 1.0
        for rank, hit in enumerate(hit_list, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            hits.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: -scores[i])
    out = []
    for hit_id in order:
        hit = hits[hit_id]
        hit.score = scores[hit_id]
        out.append(hit)
    return out


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
) -> list[Result]:
    """Search `targets` for `query`; results best first, at most `limit`.

    Args:
        mode: "hybrid" (default), "dense" (embeddings only) or "lexical" (BM25 only).
        lexical_weight: BM25's weight in the fusion (default: by the look of the query).
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r} (accepted: {', '.join(MODES)})")
    filters = filters or Filters()
    if not query.strip() or not targets:
        return []
    path_filter = PathFilter(filters.paths)
    expr = build_expr(filters, path_filter)
    if mode in ("hybrid", "dense") and embedder is None:
        raise ValueError("dense search needs an embedder")
    lexical = lexical_query(query) if mode in ("hybrid", "lexical") else None
    weights = (1.0, lexical_weight_for(query) if lexical_weight is None else lexical_weight)
    # Over-fetch: fusion, merging overlapping hits and exact glob checks all need depth.
    fetch = max(limit * 3, 30) if not path_filter.spec else max(limit * 10, 60)
    # BM25 needs no query vector: its searches run while the query is being embedded.
    lexical_jobs: dict[int, Future[list[Hit]]] = {
        i: _LEXICAL_POOL.submit(
            store.search,
            target.collection,
            lexical=lexical or lexical_query(query),
            limit=fetch,
            expr=expr,
        )
        for i, target in enumerate(targets)
        if lexical or target.lexical_only
    }
    try:
        dense: np.ndarray | None = None
        if mode in ("hybrid", "dense") and not all(t.lexical_only for t in targets):
            assert embedder is not None
            dense = embedder.embed_query(query)
        results: list[Result] = []
        for i, target in enumerate(targets):
            lists: list[list[Hit]] = []
            if dense is not None and not target.lexical_only:
                lists.append(store.search(target.collection, dense=dense, limit=fetch, expr=expr))
            if i in lexical_jobs:
                lists.append(lexical_jobs[i].result())
            hits = (
                fuse(lists, rrf_k, weights)
                if len(lists) > 1
                else _rank_scored(lists[0] if lists else [])
            )
            for hit in hits:
                if path_filter and not path_filter(hit.path):
                    continue
                results.append(
                    Result(
                        target.repo,
                        hit.path,
                        hit.start_line,
                        hit.end_line,
                        hit.symbol,
                        hit.kind,
                        hit.language,
                        hit.score,
                        hit.content,
                    )
                )
    finally:
        for job in lexical_jobs.values():
            job.cancel()  # a failed embedding must not leave searches queued
    return merge_overlapping(results)[:limit]


def _rank_scored(hits: list[Hit]) -> list[Hit]:
    """Single-retriever results scored by reciprocal rank, comparable across repositories
    (Milvus reports BM25 as a negative distance, cosine as a similarity)."""
    for rank, hit in enumerate(hits, start=1):
        hit.score = 1.0 / (RRF_K + rank)
    return hits
