"""The first index: what a new user meets in the minutes after `add`.

* **this repository** (a clean copy of the measured commit's tracked files, `git archive`),
  each run on an empty data dir (nothing cached, every chunk embedded by the real model):
  - the README's first command without `pip install`, as processes: `codectxd start --detach`,
    `codectx-client add . --wait`, `codectx-client search "<the README's query>"` — seconds
    from the start until the search has printed its results;
  - through the socket: `add` → every file keyword-searchable, `add` → every chunk embedded,
    and searches sent back to back from the instant of `add` until everything is embedded:
    error replies (the target is none; that what is stored is found is the test suite's
    `tests/test_first_index.py`);
  - the chunks embedded for the repository's data files (`bench/results/*.json`...: none).
* **a 2,000-file generated repository**: the same search loop from `add` until fresh and until
  embedded, error replies counted.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from bench.bigcorpus import generate_tree
from bench.run import (
    Daemon,
    SuiteOptions,
    code_dir,
    log,
    perf_cache,
    print_table,
    short_tmp,
)
from bench.stats import fmt, fmt_mmm, median_min_max
from codectx_client.connection import RemoteError

SUITE = "firstindex"
TARGET_KEYWORD_S = 5.0  # this repository: add → every file keyword-searchable
TARGET_FIRST_RESULTS_S = 30.0  # README command 1 without pip: start → first results
GENERATED_FILES = 2000
SMOKE_GENERATED_FILES = 60


def readme_query() -> str:
    """The query of the README's first command."""
    text = (code_dir() / "README.md").read_text()
    match = re.search(r'codectx-client search "([^"]+)"', text)
    return match.group(1) if match else "where are overlapping search hits merged"


def export_repository(dest: Path) -> Path:
    """The measured commit's tracked files (what a fresh clone holds), in ``dest``."""
    archive = subprocess.run(
        ["git", "-C", str(code_dir()), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


# --- the README's first command ---------------------------------------------------------------


def readme_command(repo: Path, daemon: Daemon) -> dict[str, Any]:
    """`codectxd start --detach && codectx-client add . --wait && codectx-client search Q`,
    timed as processes (the daemon's environment: private data and runtime dirs)."""
    env = daemon.env
    timings: dict[str, float] = {}
    started = time.perf_counter()
    steps = [
        ("start", [sys.executable, "-m", "codectxd", "start", "--detach"]),
        ("add", [sys.executable, "-m", "codectx_client", "add", ".", "--wait"]),
        ("search", [sys.executable, "-m", "codectx_client", "search", readme_query()]),
    ]
    output = ""
    for name, command in steps:
        step = time.perf_counter()
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=1800)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
        timings[f"{name}_s"] = round(time.perf_counter() - step, 2)
        output = done.stdout
    timings["first_results_s"] = round(time.perf_counter() - started, 2)
    hits = [line for line in output.splitlines() if line and not line.startswith(" ")]
    return {**timings, "results": len(hits), "top": hits[:5]}


# --- searching from add until embedded ------------------------------------------------------


def search_loop(daemon: Daemon, root: Path, timeout_s: float) -> dict[str, Any]:
    """`add`, then search back to back until every chunk is embedded; what went wrong."""
    errors: list[str] = []
    searches = 0
    keyword_s = embedded_s = None
    with daemon.connect() as conn:
        started = time.perf_counter()
        conn.call("add", {"path": str(root)})
        while time.perf_counter() - started < timeout_s:
            try:
                result = conn.call("search", {"query": "def return value", "repos": [str(root)],
                                              "limit": 5}, timeout_s=60)  # fmt: skip
                info = next(r for r in conn.call("list")["repos"] if r["root"] == str(root))
            except RemoteError as exc:
                errors.append(f"{exc.code}: {exc}")
                continue
            searches += 1
            now = time.perf_counter() - started
            if keyword_s is None and result["fresh"]:
                keyword_s = round(now, 2)
            if result["fresh"] and info["state"] == "ready" and info["embedded"] == 1.0:
                embedded_s = round(now, 2)
                break
    return {
        "searches": searches,
        "errors": len(errors),
        "error_examples": errors[:5],
        "keyword_s": keyword_s,
        "embedded_s": embedded_s,
    }


def readme_query_kinds(daemon: Daemon, root: Path) -> dict[str, Any]:
    """The README's query once every chunk is embedded: its top 10 hits' kinds of file."""
    with daemon.connect() as conn:
        hits = conn.call("search", {"query": readme_query(), "repos": [str(root)], "limit": 10},
                         timeout_s=60)["results"]  # fmt: skip
    return {
        "readme_code_top5": sum(h["file_kind"] == "code" for h in hits[:5]),
        "readme_data_top10": sum(h["file_kind"] == "data" for h in hits[:10]),
        "readme_top10": [f"{h['path']}:{h['start_line']} ({h['file_kind']})" for h in hits],
    }


def data_chunks_embedded(daemon: Daemon, root: Path) -> dict[str, int]:
    """Chunks of data files stored, and of those embedded (read from the store after a stop)."""
    from codectxd.config import load_settings
    from codectxd.engine import Engine

    settings = load_settings({"CODECTX_DATA_DIR": str(daemon.data_dir),
                              "CODECTX_CONFIG": "/nonexistent/codectx.toml"})  # fmt: skip
    engine = Engine(settings)
    try:
        coll = engine.collection_for(root)
        return {
            "data_chunks": engine.store.count(coll, 'file_kind == "data"'),
            "data_chunks_embedded": engine.store.count(
                coll, 'file_kind == "data" and embedded == true'
            ),
            "chunks": engine.store.count(coll),
        }
    finally:
        engine.close()


# --- the suite ------------------------------------------------------------------------------


def run(options: SuiteOptions) -> dict[str, Any]:
    runs = 1 if options.smoke else options.runs
    results: dict[str, Any] = {"readme_query": readme_query(), "this_repository": [],
                               "generated": []}  # fmt: skip
    for number in range(runs):
        with short_tmp("cxf") as tmp:
            repo = export_repository(tmp / "codectx")
            log(f"this repository, run {number + 1}/{runs}: the README's first command")
            with Daemon(tmp / "d1", tmp / "r1") as daemon:
                try:
                    readme = readme_command(repo, daemon)
                finally:
                    _stop_detached(daemon)
            log(f"this repository, run {number + 1}/{runs}: searches from add to embedded")
            with Daemon(tmp / "d2", tmp / "r2") as daemon:
                daemon.start()
                loop = search_loop(daemon, repo, 1800)
                kinds = readme_query_kinds(daemon, repo)
                daemon.stop()
                data = data_chunks_embedded(daemon, repo)
            results["this_repository"].append({**readme, **loop, **kinds, **data})
    files = SMOKE_GENERATED_FILES if options.smoke else GENERATED_FILES
    tree = generate_tree(perf_cache(options) / f"firstindex-gen-{files}" / "tree", files, 31)
    for number in range(1 if options.smoke else min(runs, 3)):
        log(f"{files}-file repository, run {number + 1}: searches from add to embedded")
        with short_tmp("cxg") as tmp, Daemon(tmp / "d", tmp / "r") as daemon:
            daemon.start()
            results["generated"].append({"files": files, **search_loop(daemon, tree.root, 3600)})
    results["summary"] = _summary(results)
    results["targets"] = _targets(results["summary"])
    print_summary(results)
    return results


def _stop_detached(daemon: Daemon) -> None:
    """Stop the daemon the README command started (`codectx-client stop` through its socket)."""
    subprocess.run([sys.executable, "-m", "codectx_client", "stop"], env=daemon.env,
                   capture_output=True, timeout=60)  # fmt: skip


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    mine, generated = results["this_repository"], results["generated"]

    def mmm(items: list[dict[str, Any]], key: str) -> dict[str, float]:
        return median_min_max([i[key] for i in items if i.get(key) is not None])

    return {
        "first_results_s": mmm(mine, "first_results_s"),
        "add_wait_s": mmm(mine, "add_s"),
        "keyword_s": mmm(mine, "keyword_s"),
        "embedded_s": mmm(mine, "embedded_s"),
        "errors": sum(i["errors"] for i in mine + generated),
        "searches": sum(i["searches"] for i in mine + generated),
        "data_chunks_embedded": max((i["data_chunks_embedded"] for i in mine), default=None),
        "data_chunks": max((i["data_chunks"] for i in mine), default=None),
        # the worst run (the index is the same; ties in scores may order hits differently)
        "readme_code_top5": min((i["readme_code_top5"] for i in mine), default=None),
        "readme_data_top10": max((i["readme_data_top10"] for i in mine), default=None),
        "readme_top10": mine[-1]["readme_top10"] if mine else [],
        "generated_keyword_s": mmm(generated, "keyword_s"),
        "generated_embedded_s": mmm(generated, "embedded_s"),
    }


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    keyword = summary["keyword_s"].get("median")
    first = summary["first_results_s"].get("median")
    code, data = summary["readme_code_top5"], summary["readme_data_top10"]
    return {
        "first_index_errors": {"target": 0, "measured": summary["errors"],
                               "met": summary["errors"] == 0},
        "first_index_keyword_s": {"target": TARGET_KEYWORD_S, "measured": keyword,
                                  "met": keyword is not None and keyword < TARGET_KEYWORD_S},
        "readme_first_results_s": {"target": TARGET_FIRST_RESULTS_S, "measured": first,
                                   "met": first is not None and first < TARGET_FIRST_RESULTS_S},
        "data_chunks_embedded": {"target": 0, "measured": summary["data_chunks_embedded"],
                                 "met": summary["data_chunks_embedded"] == 0},
        "readme_code_top5": {"target": 5, "measured": code, "met": code == 5},
        "readme_data_top10": {"target": 0, "measured": data, "met": data == 0},
    }  # fmt: skip


def print_summary(results: dict[str, Any]) -> None:
    s = results["summary"]
    data = f"{s['data_chunks_embedded']} / {s['data_chunks']}"
    print_table(
        "This repository, from an empty data dir (median (min–max) of runs)",
        ["measure", "value"],
        [
            ["README command 1 without pip: start → results, s", fmt_mmm(s["first_results_s"], 1)],
            ["  of which `add . --wait`, s", fmt_mmm(s["add_wait_s"], 1)],
            ["add → every file keyword-searchable, s", fmt_mmm(s["keyword_s"], 2)],
            ["add → every chunk embedded, s", fmt_mmm(s["embedded_s"], 1)],
            ["data-file chunks embedded / stored", data],
            [
                "README query, embedded: code hits in the top 5 / data files in the top 10",
                f"{s['readme_code_top5']} / {s['readme_data_top10']}",
            ],
        ],
    )
    print_table(
        f"{GENERATED_FILES}-file generated repository",
        ["measure", "value"],
        [
            ["add → every file keyword-searchable, s", fmt_mmm(s["generated_keyword_s"], 2)],
            ["add → every chunk embedded, s", fmt_mmm(s["generated_embedded_s"], 1)],
        ],
    )
    print(f"\n  searches from add to embedded: {s['searches']}, error replies {s['errors']}")
    for name, target in results["targets"].items():
        print(f"  target {name}: {fmt(target['measured'], 2)} (target {target['target']}) → "
              f"{'met' if target['met'] else 'NOT met'}")  # fmt: skip
