"""How the lists a search gathers become one ranking: weighted reciprocal rank fusion of the
dense, lexical, definition and path lists, priors by kind of file, overlapping hits of one
file joined, and files ranked by their hits (`group="file"`).

Every weight here is chosen on the tuning sets (docstring → function of bench/retrieval.py,
django + sympy issues of bench/localization.py) and checked on the others; docs/decisions.md
has the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from codectx_client.protocol import FileHit, SearchHit
from codectxd.query import QueryShape
from codectxd.store import Hit

#: Reciprocal rank fusion constant. Small values let a chunk ranked first by one retriever beat
#: chunks ranked moderately by both (docs/decisions.md).
RRF_K = 5
_CODE_LIKE = re.compile(r"[a-z][A-Z]|\w_\w|\w\.\w|[()\[\]{}]|::|->|=")


@dataclass(frozen=True, slots=True)
class Weights:
    """The fusion's parameters."""

    rrf_k: int = RRF_K
    dense: float = 1.0
    lexical_code: float = 1.0  # BM25's weight for an identifier-looking query
    lexical_prose: float = 0.3  # ... and for a question in prose
    definitions: float = 2.0  # chunks defining a name the query mentions
    paths: float = 2.0  # chunks of files (and traceback lines) the query mentions
    #: How much a kind of file weighs against code, unless the query asks for it.
    priors: Mapping[str, float] = field(
        default_factory=lambda: {"code": 1.0, "doc": 0.9, "test": 0.5, "generated": 0.5,
                                 "data": 0.3}
    )  # fmt: skip
    #: A file's score: its best chunk's, plus each further chunk's times this power.
    file_decay: float = 0.3
    lexical_override: float | None = None  # one BM25 weight for every query (benchmarks)

    def lexical(self, shape: QueryShape) -> float:
        if self.lexical_override is not None:
            return self.lexical_override
        return self.lexical_code if _CODE_LIKE.search(shape.text) else self.lexical_prose

    def prior(self, kind: str, shape: QueryShape) -> float:
        if kind == "test" and shape.wants_tests or kind == "data" and shape.wants_data:
            return 1.0
        return self.priors.get(kind, 1.0)


DEFAULT = Weights()


@dataclass(slots=True)
class Lists:
    """One repository's candidate lists, best first (any may be empty)."""

    dense: list[Hit] = field(default_factory=list)
    lexical: list[Hit] = field(default_factory=list)
    definitions: list[Hit] = field(default_factory=list)
    paths: list[Hit] = field(default_factory=list)


def fuse(
    lists: Lists, shape: QueryShape, weights: Weights = DEFAULT, *, single: bool = False
) -> list[tuple[Hit, float]]:
    """Weighted reciprocal rank fusion (score = Σ weight / (k + rank)) times the file's kind
    prior. `single`: one retriever only (a mode), scored by its own rank."""
    k = weights.rrf_k
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    pairs: Sequence[tuple[list[Hit], float]] = (
        (lists.dense, 1.0 if single else weights.dense),
        (lists.lexical, 1.0 if single else weights.lexical(shape)),
        (lists.definitions, weights.definitions),
        (lists.paths, weights.paths),
    )
    for hit_list, weight in pairs:
        for rank, hit in enumerate(hit_list, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            hits.setdefault(hit.id, hit)
    for hit_id, hit in hits.items():
        scores[hit_id] *= weights.prior(hit.file_kind, shape)
    return [(hits[i], scores[i]) for i in sorted(scores, key=lambda i: -scores[i])]


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


def group_files(hits: list[SearchHit], weights: Weights = DEFAULT, per_file: int = 3
                ) -> list[FileHit]:  # fmt: skip
    """Files ranked by their hits (best hit, plus each further one decayed), each with its
    best `per_file` hits; `hits` best first."""
    files: dict[tuple[str, str], list[SearchHit]] = {}
    for hit in hits:
        files.setdefault((hit.repo, hit.path), []).append(hit)
    out = []
    for (repo, path), own in files.items():
        score = sum(h.score * weights.file_decay**i for i, h in enumerate(own))
        first = own[0]
        out.append(FileHit(repo=repo, path=path, language=first.language,
                           file_kind=first.file_kind, score=round(score, 6),
                           hits=own[:per_file]))  # fmt: skip
    out.sort(key=lambda f: -f.score)
    return out


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
