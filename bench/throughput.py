"""Indexing throughput: cold full index of the big corpus, warm restart, embedding alone.

* **cold full index** (once, cached in ``bench/.cache/perf/<model>/throughput/cold/``): the
  daemon indexes the ≥ 500k-line big corpus with an empty data dir. Both phases are timed
  from `add`: every file keyword-searchable (the first phase), then every chunk embedded by
  the local model (the second); the pipeline's chunks/s is the chunks embedded over the
  second phase's time. Also the first phase's split scan / parse / store
  (``last_report.full``) and peak RSS of the daemon + its Milvus Lite child (every 0.5 s).
* **pipeline with a warm embedding cache** (≥ 3 runs): a new data dir holding only the cold
  run's embedding cache — everything else (scan, parse, store, Milvus) is done for real.
* **warm restart** (5 runs): the daemon is stopped and started on the indexed 10,000-file
  generated repository (no change on disk): time from process start until the repository is
  fresh (searches say ``fresh``), and the daemon's start alone.
* **embedding alone** (5 runs): 512 real chunks of the big corpus (of the kinds the daemon
  embeds) through the local model (no cache), in this process, with the daemon's embedder,
  batching and default thread count: the model's own speed the pipeline is compared with;
  half the runs before the cold index, half after (the machine's load drifts).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from bench.bigcorpus import build_big_corpus, generate_tree, generated_repo_dir
from bench.run import (
    Daemon,
    RssSampler,
    SuiteOptions,
    log,
    perf_cache,
    prepare_index,
    print_table,
    run_env,
    settle_images,
    short_tmp,
)
from bench.stats import fmt, fmt_mmm, median_min_max, ratio

SUITE = "throughput"
TARGET_RESTART_S = 2.0
TARGET_KEYWORD_S = 60.0  # add → every file keyword-searchable, the big corpus
TARGET_EMBEDDED_S = 25 * 60.0  # add → every chunk embedded, the big corpus
TARGET_PIPELINE_RATIO = 0.9  # pipeline chunks/s ÷ embedding alone
RESTART_FILES = 10_000
RESTART_SEED = 7  # the freshness suite's repository: one index serves both
WARM_RUNS = 3
SMOKE_TREE_FILES = 20
EMBED_CHUNKS = 512
SMOKE_EMBED_CHUNKS = 16


# --- one full index ---------------------------------------------------------------------------


def index_once(root: Path, data_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Start a daemon on ``data_dir``, add ``root``, time both phases; the numbers."""
    with short_tmp() as run_dir, Daemon(data_dir, run_dir / "r") as daemon:
        start_s = daemon.start()
        with RssSampler(daemon.pid) as rss:
            started = time.perf_counter()
            daemon.call("add", {"path": str(root)})
            keyword_s = daemon.wait_keyword_ready(root, timeout_s, 0.1)
            daemon.wait_fresh(root, timeout_s, 0.5)
            wall = time.perf_counter() - started
        info = daemon.repo(root)
        status = daemon.call("status", {"repo": str(root)})
    full = (info["last_report"] or {}).get("full") or {}
    seconds = float(full.get("seconds") or wall)
    split = {k: full.get(f"{k}_s") for k in ("scan", "parse", "embed", "store")}
    accounted = sum(v for v in split.values() if v)
    embedding = status["daemon"]["embedding"]
    embedded = embedding["texts_embedded"] + embedding["cache_hits"]
    second_s = wall - keyword_s
    return {
        "wall_s": round(wall, 2),
        "keyword_s": round(keyword_s, 2),  # add → every file keyword-searchable
        "embedded_s": round(wall, 2),  # add → every chunk embedded
        "sync_s": round(seconds, 2),  # the first phase's full sync
        "daemon_start_s": round(start_s, 2),
        "files_indexed": info["files_indexed"],
        "files_read": full.get("files_read"),
        "chunks": info["chunks"],
        "chunks_written": full.get("chunks_written"),
        "chunks_embedded": embedded,
        "lexical_only": status["repos"][0].get("lexical_only", {}),
        "pipeline_chunks_per_s": round(embedded / second_s, 2) if second_s > 0 else None,
        "files_per_s": round((full.get("files_read") or 0) / wall, 2) if wall else None,
        "chunks_per_s": round(embedded / wall, 2) if wall else None,
        "split_s": split,
        "split_other_s": round(seconds - accounted, 2),
        "split_share": {k: round(v / seconds, 3) for k, v in split.items() if v and seconds},
        "peak_rss_mb": rss.peak_mb,
        "peak_rss_daemon_mb": max((s[1] for s in rss.samples), default=0.0),
        "peak_rss_children_mb": max((s[2] for s in rss.samples), default=0.0),
        "embedding": embedding,
        "memory": status["daemon"]["memory"],
    }


def cold_run(root: Path, base: Path, fresh: bool, timeout_s: float) -> dict[str, Any]:
    """The cold full index, cached in ``base/result.json`` (interrupted runs resume)."""
    result_file = base / "result.json"
    data_dir = base / "data"
    if fresh and base.exists():
        shutil.rmtree(base)
    if result_file.is_file():
        cached = json.loads(result_file.read_text())
        cached["cached"] = True
        return cached
    resumed = (data_dir / "embeddings.db").exists()
    log(
        f"cold index of {root}{' (resuming an interrupted run)' if resumed else ''}; "
        "this embeds every chunk"
    )
    result = index_once(root, data_dir, timeout_s)
    result.update(resumed=resumed, measured=time.strftime("%Y-%m-%d %H:%M:%S %z"), cached=False)
    base.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    return result


def warm_cache_runs(
    root: Path, cold_data: Path, runs: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Full index with only the cold run's embedding cache in a new data dir, ``runs`` times."""
    out = []
    for number in range(runs):
        with short_tmp("cxbw") as tmp:
            data_dir = tmp / "data"
            data_dir.mkdir()
            shutil.copy2(cold_data / "embeddings.db", data_dir / "embeddings.db")
            log(f"warm-cache index {number + 1}/{runs}")
            out.append(index_once(root, data_dir, timeout_s))
    return out


# --- warm restart -----------------------------------------------------------------------------


def restart_runs(
    root: Path, data_dir: Path, runs: int, timeout_s: float, standin: bool = False
) -> list[dict[str, Any]]:
    """Stop/start the daemon on an indexed repository ``runs`` times (after one warm-up start
    that makes sure the index is complete; with ``standin``, whatever is missing is indexed by
    `bench.standin` — stand-in vectors — instead of the model)."""
    with short_tmp() as run_dir:
        log(f"making sure {root} is indexed (cached after the first run)")
        if standin:
            prepare_index(data_dir, [root], timeout_s)
        else:
            with Daemon(data_dir, run_dir / "r") as daemon:
                daemon.start()
                daemon.call("add", {"path": str(root)})
                daemon.wait_fresh(root, timeout_s, 1.0)
        settle_images(data_dir, [root], timeout_s)
        out = []
        for _ in range(runs):
            with Daemon(data_dir, run_dir / "r") as daemon:
                start_s = daemon.start()
                fresh_s = daemon.wait_fresh(root, 600, 0.02)
                info = daemon.repo(root)
            full = (info["last_report"] or {}).get("full") or {}
            out.append(
                {
                    "daemon_start_s": round(start_s, 3),
                    "first_ping_s": round(daemon.ping_s or 0.0, 3),
                    "fresh_s": round(start_s + fresh_s, 3),
                    "files": info["files_indexed"],
                    "chunks": info["chunks"],
                    "files_read": full.get("files_read"),
                    "sync_s": full.get("seconds"),
                    "scan_s": full.get("scan_s"),
                }
            )
    return out


# --- embedding alone --------------------------------------------------------------------------


def sample_chunks(root: Path, count: int, seed: int = 3) -> list[str]:
    """``count`` embedding texts of real chunks the daemon embeds (its scanner, file kinds,
    splitter and text format), from files taken at random."""
    from codectxd.config import ScanSettings, SplitterSettings
    from codectxd.indexer import embedding_text
    from codectxd.scanner import Scanner
    from codectxd.splitter import Splitter

    scan = ScanSettings()
    splitter = Splitter(SplitterSettings())
    files = [f for f in Scanner(root, scan).scan().files if f.kind not in scan.lexical_only]
    random.Random(seed).shuffle(files)
    texts: list[str] = []
    for entry in files:
        text = (root / entry.path).read_text(errors="replace")
        for chunk in splitter.split(text, entry.language):
            texts.append(embedding_text(entry.path, chunk))
            if len(texts) >= count:
                return texts
    return texts


def embedding_runs(texts: list[str], runs: int) -> list[dict[str, float]]:
    """Embed ``texts`` (no cache) ``runs`` times with the daemon's default provider settings."""
    from codectxd.config import load_settings
    from codectxd.embeddings.base import create_provider
    from codectxd.embeddings.service import Embedder

    settings = load_settings({"CODECTX_CONFIG": "/nonexistent/codectx.toml", **run_env()})
    provider = create_provider(settings.embedding)
    embedder = Embedder(provider, None, batch_size=settings.embedding.batch_size)
    embedder.embed_texts(texts[:8])  # warm-up: first inference allocates
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        embedder.embed_texts(texts)
        seconds = time.perf_counter() - started
        out.append(
            {
                "seconds": round(seconds, 3),
                "chunks_per_s": round(len(texts) / seconds, 2),
                "chars_per_s": round(sum(map(len, texts)) / seconds),
            }
        )
    provider.close()
    return out


# --- the suite --------------------------------------------------------------------------------


def run(options: SuiteOptions) -> dict[str, Any]:
    """Run the throughput suite; returns the JSON-able results.

    Parts (``--skip PART``): ``cold`` (only when its result is not cached yet), ``warm``,
    ``restart-big`` (warm restart on the indexed big corpus), ``restart`` (the 10,000-file
    repository), ``embed``.
    """
    smoke, skip = options.smoke, options.skip
    if smoke:
        tree = generate_tree(
            perf_cache(options) / "throughput-smoke" / "tree", SMOKE_TREE_FILES, 21
        )
        base = perf_cache(options) / "throughput-smoke" / "cold"
        shutil.rmtree(base, ignore_errors=True)  # tiny: always really cold
    else:
        tree = build_big_corpus(options.fresh)
        base = perf_cache(options) / "throughput" / "cold"
    timeout = 600 if smoke else 12 * 3600
    results: dict[str, Any] = {"corpus": tree.as_dict(), "skipped": sorted(skip)}
    texts: list[str] = []
    embeds: list[dict[str, float]] = []
    if "embed" not in skip:
        texts = sample_chunks(tree.root, SMOKE_EMBED_CHUNKS if smoke else EMBED_CHUNKS)
        # Half the embedding-alone runs before the cold index and half after: the ratio's
        # baseline then spans the same stretch of this shared machine's load.
        embeds += embedding_runs(texts, options.runs // 2)
    if "cold" not in skip or (base / "result.json").is_file():
        results["cold"] = cold_run(tree.root, base, options.fresh, timeout)
    if "cold" in results and "warm" not in skip:
        warm = warm_cache_runs(tree.root, base / "data", 1 if smoke else WARM_RUNS, timeout)
        results["warm_cache"] = {"runs": warm, **_aggregate(warm)}
    if "cold" in results and "restart-big" not in skip:
        runs = restart_runs(tree.root, base / "data", options.runs, timeout)
        results["warm_restart_big"] = _restart_summary(tree.files, runs)
    if "restart" not in skip:
        files = 30 if smoke else RESTART_FILES
        repo = generated_repo_dir(perf_cache(options), files, RESTART_SEED)
        restart_tree = generate_tree(repo / "tree", files, RESTART_SEED)
        runs = restart_runs(restart_tree.root, repo / "data", options.runs, timeout, standin=True)
        results["warm_restart"] = _restart_summary(restart_tree.files, runs)
    if "embed" not in skip:
        embeds += embedding_runs(texts, options.runs - len(embeds))
        results["embedding_only"] = {
            "chunks": len(texts),
            "avg_chars": round(sum(map(len, texts)) / max(len(texts), 1)),
            "runs": embeds,
            "chunks_per_s": median_min_max([r["chunks_per_s"] for r in embeds]),
        }
    restart = results.get("warm_restart")
    results["targets"] = {
        "warm_restart_s": {
            "target": TARGET_RESTART_S,
            "files": restart["files"] if restart else RESTART_FILES,
            "measured": restart["fresh_s"].get("median") if restart else None,
            "met": bool(restart) and (restart["fresh_s"].get("median") or 1e9) < TARGET_RESTART_S,
        }
    }
    cold, embed = results.get("cold"), results.get("embedding_only")
    if cold and not smoke and not cold.get("cached"):
        # Against the fastest embedding-alone run: on this shared machine the slow ones were
        # the machine, not the model (one run: 23.6, 36.7, 38.6, 22.9, 29.6 chunks/s), and the
        # conservative baseline is the model's own best.
        alone = embed["chunks_per_s"].get("max") if embed else None
        pipeline_ratio = ratio(cold.get("pipeline_chunks_per_s"), alone)
        results["targets"].update(
            keyword_s={"target": TARGET_KEYWORD_S, "measured": cold["keyword_s"],
                       "met": cold["keyword_s"] < TARGET_KEYWORD_S},
            embedded_s={"target": TARGET_EMBEDDED_S, "measured": cold["embedded_s"],
                        "met": cold["embedded_s"] <= TARGET_EMBEDDED_S},
            pipeline_ratio={"target": TARGET_PIPELINE_RATIO, "measured": pipeline_ratio,
                            "met": (pipeline_ratio or 0) >= TARGET_PIPELINE_RATIO},
        )  # fmt: skip
    print_summary(results)
    return results


def _restart_summary(files: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "files": files,
        "runs": runs,
        "fresh_s": median_min_max([r["fresh_s"] for r in runs]),
        "daemon_start_s": median_min_max([r["daemon_start_s"] for r in runs]),
        "chunks": runs[0]["chunks"] if runs else None,
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("sync_s", "keyword_s", "embedded_s", "files_per_s", "chunks_per_s", "peak_rss_mb")
    out: dict[str, Any] = {
        k: median_min_max([r[k] for r in runs if r.get(k) is not None]) for k in keys
    }
    out["split_s"] = {
        k: median_min_max([r["split_s"][k] for r in runs if r["split_s"].get(k) is not None])
        for k in ("scan", "parse", "embed", "store")
    }
    return out


def _index_row(label: str, item: dict[str, Any]) -> list[str]:
    return [
        label,
        fmt(item["sync_s"]),
        fmt(item["files_per_s"]),
        fmt(item["chunks_per_s"]),
        " / ".join(fmt(item["split_s"][k]) for k in ("scan", "parse", "embed", "store")),
        fmt(item["peak_rss_mb"], 0),
    ]


def print_summary(results: dict[str, Any]) -> None:
    """The suite's tables on stdout."""
    corpus = results["corpus"]
    cold, warm = results.get("cold"), results.get("warm_cache")
    rows = []
    if cold:
        rows.append(
            _index_row(
                "cold (every chunk embedded)"
                + (" [cached result]" if cold.get("cached") else "")
                + (" [resumed]" if cold.get("resumed") else ""),
                cold,
            )
        )
    if warm:
        rows.append(
            [
                f"warm embedding cache ({len(warm['runs'])} runs)",
                fmt_mmm(warm["sync_s"]),
                fmt_mmm(warm["files_per_s"]),
                fmt_mmm(warm["chunks_per_s"]),
                " / ".join(
                    fmt(warm["split_s"][k].get("median"))
                    for k in ("scan", "parse", "embed", "store")
                ),
                fmt_mmm(warm["peak_rss_mb"], 0),
            ]
        )
    if rows:
        print_table(
            f"Full index of {corpus['files']} files, {corpus['loc']} non-blank lines"
            + (f", {cold['chunks']} chunks" if cold else ""),
            [
                "run",
                "seconds",
                "files/s",
                "chunks/s",
                "scan / parse / embed / store s",
                "peak RSS MB",
            ],
            rows,
        )
    other = []
    for key in ("warm_restart", "warm_restart_big"):
        restart = results.get(key)
        if restart:
            other += [
                [
                    f"restart → fresh, {restart['files']} files, {restart['chunks']} chunks, s",
                    fmt_mmm(restart["fresh_s"], 2),
                ],
                ["  of which daemon start → answers, s", fmt_mmm(restart["daemon_start_s"], 2)],
            ]
    embed = results.get("embedding_only")
    if embed:
        other.append(
            [
                f"embedding alone, {embed['chunks']} chunks of ~{embed['avg_chars']} chars, "
                "chunks/s",
                fmt_mmm(embed["chunks_per_s"]),
            ]
        )
        if cold and cold.get("pipeline_chunks_per_s"):
            other.append(
                [
                    "second phase (pipeline) chunks/s ÷ fastest embedding-alone run",
                    fmt(ratio(cold["pipeline_chunks_per_s"], embed["chunks_per_s"].get("max")), 2),
                ]
            )
    if cold and "keyword_s" in cold:
        other = [
            ["cold: add → every file keyword-searchable, s", fmt(cold["keyword_s"])],
            ["cold: add → every chunk embedded, s", fmt(cold["embedded_s"])],
            ["cold: second phase chunks/s", fmt(cold["pipeline_chunks_per_s"])],
            *other,
        ]
    if other:
        print_table(
            "Warm restart and embedding alone (median (min–max) of runs)",
            ["measure", "value"],
            other,
        )
    for name, target in results["targets"].items():
        print(
            f"  target {name}: {fmt(target['measured'], 2)} (target {target['target']}) → "
            f"{'met' if target['met'] else 'NOT met'}"
        )
