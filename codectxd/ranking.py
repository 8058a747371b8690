"""How the lists a search gathers become one ranking: a convex combination of the dense and
lexical scores (each min-max normalised over its list), bonuses for chunks defining a name the
query mentions and for files it mentions, priors by kind of file, overlapping hits of one file
joined, and files ranked by their hits (`group="file"`).

Every weight here is chosen on the tuning sets (docstring → function of bench/retrieval.py,
django + sympy issues of bench/localization.py) and checked on the others; docs/decisions.md
has the numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache

from codectx_client.protocol import FileHit, SearchHit
from codectxd.lexical import identifier_parts, lexical_query
from codectxd.query import QueryShape
from codectxd.store import Hit

#: The dense side's share of a hybrid score (BM25 has the rest). Scores, not ranks, are fused:
#: how far ahead a chunk is counts (docs/decisions.md, decision 8).
DENSE_SHARE = 0.8
#: The definition of the identifier a query consists of comes first, whatever else scores.
IDENTIFIER_BONUS = 2.0


@dataclass(frozen=True, slots=True)
class Weights:
    """The fusion's parameters."""

    dense_share: float = DENSE_SHARE
    #: ... and for an issue-length query, whose names and paths BM25 matches exactly (chosen
    #: on 101 django and sympy issues: 0.5 / 0.65 / 0.72 / 0.8 → MRR 0.730 / 0.748 / 0.736 /
    #: 0.729; on 140, flat from 0.65 to 0.75).
    dense_share_long: float = 0.65
    #: Bonus for a chunk defining a name an issue-length query mentions (the first such
    #: name's; each later one's decays as 1 / rank) ...
    definitions: float = 0.4
    #: ... and a short one: none (a sentence naming other functions is seldom about their
    #: code; the docstring benchmark loses 0.2 % MRR@10 at 0.1).
    definitions_short: float = 0.0
    #: Bonus × the share of a chunk's name's words (`default_user_agent`: default, user,
    #: agent) a short query holds: a sentence about a function often uses its name's words.
    #: Long queries: none (an issue holds too many words).
    name_words_short: float = 0.1
    paths: float = 0.6  # bonus for a chunk of a file (or traceback line) the query mentions
    #: How much a kind of file weighs against code, unless the query asks for it.
    priors: Mapping[str, float] = field(
        default_factory=lambda: {"code": 1.0, "doc": 0.5, "test": 0.2, "generated": 0.5,
                                 "data": 0.3}
    )  # fmt: skip
    #: The priors that differ when the query asks where something is done
    #: (`QueryShape.wants_code`): a page that describes it or quotes the question, and the
    #: test that checks it, come after the code that does it.
    priors_for_code: Mapping[str, float] = field(default_factory=lambda: {"doc": 0.25, "test": 0.1})
    #: A file's score: its best chunk's, plus each further chunk's times this power ...
    file_decay: float = 0.3
    #: ... and when the dense side ranked too: its further chunks are more often about the
    #: same thing, where BM25 alone rewards a long file for repeating the query's words.
    file_decay_dense: float = 0.5

    def dense_share_for(self, shape: QueryShape) -> float:
        return self.dense_share_long if shape.long else self.dense_share

    def definitions_for(self, shape: QueryShape) -> float:
        return self.definitions if shape.long else self.definitions_short

    def prior(self, kind: str, shape: QueryShape) -> float:
        if (
            kind == "test"
            and shape.wants_tests
            or kind == "data"
            and shape.wants_data
            or kind == "doc"
            and shape.wants_docs
        ):
            return 1.0
        if shape.wants_code and kind in self.priors_for_code:
            return self.priors_for_code[kind]
        return self.priors.get(kind, 1.0)


DEFAULT = Weights()


@dataclass(slots=True)
class Lists:
    """One repository's candidate lists, best first (any may be empty)."""

    dense: list[Hit] = field(default_factory=list)
    lexical: list[Hit] = field(default_factory=list)
    identifier: list[Hit] = field(default_factory=list)  # defining the query's identifier
    # defining other names it mentions, each with its name's rank (every definition of the
    # most mentioned name gets the whole bonus: which of them is meant, the text does not say)
    definitions: list[tuple[Hit, int]] = field(default_factory=list)
    paths: list[Hit] = field(default_factory=list)


def fuse(
    lists: Lists,
    shape: QueryShape,
    weights: Weights = DEFAULT,
    words: AbstractSet[str] | None = None,
) -> list[tuple[Hit, float]]:
    """Score every candidate: dense_share × dense + (1 − dense_share) × lexical (each min-max
    normalised; a list that is empty gives its share to the other), plus the bonuses, times the
    file's kind prior; best first. A mode searches one list only and gets its normalised score.
    `words`: the query's BM25 words, when the caller has them already (else made here)."""
    both = lists.dense and lists.lexical
    share = weights.dense_share_for(shape) if both else 1.0 if lists.dense else 0.0
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for hit_list, weight in ((lists.dense, share), (lists.lexical, 1.0 - share)):
        for hit, value in _normalised(hit_list):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight * value
            hits.setdefault(hit.id, hit)
    definitions = weights.definitions_for(shape)
    for hit, rank in lists.definitions:
        scores[hit.id] = scores.get(hit.id, 0.0) + definitions / rank
        hits.setdefault(hit.id, hit)
    for rank, hit in enumerate(lists.paths, start=1):
        scores[hit.id] = scores.get(hit.id, 0.0) + weights.paths / rank
        hits.setdefault(hit.id, hit)
    if both and weights.name_words_short and not shape.long:  # hybrid: a lexical signal
        if words is None:
            words = frozenset(lexical_query(shape.text).split())
        for hit_id, hit in hits.items():
            scores[hit_id] += weights.name_words_short * name_words_share(hit.symbol, words)
    for hit_id, hit in hits.items():
        scores[hit_id] *= weights.prior(hit.file_kind, shape)
    for rank, hit in enumerate(lists.identifier, start=1):  # after the prior: whatever kind
        scores[hit.id] = scores.get(hit.id, 0.0) + IDENTIFIER_BONUS / rank
        hits.setdefault(hit.id, hit)
    return [(hits[i], scores[i]) for i in sorted(scores, key=lambda i: -scores[i])]


def name_words_share(symbol: str, words: AbstractSet[str]) -> float:
    """The largest share of one of a chunk's names' words found in `words` (`Session.send`:
    the words of `send`; a chunk holding several definitions lists them with commas)."""
    best = 0.0
    for parts in _names_parts(symbol):
        best = max(best, len(parts & words) / len(parts))
    return best


#: A chunk merged from many small definitions lists them all; its first names are enough.
_MAX_NAMES = 8


@lru_cache(maxsize=1 << 14)
def _names_parts(symbol: str) -> tuple[frozenset[str], ...]:
    """Each of a chunk's (first) names as its set of words; cached: hits repeat."""
    names = (n.strip().rsplit(".", 1)[-1] for n in symbol.split(",", _MAX_NAMES)[:_MAX_NAMES])
    return tuple(parts for parts in (frozenset(identifier_parts(n)) for n in names) if parts)


def _normalised(hits: list[Hit]) -> list[tuple[Hit, float]]:
    """Scores mapped onto 0..1 over the list (best 1, worst 0; one hit alone: 1)."""
    if not hits:
        return []
    values = [h.score for h in hits]
    low, high = min(values), max(values)
    span = high - low
    return [(h, (h.score - low) / span if span > 0 else 1.0) for h in hits]


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


def group_files(
    hits: list[SearchHit],
    weights: Weights = DEFAULT,
    per_file: int = 3,
    dense_repos: Collection[str] = (),
) -> list[FileHit]:
    """Files ranked by their hits (best hit, plus each further one decayed), each with its
    best `per_file` hits; `hits` best first; `dense_repos`: the repositories whose hits the
    dense side ranked too."""
    files: dict[tuple[str, str], list[SearchHit]] = {}
    for hit in hits:
        files.setdefault((hit.repo, hit.path), []).append(hit)
    out = []
    for (repo, path), own in files.items():
        decay = weights.file_decay_dense if repo in dense_repos else weights.file_decay
        score = sum(h.score * decay**i for i, h in enumerate(own))
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
