"""``python -m bench report``: docs/benchmarks.md from the JSON files in bench/results/.

For each suite the full run's results are shown; a suite that only has a smoke run
(``<suite>-smoke.json``) is shown from it, clearly marked (tiny inputs: not comparable to the
targets). Every section carries the machine facts of its run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.run import REPO_DIR, RESULTS_DIR
from bench.stats import fmt, fmt_mmm

DOC = REPO_DIR / "docs" / "benchmarks.md"
SPLIT = ("scan", "parse", "embed", "store")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def load(results_dir: Path, suite: str) -> tuple[dict[str, Any] | None, bool]:
    """(results, is_smoke): the full run's JSON, else the smoke run's, else None."""
    for name, smoke in ((f"{suite}.json", False), (f"{suite}-smoke.json", True)):
        path = results_dir / name
        if path.is_file():
            return json.loads(path.read_text()), smoke
    return None, False


def machine_line(data: Mapping[str, Any]) -> str:
    """One line of machine facts for a section."""
    m = data.get("machine") or {}
    versions = m.get("versions") or {}
    shown = ", ".join(f"{k} {v}" for k, v in versions.items()
                      if v and k in ("codectx", "milvus-lite", "pymilvus", "onnxruntime",
                                     "watchfiles", "python"))
    return (f"*Run {m.get('time', '?')} (git {m.get('git', '?')}), {data.get('seconds', '?')} s; "
            f"embedding model {data.get('model', '?')}; "
            f"{m.get('cores', '?')} cores ({m.get('cpu', '?')}), {m.get('memory_gb', '?')} GB; "
            f"load average at start {m.get('load_average_start')}, at end "
            f"{m.get('load_average_end')}; {shown}.*")


def _smoke_note(smoke: bool) -> list[str]:
    if not smoke:
        return []
    return ["> **Smoke run only** (tiny inputs, `--smoke`): these numbers check that the suite "
            "works; they are not comparable to the targets. Run the full suite for real "
            "figures.", ""]


# --- sections -------------------------------------------------------------------------------


def freshness(data: Mapping[str, Any]) -> list[str]:
    edits = data["edits"]
    rows = []
    for kind in ("create", "modify", "delete"):
        item = edits[kind]
        d, w = item["pooled"]["daemon_ms"], item["pooled"]["watcher_ms"]
        rows.append([kind, d.get("n", 0), fmt(d.get("p50")), fmt(d.get("p95")), fmt(d.get("max")),
                     fmt_mmm(item["across_runs"].get("p95")), item["pooled"]["timeouts"],
                     fmt(w.get("p50")), fmt(w.get("p95")), fmt(item["ratio_p50_vs_watcher"], 2)])
    ryw = edits["read_your_writes"]
    lat = ryw["latency_ms"]
    rows.append(["read-your-writes (one call)", ryw["n"], fmt(lat.get("p50")), fmt(lat.get("p95")),
                 fmt(lat.get("max")), fmt_mmm(ryw["across_runs"].get("p95")),
                 f"{ryw['visible']}/{ryw['n']} visible in the reply", "-", "-", "-"])
    out = [f"Repository: {data['tree']['files']} generated files ({data['tree']['loc']} lines, "
           f"5 languages), {data['index']['chunks']} chunks. Polling a lexical search every "
           f"{data['config']['poll_interval_ms']:.0f} ms; baseline: a bare `watchfiles.watch` "
           f"(step {data['config']['watch_step_ms']} ms, debounce "
           f"{data['config']['watch_debounce_ms']} ms) seeing the same writes.", ""]
    out += table(["edit", "n", "p50 ms", "p95 ms", "max ms", "p95 per run: median (min–max)",
                  "timeouts", "watcher p50", "watcher p95", "p50 ÷ watcher"], rows)
    burst_rows = []
    for kind, item in data["burst"].items():
        burst_rows.append([kind.replace("_", " "), data["config"]["burst_files"],
                           fmt_mmm(item["converged_s"], 2), fmt_mmm(item["fresh_reported_s"], 2),
                           fmt_mmm(item["per_file_p50_s"], 2)])
    out += ["Burst of changes (60 % modified, 20 % deleted, 20 % created), then switched back; "
            "seconds from the first write, median (min–max) of runs:", ""]
    out += table(["burst", "files", "all changes visible", "daemon reports fresh",
                  "per-file p50"], burst_rows)
    return out


def latency(data: Mapping[str, Any]) -> list[str]:
    index = data["index"]
    replicas = index["replicas"]
    out = [f"Index: {index['files']} files / {index['loc']} non-blank lines indexed for real "
           f"({replicas['rows_real']} chunks), replicated through `Store` to "
           f"**{replicas['rows_total']} rows** ({replicas['copies']} copies; real vectors, "
           "duplicated). Hybrid search, limit 10, every query distinct. Daemon start → "
           f"collection ready: {data.get('collection_ready_s')} s.", ""]
    rows = []
    rg_p50 = data["baseline_rg"]["own_ms"].get("p50")
    for state in ("idle", "indexing"):
        for item in data["socket"][state].values():
            runs = item["across_runs"]
            p50 = runs.get("p50", {}).get("median")
            rows.append([f"socket, {item['clients']} client(s)", state, fmt_mmm(runs.get("p50")),
                         fmt_mmm(runs.get("p95")), fmt_mmm(runs.get("p99")),
                         fmt(item["daemon_took_ms"].get("p50")),
                         fmt_mmm(item.get("searches_per_s")),
                         fmt(p50 / rg_p50 if p50 and rg_p50 else None, 2)])
    for state in ("idle", "indexing"):
        own = data["cli"][state]["own_ms"]
        rows.append(["`codectx-client search` process", state, fmt(own.get("p50")),
                     fmt(own.get("p95")), fmt(own.get("p99")), "-", "-",
                     fmt(own["p50"] / rg_p50 if own.get("p50") and rg_p50 else None, 2)])
    rg = data["baseline_rg"]["own_ms"]
    rows.append([f"`rg -F -l` over the tree ×{data['baseline_rg']['tree_copies']}", "idle",
                 fmt(rg.get("p50")), fmt(rg.get("p95")), fmt(rg.get("p99")), "-", "-", "1.00"])
    out += table(["path", "daemon", "p50 ms", "p95 ms", "p99 ms", "daemon took p50 ms",
                  "searches/s", "p50 ÷ rg"], rows)
    hyper = {**(data["cli"]["idle"].get("hyperfine_ms") or {}),
             **(data["baseline_rg"].get("hyperfine_ms") or {})}
    if hyper:
        out += ["hyperfine (3 warm-ups, fixed query):", ""]
        out += table(["command", "n", "p50 ms", "p95 ms", "min ms"],
                     [[k, v.get("n"), fmt(v.get("p50")), fmt(v.get("p95")), fmt(v.get("min"))]
                      for k, v in hyper.items()])
    background = data.get("background_end") or {}
    out += [f"While indexing: another repository of {data['config']['background_files']} "
            "never-seen generated files was being indexed (still indexing at the end of the "
            f"measurements: {background.get('indexing')}).", ""]
    return out


def throughput(data: Mapping[str, Any]) -> list[str]:
    corpus, cold, warm = data["corpus"], data.get("cold"), data.get("warm_cache")
    langs = ", ".join(f"{ext or 'other'} {v['loc']}" for ext, v in sorted(
        corpus["by_language"].items(), key=lambda kv: -kv[1]["loc"]))
    out = [f"Corpus: {corpus['files']} files, **{corpus['loc']} non-blank lines** "
           f"({corpus['bytes'] / 2**20:.1f} MB; lines by extension: {langs}).", ""]
    if data.get("skipped"):
        out += [f"Parts skipped in this run: {', '.join(data['skipped'])}.", ""]
    if corpus.get("packages"):
        out += table(["package", "files", "lines"], [[k, v["files"], v["loc"]]
                                                    for k, v in corpus["packages"].items()])
    rows = []
    if cold:
        label = f"cold: every chunk embedded, 1 run, {cold['chunks']} chunks"
        if cold.get("cached"):
            label += f" (measured {cold.get('measured')}, cached)"
        if cold.get("resumed"):
            label += " (RESUMED after an interruption: not a clean cold figure)"
        rows.append([label, fmt(cold["sync_s"]), fmt(cold["files_per_s"]),
                     fmt(cold["chunks_per_s"]), " / ".join(fmt(cold["split_s"][k]) for k in SPLIT),
                     fmt(cold["peak_rss_mb"], 0)])
    if warm:
        rows.append([f"warm embedding cache, {len(warm['runs'])} runs", fmt_mmm(warm["sync_s"]),
                     fmt_mmm(warm["files_per_s"]), fmt_mmm(warm["chunks_per_s"]),
                     " / ".join(fmt(warm["split_s"][k].get("median")) for k in SPLIT),
                     fmt_mmm(warm["peak_rss_mb"], 0)])
    if rows:
        out += table(["full index", "seconds", "files/s", "chunks/s",
                      "scan / parse / embed / store s", "peak RSS MB (daemon + Milvus)"], rows)
    other = []
    for key in ("warm_restart", "warm_restart_big"):
        restart = data.get(key)
        if restart:
            other += [[f"warm restart → fresh, {restart['files']} files "
                       f"({restart.get('chunks')} chunks), s", fmt_mmm(restart["fresh_s"], 2)],
                      ["  of which daemon start → answers, s",
                       fmt_mmm(restart["daemon_start_s"], 2)]]
    embed = data.get("embedding_only")
    if embed:
        other.append([f"embedding alone: {embed['chunks']} real chunks (~{embed['avg_chars']} "
                      "chars), chunks/s", fmt_mmm(embed["chunks_per_s"])])
        if cold:
            other.append(["cold pipeline chunks/s ÷ embedding alone (same run)",
                          fmt(_div(cold["chunks_per_s"], embed["chunks_per_s"].get("median")), 2)])
    if cold and warm:
        other.append(["warm-cache index time ÷ cold index time",
                      fmt(_div(warm["sync_s"].get("median"), cold["sync_s"]), 3)])
    if other:
        out += table(["measure", "median (min–max)"], other)
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def memory(data: Mapping[str, Any]) -> list[str]:
    idle = data["idle"]
    out = table(["idle RSS, 3 indexed repos", "daemon MB", "Milvus Lite child MB", "total MB"],
                [[f"{len(idle['runs'])} start(s)", fmt_mmm(idle["daemon_mb"]),
                  fmt_mmm(idle["children_mb"]), fmt_mmm(idle["total_mb"])]])
    rows = []
    for name in ("budget", "no_budget"):
        item = data[name]
        m = item["memory_status"]
        rows.append([name.replace("_", " "), item["budget_mb"], fmt(item["peak_mb"]),
                     fmt(item["rss_mb"].get("p50")), fmt(item["peak_over_budget"], 2),
                     f"{item['share_over_budget']:.1%}",
                     ", ".join(f"{k} {v}" for k, v in (item.get("states_seen") or {}).items())
                     or m.get("state"), m.get("pauses"),
                     m.get("paused_s"), m.get("gc_collections"),
                     fmt(item["seconds"]) + ("" if item["finished"] else " (time limit)")])
    out += [f"Indexing {data['sizes']['new_files']} never-seen files with the 3 repositories "
            f"loaded; budget = idle × {data['budget_factor']}; RSS = daemon + Milvus child, "
            "sampled every 0.5 s:", ""]
    out += table(["run", "budget MB", "peak MB", "p50 MB", "peak ÷ budget", "samples over budget",
                  "memory.state seen (2 s polls)", "pauses", "paused_s", "GC runs", "index s"],
                 rows)
    out += [f"RSS trace of the budget run (every {TRACE_ROWS}th of the way; the JSON has every "
            "0.5 s sample and the status polls):", ""]
    return out + trace_table(data["budget"])


TRACE_ROWS = 12


def trace_table(item: Mapping[str, Any]) -> list[str]:
    """A downsampled RSS trace with the nearest status poll's memory state."""
    samples = item.get("rss_trace") or []
    polls = item.get("status_trace") or []
    if not samples:
        return []
    step = max(1, len(samples) // TRACE_ROWS)
    rows = []
    for t, own, kids in samples[::step]:
        poll = min(polls, key=lambda p: abs(p["t"] - t)) if polls else {}
        rows.append([fmt(t), fmt(own + kids), fmt(own), fmt(kids),
                     f"{(own + kids) / item['budget_mb']:.2f}", poll.get("state", "-"),
                     poll.get("pauses", "-")])
    return table(["t s", "RSS MB", "daemon MB", "Milvus MB", "÷ budget", "state", "pauses"],
                 rows)


def retrieval(data: Mapping[str, Any]) -> list[str]:
    metrics = data.get("metrics") or {}
    rows = []
    for system, groups in metrics.items():
        overall = groups.get("overall", {})
        rows.append([system, overall.get("n"), overall.get("mrr@10"), overall.get("r@1"),
                     overall.get("r@5"), overall.get("r@10")])
    return ["Search quality (docstring → function); details in docs/decisions.md.", ""] + table(
        ["system", "queries", "MRR@10", "R@1", "R@5", "R@10"], rows)


SECTIONS: dict[str, tuple[str, Callable[[Mapping[str, Any]], list[str]]]] = {
    "freshness": ("Freshness: save → searchable", freshness),
    "latency": ("Search latency", latency),
    "throughput": ("Indexing throughput", throughput),
    "memory": ("Memory", memory),
    "retrieval": ("Retrieval quality", retrieval),
}


def targets_table(loaded: Mapping[str, tuple[dict[str, Any] | None, bool]]) -> list[str]:
    """Every suite's targets in one table."""
    rows = []
    for suite, (data, smoke) in loaded.items():
        if not data:
            continue
        for name, item in (data.get("targets") or {}).items():
            if not isinstance(item, dict):
                continue
            measured = item.get("measured", item.get("measured_peak_mb"))
            verdict = "met" if item.get("met") else "**not met**"
            rows.append([suite + (" (smoke)" if smoke else ""), name, item.get("target"),
                         fmt(measured, 2) if isinstance(measured, float | int) else measured,
                         verdict + (" (smoke: indicative only)" if smoke else "")])
    return table(["suite", "target", "goal", "measured", "verdict"], rows) if rows else []


HOW_TO_RUN: tuple[tuple[str, str], ...] = (
    ("`python -m bench --smoke all`",
     "tiny inputs for every suite (retrieval only when its index is cached); meant for CI: "
     "about 2 minutes on an idle 2-core machine once the small indexes are cached"),
    ("`python -m bench throughput`",
     "run it first. Downloads the big corpus (pinned PyPI sdists, npm tarballs, one Debian "
     "package) into `bench/.cache/big/`; the **cold** full index embeds every chunk (about "
     "20k chunks: tens of minutes idle, hours under load); its result and index are cached in "
     "`bench/.cache/perf/<model>/throughput/cold/` and reused (an interrupted cold run "
     "resumes and is marked resumed); then 3 warm-cache runs, the 10,000-file warm restart "
     "(that repository is indexed once, cached in `bench/.cache/perf/<model>/gen-10000-7/`) "
     "and embedding alone"),
    ("`python -m bench latency`",
     "starts from a copy of the cold index (else indexes the big corpus itself), replicates it "
     "to ≥ 100k rows once (`bench/.cache/perf/<model>/latency/`), then measures"),
    ("`python -m bench freshness`",
     "the 10,000-file generated repository of the warm restart (indexed once)"),
    ("`python -m bench memory`",
     "three 400-file repositories indexed once (`bench/.cache/perf/<model>/memory/`), then "
     "two indexing runs of 1,000 never-seen files"),
    ("`python -m bench report`", "regenerates this page"),
)


def how_to_run() -> list[str]:
    """The closing section: commands and what they cost."""
    return ["## Running the suites", ""] + table(["command", "what it does and costs"],
                                                 HOW_TO_RUN) + [
        "`--runs N` changes the repetitions (default 5), `--fresh` rebuilds the caches. Never "
        "run two suites at the same time: they share cached data directories and would measure "
        "each other.", ""]


def render(results_dir: Path) -> str:
    """The whole document."""
    loaded = {suite: load(results_dir, suite) for suite in SECTIONS}
    lines = [
        "# Benchmarks", "",
        "Generated by `python -m bench report` from `bench/results/*.json`; do not edit by "
        "hand. Run the suites with `python -m bench [suite ...]` (`--smoke` for tiny inputs); "
        "see `bench/__main__.py`. Percentiles are medians over ≥ 5 runs with min–max across "
        "runs unless a table says otherwise; ratios compare with a baseline measured in the "
        "same run. The development machine has 2 cores and is shared with other jobs, so "
        "absolute figures are pessimistic: compare ratios, and check each section's load "
        "average.", "",
        "## Targets", "",
    ]
    lines += targets_table(loaded) or ["No results yet.", ""]
    for suite, (title, render_section) in SECTIONS.items():
        data, smoke = loaded[suite]
        lines += [f"## {title}", ""]
        if data is None:
            lines += [f"Not run yet: `python -m bench {suite}`.", ""]
            continue
        lines += _smoke_note(smoke)
        try:
            lines += render_section(data)
        except (KeyError, TypeError) as exc:  # an older JSON layout
            lines += [f"(cannot render this result file: missing {exc})", ""]
        if suite != "retrieval":
            lines += [machine_line(data), ""]
    lines += how_to_run()
    return "\n".join(lines).rstrip() + "\n"


def main(results_dir: Path = RESULTS_DIR, output: Path = DOC) -> int:
    """Write docs/benchmarks.md; returns an exit status."""
    output.write_text(render(results_dir))
    print(f"wrote {output}")
    return 0
