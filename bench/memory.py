"""Memory: the daemon's resting footprint and how well the memory budget holds while indexing.

* **idle**: RSS of the daemon + its Milvus Lite child with three indexed repositories
  (generated, cached in ``bench/.cache/perf/<model>/memory/``; indexed once by
  ``bench.standin``, stand-in vectors), sampled every 0.5 s for a while after start (every
  collection loaded), then again at rest — once the daemon has released the collections
  nobody used (``daemon.release_idle_s``, default 60 s) — over ``runs`` daemon starts; then
  what a search of a released repository costs (it loads it) and the same search again, and
  how long a new file in a released repository takes to be found (its write loads it).
* **budget**: the daemon restarted with ``CODECTX_MEMORY_BUDGET_MB`` = idle × 1.6 indexes a
  fourth repository of never-seen content; RSS traced every 0.5 s, with the status fields
  ``memory.state / pauses / paused_s`` every 2 s. The same indexing without a budget (default
  2048 MB, another never-seen repository of the same size) is the baseline of the same run:
  its peak RSS and indexing time show what the budget costs.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.bigcorpus import generate_tree
from bench.run import (
    Daemon,
    RssSampler,
    SuiteOptions,
    log,
    perf_cache,
    prepare_index,
    print_table,
    rss_of_tree,
    short_tmp,
    wait_until,
)
from bench.stats import fmt, fmt_mmm, median_min_max, ratio, summarize

SUITE = "memory"
#: The low budget, fixed (issue 12's row; BENCH_MEMORY_BUDGET_MB overrides it).
BUDGET_MB = int(os.environ.get("BENCH_MEMORY_BUDGET_MB", "600"))
TOLERANCE = 0.10  # the target: RSS ≤ budget + 10 %
#: Daemon + Milvus at rest, after a restart and right after indexing (issue 12's row).
REST_TARGET_MB = 300.0
#: How long after the last file is embedded the RSS with every collection loaded is read (the
#: daemon gives memory back when its second phase runs out of work).
SETTLE_S = 5.0
#: The longest wait for the daemon to release idle collections (60 s by default for these).
RELEASE_LIMIT_S = 600.0
REST_SAMPLE_S = 5.0


def _sizes(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"repo_files": 15, "new_files": 40, "idle_s": 3.0, "trace_limit_s": 45.0}
    # 400 never-seen files: ~1,100 chunks (4+ indexing groups) embedded by the real model,
    # minutes per run on 2 cores.
    return {"repo_files": 400, "new_files": 400, "idle_s": 15.0, "trace_limit_s": 1800.0}


def indexed_repos(base: Path, files: int) -> list[Path]:
    """Three generated repositories (different seeds), cached under ``base``."""
    return [generate_tree(base / f"repo{i}", files, 100 + i).root for i in range(3)]


def wait_released(daemon: Daemon, roots: list[Path], limit_s: float) -> float | None:
    """Until every repository's collection has left the engine's memory (the daemon releases
    a collection unused for ``daemon.release_idle_s``, 60 s by default); seconds waited. None
    for a daemon that never releases (older than the ``loaded`` field): nothing to wait for."""
    if "loaded" not in daemon.repo(roots[0]):
        return None
    started = time.monotonic()
    while any(daemon.repo(root)["loaded"] for root in roots):
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"collections still loaded after {limit_s:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def first_searches(daemon: Daemon, roots: list[Path]) -> list[dict[str, float]]:
    """Per repository, one search right after its collection was released (it loads it) and
    the same search again: what coming back to a resting repository costs."""
    out = []
    for root in roots:
        params = {"query": "parse the configuration file", "repos": [str(root)], "limit": 10}
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            daemon.call("search", params)
            timings.append(round((time.perf_counter() - started) * 1000, 1))
        out.append({"first_ms": timings[0], "again_ms": timings[1]})
    return out


def edit_after_release(daemon: Daemon, root: Path) -> float:
    """A new file in a released repository: milliseconds until a search finds it (the write
    loads the collection first). The file is removed again (and the removal waited for)."""
    probe = root / "zz_rest_probe.py"
    name = f"rest_probe_{time.time_ns()}"
    params = {"query": name, "repos": [str(root)], "limit": 1, "mode": "lexical"}

    def found() -> bool:
        hits = daemon.call("search", params)["results"]
        return bool(hits) and hits[0]["path"] == probe.name

    started = time.perf_counter()
    probe.write_text(f"def {name}():\n    return 1\n")
    try:
        wait_until(found, 60, 0.01, what="the probe found")
        return round((time.perf_counter() - started) * 1000, 1)
    finally:
        probe.unlink()
        wait_until(lambda: not found(), 60, 0.05, what="the probe gone")


def sample_rss(daemon: Daemon, sample_s: float) -> dict[str, Any]:
    with RssSampler(daemon.pid) as sampler:
        time.sleep(sample_s)
    own = [s[1] for s in sampler.samples]
    kids = [s[2] for s in sampler.samples]
    return {
        "daemon_mb": round(statistics.median(own), 1),
        "children_mb": round(statistics.median(kids), 1),
        "total_mb": round(statistics.median([a + b for a, b in zip(own, kids, strict=True)]), 1),
        "samples": len(own),
    }


def idle_rss(data_dir: Path, roots: list[Path], sample_s: float) -> dict[str, Any]:
    """Start the daemon, wait until every repository is fresh and sample its RSS (collections
    loaded); then wait until the idle collections are released and sample again (at rest)."""
    with short_tmp() as run_dir, Daemon(data_dir, run_dir / "r") as daemon:
        daemon.start()
        for root in roots:
            daemon.wait_fresh(root, 600, 0.5)
        time.sleep(1.0)
        loaded = sample_rss(daemon, sample_s)
        released_after_s = wait_released(daemon, roots, RELEASE_LIMIT_S)
        rest = sample_rss(daemon, sample_s)
        memory = daemon.call("status")["daemon"]["memory"]
        # The last repository stays released for the edit: the searches load the others.
        searches = first_searches(daemon, roots[:-1])
        edit_ms = edit_after_release(daemon, roots[-1])
    return {
        **rest,
        "status_rss_mb": memory["rss_mb"],
        "loaded": loaded,
        "released_after_s": released_after_s,
        "first_searches": searches,
        "edit_searchable_ms": edit_ms,
    }


def trace_indexing(
    data_dir: Path, roots: list[Path], new_root: Path, budget_mb: int | None, limit_s: float
) -> dict[str, Any]:
    """Index ``new_root`` (with the other repositories loaded) under ``budget_mb`` (None: the
    default), tracing RSS every 0.5 s and the status memory fields every 2 s."""
    env = {"CODECTX_MEMORY_BUDGET_MB": str(budget_mb)} if budget_mb else {}
    status_trace: list[dict[str, Any]] = []
    with short_tmp() as run_dir, Daemon(data_dir, run_dir / "r", **env) as daemon:
        daemon.start()
        for root in roots:
            daemon.wait_fresh(root, 600, 0.5)
        stop = threading.Event()

        def poll_status() -> None:
            started = time.monotonic()
            while not stop.wait(2.0):
                memory = daemon.call("status")["daemon"]["memory"]
                status_trace.append({"t": round(time.monotonic() - started, 1), **memory})

        poller = threading.Thread(target=poll_status, daemon=True)
        with RssSampler(daemon.pid) as sampler:
            started = time.perf_counter()
            daemon.call("add", {"path": str(new_root)})
            poller.start()
            finished = True
            try:
                daemon.wait_fresh(new_root, limit_s, 0.5)
            except TimeoutError:
                finished = False
            seconds = time.perf_counter() - started
            stop.set()
            poller.join(10)
            time.sleep(SETTLE_S)
            own, kids = rss_of_tree(daemon.pid)
            loaded_mb = round((own + kids) / 2**20, 1)
        info = daemon.repo(new_root)
        memory = daemon.call("status")["daemon"]["memory"]
        released_after_s = wait_released(daemon, [*roots, new_root], RELEASE_LIMIT_S)
        rest = sample_rss(daemon, REST_SAMPLE_S)
        daemon.call("remove", {"path": str(new_root)}, timeout_s=300)
    totals = [own + kids for _, own, kids in sampler.samples]
    limit = budget_mb or memory["budget_mb"]
    return {
        "budget_mb": limit,
        "finished": finished,
        "seconds": round(seconds, 1),
        "files_indexed": info["files_indexed"],
        "chunks": info["chunks"],
        "rss_mb": summarize(totals, 1),
        "peak_mb": max(totals, default=0.0),
        "peak_over_budget": ratio(max(totals, default=0.0), limit, 3),
        "share_over_budget": round(sum(1 for t in totals if t > limit) / max(len(totals), 1), 3),
        "share_over_tolerance": round(
            sum(1 for t in totals if t > limit * (1 + TOLERANCE)) / max(len(totals), 1), 3
        ),
        "loaded_mb": loaded_mb,  # SETTLE_S after the last file was embedded
        "rest_mb": rest["total_mb"],  # then, once the idle collections were released
        "rest": rest,
        "released_after_s": released_after_s,
        "memory_status": memory,
        "status_trace": status_trace,
        "states_seen": dict(Counter(item["state"] for item in status_trace)),
        "status_peak_rss_mb": max((item["peak_rss_mb"] for item in status_trace), default=None),
        "rss_trace": [list(s) for s in sampler.samples],
    }


def run(options: SuiteOptions) -> dict[str, Any]:
    """Run the memory suite; returns the JSON-able results."""
    sizes = _sizes(options.smoke)
    base = perf_cache(options) / ("memory-smoke" if options.smoke else "memory")
    roots = indexed_repos(base, sizes["repo_files"])
    data_dir = base / "data"
    log(f"memory: indexing 3 × {sizes['repo_files']} files (cached after the first run)")
    prepared = prepare_index(data_dir, roots, 4 * 3600)
    idle_runs = []
    for number in range(1 if options.smoke else options.runs):
        log(f"idle RSS {number + 1}")
        idle_runs.append(idle_rss(data_dir, roots, sizes["idle_s"]))
    idle_total = statistics.median(r["total_mb"] for r in idle_runs)
    budget = BUDGET_MB
    results: dict[str, Any] = {
        "sizes": sizes,
        "prepared": prepared,
        "idle": {
            "runs": idle_runs,
            **{
                k: median_min_max([r[k] for r in idle_runs])
                for k in ("daemon_mb", "children_mb", "total_mb")
            },
            "loaded_total_mb": median_min_max([r["loaded"]["total_mb"] for r in idle_runs]),
            "released_after_s": median_min_max([r["released_after_s"] for r in idle_runs]),
            "first_search_ms": median_min_max(
                [s["first_ms"] for r in idle_runs for s in r["first_searches"]]
            ),
            "again_search_ms": median_min_max(
                [s["again_ms"] for r in idle_runs for s in r["first_searches"]]
            ),
            "edit_searchable_ms": median_min_max([r["edit_searchable_ms"] for r in idle_runs]),
        },
        "budget_mb": budget,
    }
    with short_tmp("cxbm") as tmp:
        seed = time.time_ns() % 1_000_000_007
        for name, limit, tree_seed in (("budget", budget, seed), ("no_budget", None, seed + 1)):
            new_root = generate_tree(tmp / name, sizes["new_files"], tree_seed).root
            log(f"indexing {sizes['new_files']} new files, budget {limit or 'default'} MB")
            results[name] = trace_indexing(data_dir, roots, new_root, limit, sizes["trace_limit_s"])
    peak = results["budget"]["peak_mb"]
    low = results["budget"]
    rest = results["no_budget"]["rest_mb"]
    results["targets"] = {
        "rss_within_budget": {
            "target": f"≤ budget + {TOLERANCE:.0%}, finishes, never starved",
            "budget_mb": budget,
            "measured_peak_mb": peak,
            "finished": low["finished"],
            "starved": low["memory_status"]["starved"],
            "met": peak <= budget * (1 + TOLERANCE)
            and low["finished"]
            and not low["memory_status"]["starved"],
        },
        "idle_rss_mb": {
            "target": REST_TARGET_MB,
            "measured": idle_total,
            "met": idle_total <= REST_TARGET_MB,
        },
        "rest_after_indexing_mb": {
            "target": REST_TARGET_MB,
            "measured": rest,
            "met": rest <= REST_TARGET_MB,
        },
    }
    print_summary(results)
    return results


def print_summary(results: dict[str, Any]) -> None:
    """The suite's tables on stdout."""
    idle = results["idle"]
    print_table(
        "RSS at rest with 3 indexed repositories, MB (median (min–max) of starts)",
        ["daemon", "Milvus Lite child", "total", "total, collections loaded", "released after s"],
        [
            [
                fmt_mmm(idle["daemon_mb"]),
                fmt_mmm(idle["children_mb"]),
                fmt_mmm(idle["total_mb"]),
                fmt_mmm(idle["loaded_total_mb"]),
                fmt_mmm(idle["released_after_s"]),
            ]
        ],
    )
    print(
        f"  a search of a released repository: {fmt_mmm(idle['first_search_ms'])} ms "
        f"(loads it); the same search again {fmt_mmm(idle['again_search_ms'])} ms; a new "
        f"file in a released repository searchable after {fmt_mmm(idle['edit_searchable_ms'])} ms"
    )
    rows = []
    for name in ("budget", "no_budget"):
        item = results[name]
        memory = item["memory_status"]
        seen = ", ".join(f"{k} {v}" for k, v in item["states_seen"].items())
        rows.append(
            [
                name,
                item["budget_mb"],
                fmt(item["peak_mb"]),
                fmt(item["rss_mb"].get("p50")),
                fmt(item["peak_over_budget"], 2),
                f"{item['share_over_budget']:.1%}",
                seen or memory.get("state"),
                memory.get("pauses"),
                memory.get("paused_s"),
                fmt(item["seconds"]) + ("" if item["finished"] else " (limit)"),
            ]
        )
    print_table(
        "Indexing a new repository: RSS (daemon + child) vs budget",
        [
            "run",
            "budget MB",
            "peak MB",
            "p50 MB",
            "peak/budget",
            "samples over",
            "states seen (2 s polls)",
            "pauses",
            "paused s",
            "index s",
        ],
        rows,
    )
    target = results["targets"]["rss_within_budget"]
    print(
        f"\n  target RSS {target['target']} ({target['budget_mb']} MB): peak "
        f"{fmt(target['measured_peak_mb'])} MB → {'met' if target['met'] else 'NOT met'}"
    )
    for name in ("idle_rss_mb", "rest_after_indexing_mb"):
        item = results["targets"][name]
        print(
            f"  target {name} ≤ {item['target']:.0f}: {fmt(item['measured'])} MB → "
            f"{'met' if item['met'] else 'NOT met'}"
        )
