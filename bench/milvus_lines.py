"""Milvus Lite line A vs line B: the benchmark behind docs/decisions.md, section 1.

* Line A: pymilvus 3.0.2 + milvus-lite 3.2.2 (pure-Python engine inside the process).
* Line B: pymilvus 2.6.x + milvus-lite 2.5.1 (C++ ``milvus`` child process); codectx pins it.

Each line needs its own interpreter, because the two pymilvus versions cannot live in one
environment. Line B is the project's own environment; create a line-A venv beside it (the
``.venv-milvus3`` directory is not tracked)::

    python -m venv .venv-milvus3
    .venv-milvus3/bin/pip install 'pymilvus==3.0.2' 'milvus-lite==3.2.2' numpy psutil

Run one line per interpreter, then compare (``--quick``: 2,000 rows, 2 runs, short phases,
under ~2 minutes per line; ``--markdown`` also writes the table as a markdown file)::

    python bench/milvus_lines.py run --line B --n 20000 --out bench/results/milvus_B_20k.json
    .venv-milvus3/bin/python bench/milvus_lines.py run --line A --n 20000 \\
        --out bench/results/milvus_A_20k.json
    python bench/milvus_lines.py summarize bench/results/milvus_*.json --markdown table.md

    python bench/milvus_lines.py run --line B --quick    # -> bench/results/milvus_quick_B.json

What one ``run`` measures, with the same schema on both lines (VARCHAR ``lexical`` with the
standard analyzer and a BM25 ``Function`` feeding a sparse vector, a 384-d COSINE dense vector,
scalar fields; dense index HNSW on line A, AUTOINDEX on line B, which rejects HNSW):

1. insert rate: batches of 500 rows (200 with ``--quick``; generation not timed), throughput
   of each fifth of the load;
2. latency right after the inserts, unflushed: a hybrid and a dense probe every 0.2 s;
3. ``flush()`` and the probes after it, until searches are fast again;
4. dense, BM25 and hybrid (RRF) latency, plus hybrid with ``path like "pkg_3/%"`` and with
   ``language in ["python"]`` (filters go into each ``AnnSearchRequest``: a ``filter=`` given
   to ``hybrid_search`` itself is silently ignored), p50/p95/p99 of every run;
5. concurrency on one shared client: 1 and 2 hybrid-search threads, an insert thread alone,
   2 search threads + 1 insert thread, each with a 5 ms sleep "heartbeat" thread whose late
   wake-ups measure GIL stalls; every scenario is cut into ``--runs`` time windows;
6. RSS of the process and of its children (line B's engine), database size on disk;
7. reopen: ``--runs`` fresh processes each open the database, ``load_collection``, and search.

The summary shows, per result file, the median over the runs with (min/max); use at least 5
runs (the default) for numbers worth quoting; ``--quick`` only checks that everything works.
The one-off probes of the original study (which dense index types each line honours, API
gotchas such as HNSW being refused on line B, read-your-writes, upsert and delete costs, the
single-process lock) are deliberately not repeated here: the study's report covers them and
docs/decisions.md sums up what matters.

Data: real ``.py`` files from the running interpreter's site-packages (``--src`` to change),
shuffled with ``--seed`` and cut into 60-line pieces of at most 1,600 characters; paths are
``pkg_<hash % 20>/<file>`` (``pkg_3/`` holds about 5% of rows), 60% of rows are "python";
dense vectors are seeded random unit vectors, dense queries a stored vector plus noise, BM25
queries 2-3 identifiers from the corpus. The two lines' site-packages differ, so their corpora
differ slightly (the summary prints each corpus fingerprint); pass the same ``--src`` to both
for identical data. Databases live in a temporary directory (``--db-dir``, default the system
temp dir) that is deleted at the end; never inside the repository.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

if TYPE_CHECKING:
    from pymilvus import MilvusClient

if __package__:
    from bench import milvus_common as mc
else:  # run as a script: python bench/milvus_lines.py
    import milvus_common as mc

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SCHEMA_VERSION = 1

COLLECTION = "chunks"
OUTPUT_FIELDS = ["path", "language", "symbol", "start_line", "end_line"]
TOP_K = 10
SUB_LIMIT = 20
RRF_K = 60
PATH_PREFIX = "pkg_3/"
#: Latency suites: name -> (search kind, filter expression).
SUITES: dict[str, tuple[str, str]] = {
    "dense": ("dense", ""),
    "bm25": ("bm25", ""),
    "hybrid": ("hybrid", ""),
    "hybrid_path_like": ("hybrid", f'path like "{PATH_PREFIX}%"'),
    "hybrid_lang_in": ("hybrid", 'language in ["python"]'),
}
#: Concurrency scenarios: name -> (search threads, insert thread).
SCENARIOS: dict[str, tuple[int, bool]] = {
    "1_search": (1, False),
    "2_search": (2, False),
    "insert_only": (0, True),
    "2_search+1_insert": (2, True),
}
HEARTBEAT_S = 0.005
PROBE_INTERVAL_S = 0.2
REOPEN_QUERIES = 20
REOPEN_TIMEOUT_S = 1800


@dataclass(frozen=True, slots=True)
class Line:
    """One Milvus Lite line: which pymilvus major it needs and which dense index it uses."""

    pymilvus_major: int
    dense_index: str
    install: str


LINES = {
    "A": Line(3, "HNSW", "pip install 'pymilvus==3.0.2' 'milvus-lite==3.2.2' numpy psutil"),
    "B": Line(2, "AUTOINDEX", "pip install 'pymilvus>=2.6,<2.7' 'milvus-lite==2.5.1' numpy psutil"),
}
DENSE_INDEX: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    # index type -> (build params, search params)
    "FLAT": ({}, {}),
    "IVF_FLAT": ({"nlist": 128}, {"nprobe": 16}),
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
    "AUTOINDEX": ({}, {}),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes and durations of one run.

    Attributes:
        n: Rows inserted before the measurements.
        runs: Runs per latency suite, time windows per concurrency scenario, reopen processes.
        queries: Queries per run for dense, BM25 and hybrid.
        filtered_queries: Queries per run for the filtered hybrids.
        warmup: Warm-up queries before each suite.
        settle_s: Seconds of probing after the inserts (half as long again after ``flush``).
        conc_s: Seconds per concurrency scenario.
        batch: Rows per insert call (capped at n/10 so the fifths of the load hold batches).
    """

    n: int = 20_000
    runs: int = 5
    queries: int = 100
    filtered_queries: int = 100
    warmup: int = 50
    settle_s: float = 60.0
    conc_s: float = 20.0
    batch: int = 500


FULL = Settings()
QUICK = Settings(
    n=2_000, runs=2, queries=50, filtered_queries=30, warmup=10, settle_s=5.0, conc_s=4.0
)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs besides the settings."""

    line: str
    index: str
    quick: bool
    seed: int
    src: Path
    out: Path
    db_dir: Path


def log(*parts: object) -> None:
    """Print a time-stamped progress line to stderr."""
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# --- pymilvus glue (imported lazily: `summarize` needs no pymilvus) -------------------------


def check_line(line: str) -> dict[str, str]:
    """Check that the interpreter has the pymilvus of ``line``; return the package versions.

    Args:
        line: ``"A"`` or ``"B"``.

    Returns:
        Versions of pymilvus, milvus-lite, numpy and psutil.

    Raises:
        SystemExit: If the installed pymilvus belongs to the other line.
    """
    versions = {}
    for package in ("pymilvus", "milvus-lite", "numpy", "psutil"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    major = versions["pymilvus"].split(".")[0]
    if major != str(LINES[line].pymilvus_major):
        raise SystemExit(
            f"line {line} needs pymilvus {LINES[line].pymilvus_major}.x but {sys.executable} "
            f"has pymilvus {versions['pymilvus']}; use that line's venv ({LINES[line].install})"
        )
    return versions


def create_collection(client: MilvusClient, index: str) -> None:
    """Create and load the benchmark collection (dropping an old one).

    Args:
        client: Open client.
        index: Dense index type (a key of ``DENSE_INDEX``).
    """
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field("path", DataType.VARCHAR, max_length=4096)
    schema.add_field("language", DataType.VARCHAR, max_length=32)
    schema.add_field("ext", DataType.VARCHAR, max_length=32)
    schema.add_field("symbol", DataType.VARCHAR, max_length=512)
    schema.add_field("start_line", DataType.INT64)
    schema.add_field("end_line", DataType.INT64)
    schema.add_field("content", DataType.VARCHAR, max_length=65535)
    schema.add_field(
        "lexical",
        DataType.VARCHAR,
        max_length=65535,
        enable_analyzer=True,
        analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]},
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=mc.DIM)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["lexical"],
            output_field_names=["sparse"],
        )
    )
    params = client.prepare_index_params()
    params.add_index(
        field_name="dense", index_type=index, metric_type="COSINE", params=DENSE_INDEX[index][0]
    )
    params.add_index(
        field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={}
    )
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    client.create_collection(COLLECTION, schema=schema, index_params=params)
    client.load_collection(COLLECTION)


class Searcher:
    """The three kinds of search, with the exact parameters used on both lines."""

    def __init__(self, client: MilvusClient, index: str) -> None:
        """Bind to a client.

        Args:
            client: Open client with the collection loaded.
            index: Dense index type (selects the search parameters).
        """
        from pymilvus import AnnSearchRequest, RRFRanker

        self._client = client
        self._request = AnnSearchRequest
        self._ranker = RRFRanker(RRF_K)
        self._dense_params = {"metric_type": "COSINE", "params": DENSE_INDEX[index][1]}
        self._bm25_params = {"metric_type": "BM25", "params": {}}

    def dense(self, vector: list[float], _text: str, expr: str = "") -> list[Any]:
        """Dense top-k search."""
        return self._client.search(
            COLLECTION,
            data=[vector],
            anns_field="dense",
            limit=TOP_K,
            filter=expr,
            search_params=self._dense_params,
            output_fields=OUTPUT_FIELDS,
        )[0]

    def bm25(self, _vector: list[float], text: str, expr: str = "") -> list[Any]:
        """BM25 top-k search."""
        return self._client.search(
            COLLECTION,
            data=[text],
            anns_field="sparse",
            limit=TOP_K,
            filter=expr,
            search_params=self._bm25_params,
            output_fields=OUTPUT_FIELDS,
        )[0]

    def hybrid(self, vector: list[float], text: str, expr: str = "") -> list[Any]:
        """Dense + BM25 requests fused by RRF; the filter goes into each request."""
        extra = {"expr": expr} if expr else {}
        requests = [
            self._request(
                data=[vector],
                anns_field="dense",
                param=self._dense_params,
                limit=SUB_LIMIT,
                **extra,
            ),
            self._request(
                data=[text], anns_field="sparse", param=self._bm25_params, limit=SUB_LIMIT, **extra
            ),
        ]
        return self._client.hybrid_search(
            COLLECTION, requests, self._ranker, limit=TOP_K, output_fields=OUTPUT_FIELDS
        )[0]

    def by_kind(self, kind: str) -> Callable[[list[float], str, str], list[Any]]:
        """Return the search method called ``kind`` (dense, bm25 or hybrid)."""
        return {"dense": self.dense, "bm25": self.bm25, "hybrid": self.hybrid}[kind]


def release_engine(db: Path) -> float:
    """Stop the Milvus Lite engine of ``db`` (``client.close()`` does not); return seconds."""
    from milvus_lite.server_manager import server_manager_instance

    started = time.perf_counter()
    server_manager_instance.release_server(str(db))
    return time.perf_counter() - started


def count_rows(client: MilvusClient) -> int:
    """Return ``count(*)`` of the collection."""
    return int(client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"])


# --- the run --------------------------------------------------------------------------------


def window_stats(
    events: Sequence[tuple[float, float]], elapsed: float, windows: int
) -> list[dict[str, float]]:
    """Cut timed events into equal time windows and summarise each.

    Args:
        events: ``(completion time since start, duration)`` pairs, in seconds.
        elapsed: Length of the scenario in seconds.
        windows: Number of windows.

    Returns:
        Per window: latency statistics plus ``per_s``, events completed per second.
    """
    width = elapsed / windows
    out = []
    for w in range(windows):
        lo, hi = w * width, (w + 1) * width
        inside = [d for t, d in events if lo <= t < hi or (w == windows - 1 and t >= hi)]
        out.append({**mc.latency_stats(inside), "per_s": len(inside) / width})
    return out


class Bench:
    """One run of the benchmark against one database; results are saved after every phase."""

    def __init__(self, cfg: RunConfig, settings: Settings, versions: dict[str, str]) -> None:
        """Prepare data and queries (not timed) and the result record.

        Args:
            cfg: Line, paths and seed.
            settings: Sizes and durations.
            versions: Installed package versions (from `check_line`).
        """
        self.cfg = cfg
        self.s = settings
        self.proc = psutil.Process()
        self.corpus = mc.Corpus.build(cfg.src, settings.n, cfg.seed)
        n_queries = max(4000, settings.warmup + settings.runs * settings.queries)
        vectors = mc.dense_queries(settings.n, n_queries, cfg.seed)
        texts = self.corpus.text_queries(n_queries, cfg.seed + 1)
        self.queries = [(vectors[i].tolist(), texts[i % len(texts)]) for i in range(n_queries)]
        self._qi = itertools.count()
        self._next_row = itertools.count(settings.n + 1_000_000, self.batch)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"milvus-{cfg.line}-", dir=cfg.db_dir))
        self.db = self.workdir / "bench.db"
        self.client: MilvusClient | None = None
        self.search: Searcher | None = None
        self.result: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "line": cfg.line,
            "index": cfg.index,
            "n": settings.n,
            "quick": cfg.quick,
            "settings": {**asdict(settings), "batch": self.batch},
            "seed": cfg.seed,
            "versions": versions,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "corpus": self.corpus.describe(),
            "loadavg_start": list(os.getloadavg()),
            "rss_baseline": mc.rss_mb(self.proc),
            "errors": [],
        }

    @property
    def batch(self) -> int:
        """Rows per insert call."""
        return max(1, min(self.s.batch, self.s.n // 10))

    def save(self) -> None:
        """Write the result record (atomically) to the output file."""
        self.cfg.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cfg.out.with_name(self.cfg.out.name + ".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str) + "\n")
        tmp.replace(self.cfg.out)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run one phase: log it, record an error instead of aborting, save afterwards."""
        log(f"[{self.cfg.line}] {name}")
        try:
            yield
        except Exception as exc:
            message = f"{name}: {type(exc).__name__}: {exc}"[:2000]
            log("ERROR", message)
            self.result["errors"].append(message)
        finally:
            self.save()

    def next_query(self) -> tuple[list[float], str]:
        """Return the next (vector, text) query, cycling through the prepared ones."""
        return self.queries[next(self._qi) % len(self.queries)]

    def timed(self, kind: str, expr: str = "") -> tuple[float, list[Any]]:
        """Run one search of ``kind`` with the next query; return (seconds, hits)."""
        assert self.search is not None
        vector, text = self.next_query()
        fn = self.search.by_kind(kind)
        started = time.perf_counter()
        hits = fn(vector, text, expr)
        return time.perf_counter() - started, hits

    # --- phases ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run every phase in order, then remove the database."""
        started = time.perf_counter()
        try:
            with self.phase("open + create collection"):
                self.open()
            if self.client is None:
                return
            with self.phase(f"insert {self.s.n} rows"):
                self.insert()
            with self.phase("probe without flush"):
                self.result["unflushed"] = self.probe(self.s.settle_s)
            with self.phase("flush + probe"):
                self.flush()
            with self.phase("latency suites"):
                self.latency()
            with self.phase("concurrency"):
                self.concurrency()
            with self.phase("close"):
                self.close()
            with self.phase("reopen in fresh processes"):
                self.reopen()
        finally:
            self.result["loadavg_end"] = list(os.getloadavg())
            self.result["wall_s"] = time.perf_counter() - started
            self.save()
            self.cleanup()

    def open(self) -> None:
        """Open a fresh database and create the collection with its indexes."""
        from pymilvus import MilvusClient

        started = time.perf_counter()
        self.client = MilvusClient(str(self.db))
        opened = time.perf_counter()
        create_collection(self.client, self.cfg.index)
        self.search = Searcher(self.client, self.cfg.index)
        self.result["open"] = {
            "first_open_s": opened - started,
            "create_collection_s": time.perf_counter() - opened,
        }

    def insert(self) -> None:
        """Insert the n rows in batches; record throughput per fifth of the load."""
        assert self.client is not None
        times: list[float] = []
        for start in range(0, self.s.n, self.batch):
            rows = self.corpus.rows(start, min(self.batch, self.s.n - start))
            started = time.perf_counter()
            self.client.insert(COLLECTION, rows)
            times.append(time.perf_counter() - started)
        sizes = [min(self.batch, self.s.n - s) for s in range(0, self.s.n, self.batch)]
        fifths = [
            sum(sizes[i] for i in part) / sum(times[i] for i in part)
            for part in np.array_split(np.arange(len(times)), 5)
            if len(part)
        ]
        self.result["insert"] = {
            "rows": self.s.n,
            "batch": self.batch,
            "rows_per_s": self.s.n / sum(times),
            "fifths_rows_per_s": fifths,
            "batch_ms_p50": float(np.percentile(times, 50)) * 1000,
            "batch_ms_max": max(times) * 1000,
        }
        self.result["rss_after_insert"] = mc.rss_mb(self.proc)
        log("insert", {k: v for k, v in self.result["insert"].items() if k != "fifths_rows_per_s"})

    def probe(self, seconds: float) -> dict[str, Any]:
        """Probe one hybrid and one dense search every 0.2 s for ``seconds``.

        Args:
            seconds: Probing time (the last probe may overrun it).

        Returns:
            The first five probes, the steady state (median of the last quarter of the time)
            and when searches last were more than twice as slow as the steady state.
        """
        probes: list[tuple[float, float, float]] = []
        started = time.perf_counter()
        while not probes or time.perf_counter() - started < seconds:
            hybrid_s, _ = self.timed("hybrid")
            dense_s, _ = self.timed("dense")
            probes.append((time.perf_counter() - started, hybrid_s * 1000, dense_s * 1000))
            time.sleep(PROBE_INTERVAL_S)
        arr = np.asarray(probes)
        tail = arr[arr[:, 0] >= 0.75 * arr[-1, 0]]
        steady = float(np.median(tail[:, 1]))
        slow = arr[arr[:, 1] > 2.0 * steady]
        out = {
            "probes": len(probes),
            "hybrid_first5_ms": arr[:5, 1].tolist(),
            "dense_first5_ms": arr[:5, 2].tolist(),
            "hybrid_steady_ms": steady,
            "dense_steady_ms": float(np.median(tail[:, 2])),
            "hybrid_max_ms": float(arr[:, 1].max()),
            "time_to_fast_s": float(slow[-1, 0]) if len(slow) else 0.0,
        }
        log("probe", {k: v for k, v in out.items() if "first5" not in k})
        return out

    def flush(self) -> None:
        """Call ``flush()`` (line A needs it to leave its Python memtable), then probe again."""
        assert self.client is not None
        started = time.perf_counter()
        self.client.flush(COLLECTION)
        flush_s = time.perf_counter() - started
        self.result["flushed"] = {"flush_s": flush_s, **self.probe(self.s.settle_s / 2)}

    def latency(self) -> None:
        """Run every latency suite: warm-up, then ``runs`` runs of single queries."""
        suites: dict[str, Any] = {}
        self.result["latency"] = suites
        for name, (kind, expr) in SUITES.items():
            count = self.s.filtered_queries if expr else self.s.queries
            for _ in range(self.s.warmup):
                self.timed(kind, expr)
            runs, empty, outside = [], 0, 0
            for _ in range(self.s.runs):
                seconds = []
                for _ in range(count):
                    dt, hits = self.timed(kind, expr)
                    seconds.append(dt)
                    empty += not hits
                    outside += sum(not matches_filter(name, hit) for hit in hits)
                runs.append(mc.latency_stats(seconds))
            suites[name] = {
                "kind": kind,
                "filter": expr,
                "runs": runs,
                "empty_results": empty,
                "hits_outside_filter": outside,
            }
            log(
                name,
                "p50",
                [round(r["p50"], 1) for r in runs],
                "p99",
                [round(r["p99"], 1) for r in runs],
            )
            self.save()

    def concurrency(self) -> None:
        """Run each concurrency scenario on the shared client."""
        scenarios: dict[str, Any] = {}
        self.result["concurrency"] = scenarios
        for name, (searchers, insert) in SCENARIOS.items():
            scenarios[name] = self.scenario(searchers, insert)
            done = scenarios[name]
            log("conc", name, {"search": done["search"], "insert": done["insert_rows_per_s"]})
            self.save()

    def scenario(self, searchers: int, insert: bool) -> dict[str, Any]:
        """Run search threads, maybe an insert thread, and a heartbeat for ``conc_s`` seconds.

        Args:
            searchers: Number of hybrid-search threads.
            insert: Whether a thread inserts batches meanwhile.

        Returns:
            Overall and per-window statistics, heartbeat stalls, CPU use and errors.
        """
        stop = threading.Event()
        t0 = time.perf_counter()
        searches: list[tuple[float, float]] = []
        inserts: list[tuple[float, float]] = []
        stalls: list[float] = []
        errors: list[str] = []

        def guarded(work: Callable[[], tuple[float, list[tuple[float, float]]]]) -> None:
            while not stop.is_set():
                try:
                    dt, sink = work()
                    sink.append((time.perf_counter() - t0, dt))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.1)

        def search_once() -> tuple[float, list[tuple[float, float]]]:
            return self.timed("hybrid")[0], searches

        def insert_once() -> tuple[float, list[tuple[float, float]]]:
            assert self.client is not None
            rows = self.corpus.rows(next(self._next_row), self.batch, prefix="c")
            started = time.perf_counter()
            self.client.insert(COLLECTION, rows)
            return time.perf_counter() - started, inserts

        def heartbeat() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                time.sleep(HEARTBEAT_S)
                stalls.append(time.perf_counter() - started - HEARTBEAT_S)

        threads = [threading.Thread(target=heartbeat)]
        threads += [threading.Thread(target=guarded, args=(search_once,)) for _ in range(searchers)]
        if insert:
            threads.append(threading.Thread(target=guarded, args=(insert_once,)))
        cpu0 = mc.cpu_seconds(self.proc)
        for thread in threads:
            thread.start()
        time.sleep(self.s.conc_s)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - t0
        cpu1 = mc.cpu_seconds(self.proc)
        search_windows = window_stats(searches, elapsed, self.s.runs)
        insert_windows = window_stats(inserts, elapsed, self.s.runs)
        return {
            "search_threads": searchers,
            "insert": insert,
            "secs": elapsed,
            "search": mc.latency_stats([d for _, d in searches]),
            "search_qps": len(searches) / elapsed,
            "search_windows": search_windows if searchers else [],
            "insert_rows_per_s": self.batch * len(inserts) / elapsed if insert else None,
            "insert_windows_rows_per_s": [w["per_s"] * self.batch for w in insert_windows]
            if insert
            else [],
            "heartbeat_stall_ms": mc.latency_stats(stalls),
            "cpu_pct": {
                "self": 100 * (cpu1[0] - cpu0[0]) / elapsed,
                "children": 100 * (cpu1[1] - cpu0[1]) / elapsed,
            },
            "errors": len(errors),
            "error_samples": errors[:3],
        }

    def close(self) -> None:
        """Record rows, RSS and size; close the client and stop the engine."""
        assert self.client is not None
        self.result["end"] = {"rows": count_rows(self.client), "rss": mc.rss_mb(self.proc)}
        started = time.perf_counter()
        self.client.close()
        self.client = None
        self.result["end"]["close_s"] = time.perf_counter() - started
        self.result["end"]["release_s"] = release_engine(self.db)
        time.sleep(1.0)
        self.result["end"]["db_bytes"] = mc.disk_bytes(self.workdir)
        log("end", self.result["end"])

    def reopen(self) -> None:
        """Open the database ``runs`` times, each in a fresh process of this interpreter."""
        texts = self.corpus.text_queries(REOPEN_QUERIES, self.cfg.seed + 2)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "reopen-probe",
            "--line",
            self.cfg.line,
            "--db",
            str(self.db),
            "--index",
            self.cfg.index,
            "--n",
            str(self.s.n),
            "--seed",
            str(self.cfg.seed),
            "--texts",
            json.dumps(texts),
        ]
        probes: list[dict[str, Any]] = []
        self.result["reopen"] = probes
        for _ in range(self.s.runs):
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=REOPEN_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"reopen probe failed: {done.stderr[-1500:]}")
            probes.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log("reopen", probes[-1])
            self.save()

    def cleanup(self) -> None:
        """Close what is still open and delete the temporary database directory."""
        if self.client is not None:
            try:
                self.client.close()
                release_engine(self.db)
            except Exception as exc:
                log("cleanup:", exc)
            self.client = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def matches_filter(suite: str, hit: Any) -> bool:
    """Return whether a hit satisfies the filter of ``suite`` (always true when unfiltered)."""
    entity = hit["entity"]
    if suite == "hybrid_path_like":
        return str(entity["path"]).startswith(PATH_PREFIX)
    if suite == "hybrid_lang_in":
        return entity["language"] == "python"
    return True


def reopen_probe(args: argparse.Namespace) -> int:
    """Fresh process: open the database, load, search; print one JSON line.

    Args:
        args: ``--line``, ``--db``, ``--index``, ``--n``, ``--seed``, ``--texts``.

    Returns:
        The exit status.
    """
    check_line(args.line)
    started = time.perf_counter()
    from pymilvus import MilvusClient

    out: dict[str, float] = {"import_s": time.perf_counter() - started}
    vectors = mc.dense_queries(args.n, REOPEN_QUERIES, args.seed + 2)
    texts: list[str] = json.loads(args.texts)
    opened = time.perf_counter()
    client = MilvusClient(args.db)
    out["client_s"] = time.perf_counter() - opened
    started = time.perf_counter()
    client.load_collection(COLLECTION)  # line A refuses to search a released collection
    out["load_s"] = time.perf_counter() - started
    search = Searcher(client, args.index)
    seconds = []
    for i in range(REOPEN_QUERIES):
        started = time.perf_counter()
        search.hybrid(vectors[i].tolist(), texts[i % len(texts)])
        seconds.append(time.perf_counter() - started)
        if i == 0:
            out["open_to_first_result_s"] = time.perf_counter() - opened
    out["first_hybrid_s"] = seconds[0]
    out["next_hybrid_ms_median"] = statistics.median(seconds[1:]) * 1000
    rss = mc.rss_mb(psutil.Process())
    out["rss_self_mb"], out["rss_children_mb"] = rss["self_mb"], rss["children_mb"]
    client.close()
    release_engine(Path(args.db))
    print(json.dumps(out))
    return 0


# --- summary --------------------------------------------------------------------------------


def num(value: float) -> str:
    """Format a number with precision that suits its size."""
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if size >= 10 else f"{value:.2f}"


def spread(values: Sequence[float | None]) -> str:
    """Format ``median (min/max)`` of the non-missing values."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return num(present[0])
    return f"{num(statistics.median(present))} ({num(min(present))}/{num(max(present))})"


def pair(a: float, b: float) -> str:
    """Format two numbers as ``a / b``."""
    return f"{num(a)} / {num(b)}"


Cell = Callable[[dict[str, Any]], str]


def latency_rows() -> list[tuple[str, Cell]]:
    """Rows for every latency suite and percentile."""
    labels = {
        "dense": "dense",
        "bm25": "BM25",
        "hybrid": "hybrid (RRF)",
        "hybrid_path_like": f'hybrid + path like "{PATH_PREFIX}%"',
        "hybrid_lang_in": "hybrid + language in [python]",
    }
    rows: list[tuple[str, Cell]] = []
    for suite, label in labels.items():
        for p in ("p50", "p95", "p99"):
            rows.append(
                (
                    f"{label} {p} ms",
                    lambda r, s=suite, p=p: spread([x[p] for x in r["latency"][s]["runs"]]),
                )
            )
    return rows


def conc(r: dict[str, Any], scenario: str) -> dict[str, Any]:
    """Return one concurrency scenario of a result."""
    return r["concurrency"][scenario]


def window(r: dict[str, Any], scenario: str, key: str) -> str:
    """Median (min/max) of ``key`` over a scenario's search windows."""
    return spread([w.get(key) for w in conc(r, scenario)["search_windows"]])


def summary_rows() -> list[tuple[str, Cell]]:
    """The comparison table: (label, cell function) per row."""
    mix = "2_search+1_insert"
    return [
        (
            "pymilvus / milvus-lite",
            lambda r: f"{r['versions']['pymilvus']} / {r['versions']['milvus-lite']}",
        ),
        ("rows inserted / at end", lambda r: f"{r['n']} / {r['end']['rows']}"),
        (
            "corpus pieces (fingerprint)",
            lambda r: f"{r['corpus']['pieces']} ({r['corpus']['fingerprint'][:8]})",
        ),
        ("runs per metric", lambda r: str(r["settings"]["runs"])),
        ("insert rows/s (fifths of the load)", lambda r: spread(r["insert"]["fifths_rows_per_s"])),
        (
            "insert batch ms p50 / max",
            lambda r: pair(r["insert"]["batch_ms_p50"], r["insert"]["batch_ms_max"]),
        ),
        (
            "unflushed: hybrid ms, first 5 probes",
            lambda r: spread(r["unflushed"]["hybrid_first5_ms"]),
        ),
        (
            "unflushed: dense ms, first 5 probes",
            lambda r: spread(r["unflushed"]["dense_first5_ms"]),
        ),
        ("unflushed: hybrid ms, steady", lambda r: num(r["unflushed"]["hybrid_steady_ms"])),
        ("flush() s", lambda r: num(r["flushed"]["flush_s"])),
        (
            "after flush: hybrid ms, first 5 probes",
            lambda r: spread(r["flushed"]["hybrid_first5_ms"]),
        ),
        ("after flush: s until hybrid is fast", lambda r: num(r["flushed"]["time_to_fast_s"])),
        *latency_rows(),
        (
            "filtered hybrids: hits outside filter",
            lambda r: str(
                sum(
                    r["latency"][s]["hits_outside_filter"]
                    for s in ("hybrid_path_like", "hybrid_lang_in")
                )
            ),
        ),
        ("conc 1 search: hybrid qps", lambda r: window(r, "1_search", "per_s")),
        ("conc 2 searches: hybrid qps", lambda r: window(r, "2_search", "per_s")),
        ("conc 2 searches: hybrid p50 ms", lambda r: window(r, "2_search", "p50")),
        ("conc 2 searches + insert: hybrid p50 ms", lambda r: window(r, mix, "p50")),
        ("conc 2 searches + insert: hybrid p99 ms", lambda r: window(r, mix, "p99")),
        ("conc 2 searches + insert: hybrid qps", lambda r: window(r, mix, "per_s")),
        (
            "conc insert only: rows/s",
            lambda r: spread(conc(r, "insert_only")["insert_windows_rows_per_s"]),
        ),
        (
            "conc 2 searches + insert: insert rows/s",
            lambda r: spread(conc(r, mix)["insert_windows_rows_per_s"]),
        ),
        (
            "conc 2 searches + insert: heartbeat stall p99 / max ms",
            lambda r: pair(
                conc(r, mix)["heartbeat_stall_ms"]["p99"], conc(r, mix)["heartbeat_stall_ms"]["max"]
            ),
        ),
        (
            "conc 2 searches + insert: CPU % python / child",
            lambda r: pair(conc(r, mix)["cpu_pct"]["self"], conc(r, mix)["cpu_pct"]["children"]),
        ),
        (
            "reopen: open -> first hybrid s",
            lambda r: spread([o["open_to_first_result_s"] for o in r["reopen"]]),
        ),
        ("reopen: load_collection s", lambda r: spread([o["load_s"] for o in r["reopen"]])),
        (
            "reopen: hybrid ms after open",
            lambda r: spread([o["next_hybrid_ms_median"] for o in r["reopen"]]),
        ),
        (
            "reopen: RSS MB python / child",
            lambda r: (
                f"{spread([o['rss_self_mb'] for o in r['reopen']])} / "
                f"{spread([o['rss_children_mb'] for o in r['reopen']])}"
            ),
        ),
        (
            "RSS after insert MB python / child",
            lambda r: pair(r["rss_after_insert"]["self_mb"], r["rss_after_insert"]["children_mb"]),
        ),
        (
            "RSS end of run MB python / child",
            lambda r: pair(r["end"]["rss"]["self_mb"], r["end"]["rss"]["children_mb"]),
        ),
        ("DB size on disk MB", lambda r: num(r["end"]["db_bytes"] / 2**20)),
        ("loadavg start / end", lambda r: pair(r["loadavg_start"][0], r["loadavg_end"][0])),
        ("run wall time s", lambda r: num(r["wall_s"])),
        ("errors", lambda r: str(len(r["errors"]))),
    ]


def size_label(n: int) -> str:
    """Short row count: ``20k`` for 20,000, ``500`` for 500."""
    return f"{n // 1000}k" if n >= 1000 else str(n)


def column_title(r: dict[str, Any]) -> str:
    """Column header of one result file."""
    return f"{r['line']} {size_label(r['n'])} {r['index']}" + (" quick" if r.get("quick") else "")


def build_table(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Return the table as rows of cells, header first."""
    table = [["metric", *(column_title(r) for r in results)]]
    for label, cell in summary_rows():
        row = [label]
        for r in results:
            try:
                row.append(cell(r))
            except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError):
                row.append("n/a")
        table.append(row)
    return table


def as_text(table: list[list[str]]) -> str:
    """Render the table as aligned plain text."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_markdown(table: list[list[str]]) -> str:
    """Render the table as a markdown table."""
    lines = ["| " + " | ".join(row) + " |" for row in table]
    lines.insert(1, "|" + "---|" * len(table[0]))
    return "\n".join(lines)


def summarize(args: argparse.Namespace) -> int:
    """Print the comparison table of result files; optionally write it as markdown.

    Args:
        args: ``files`` and ``--markdown``.

    Returns:
        The exit status.
    """
    results = [json.loads(Path(f).read_text()) for f in args.files]
    if not results:
        print("no result files given", file=sys.stderr)
        return 2
    table = build_table(results)
    note = "Median over runs (min/max); 'first 5 probes' are five single searches."
    few = [column_title(r) for r in results if r["settings"]["runs"] < 5]
    if few:
        note += f" Fewer than 5 runs, not for quoting: {', '.join(few)}."
    print(as_text(table))
    print(f"\n{note}")
    if args.markdown:
        sources = ", ".join(f"`{Path(f).name}`" for f in args.files)
        args.markdown.write_text(f"{as_markdown(table)}\n\n{note} Files: {sources}.\n")
        print(f"markdown table written to {args.markdown}")
    return 0


# --- command line ---------------------------------------------------------------------------


def resolve(args: argparse.Namespace) -> tuple[RunConfig, Settings]:
    """Turn ``run`` arguments into a config and settings (``--quick`` presets, then flags)."""
    preset = QUICK if args.quick else FULL
    overrides = {
        f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name) is not None
    }
    settings = replace(preset, **overrides)
    if settings.n < 10 or settings.runs < 1:
        raise SystemExit("--n must be >= 10 and --runs >= 1")
    db_dir = args.db_dir.resolve()
    if db_dir == REPO_DIR or REPO_DIR in db_dir.parents:
        raise SystemExit(f"--db-dir must be outside the repository ({REPO_DIR})")
    db_dir.mkdir(parents=True, exist_ok=True)
    name = (
        f"milvus_quick_{args.line}.json"
        if args.quick
        else f"milvus_{args.line}_{size_label(settings.n)}.json"
    )
    cfg = RunConfig(
        line=args.line,
        index=args.index or LINES[args.line].dense_index,
        quick=args.quick,
        seed=args.seed,
        src=(args.src or mc.default_source()),
        out=args.out or RESULTS_DIR / name,
        db_dir=db_dir,
    )
    return cfg, settings


def run(args: argparse.Namespace) -> int:
    """Run the benchmark for one line with the current interpreter."""
    versions = check_line(args.line)
    cfg, settings = resolve(args)
    log(
        f"line {cfg.line}: pymilvus {versions['pymilvus']}, milvus-lite "
        f"{versions['milvus-lite']}, index {cfg.index}, {settings}"
    )
    bench = Bench(cfg, settings, versions)
    log("corpus", bench.result["corpus"])
    bench.run()
    log(
        f"wrote {cfg.out} in {bench.result['wall_s']:.0f} s, {len(bench.result['errors'])} error(s)"
    )
    return 1 if bench.result["errors"] else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="bench/milvus_lines.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="benchmark one line with this interpreter")
    p_run.add_argument("--line", choices=sorted(LINES), required=True)
    p_run.add_argument(
        "--quick", action="store_true", help=f"small and short: {QUICK.n} rows, {QUICK.runs} runs"
    )
    p_run.add_argument("--out", type=Path, help="result JSON (default: bench/results/...)")
    p_run.add_argument(
        "--index",
        choices=sorted(DENSE_INDEX),
        help="dense index (default: HNSW on line A, AUTOINDEX on line B)",
    )
    p_run.add_argument("--src", type=Path, help="directory of .py files (default: site-packages)")
    p_run.add_argument("--seed", type=int, default=13)
    p_run.add_argument(
        "--db-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="parent of the temporary database directory (default: %(default)s)",
    )
    for f in fields(Settings):
        p_run.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(FULL, f.name)),
            help=f"default {getattr(FULL, f.name)} ({getattr(QUICK, f.name)} with --quick)",
        )

    p_sum = sub.add_parser("summarize", help="compare result files")
    p_sum.add_argument("files", nargs="+", type=Path)
    p_sum.add_argument("--markdown", type=Path, help="also write the table to this file")

    p_probe = sub.add_parser("reopen-probe", help="internal: one fresh-process reopen")
    p_probe.add_argument("--line", choices=sorted(LINES), required=True)
    p_probe.add_argument("--db", required=True)
    p_probe.add_argument("--index", choices=sorted(DENSE_INDEX), required=True)
    p_probe.add_argument("--n", type=int, required=True)
    p_probe.add_argument("--seed", type=int, required=True)
    p_probe.add_argument("--texts", required=True, help="JSON list of BM25 queries")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    commands = {"run": run, "summarize": summarize, "reopen-probe": reopen_probe}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
