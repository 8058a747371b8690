"""``python -m bench [suite ...] [--smoke]``: codectx's benchmarks.

Suites: ``retrieval`` (search quality, bench/retrieval.py), ``freshness``, ``latency``,
``throughput``, ``memory``, ``firstindex``, ``symbols``; ``all`` runs every one, in that order. Each
prints its tables and writes ``bench/results/<suite>.json`` (``<suite>-smoke.json`` with
``--smoke``);
``python -m bench report`` turns the JSON files into docs/benchmarks.md.

Examples::

    python -m bench --smoke all          # tiny inputs, < 2 minutes, for CI
    python -m bench freshness latency    # full runs (expensive parts cached in bench/.cache)
    python -m bench report
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.run import (
    RESULTS_DIR,
    SuiteOptions,
    configure_run,
    log,
    machine_facts,
    model_for,
    save_result,
)

PERF_SUITES = ("freshness", "latency", "throughput", "memory", "firstindex", "symbols")
SUITES = ("retrieval", *PERF_SUITES)


def _suite(name: str) -> Callable[[SuiteOptions], dict[str, Any]]:
    """The ``run`` function of a performance suite (imported on demand)."""
    if name == "freshness":
        from bench.freshness import run
    elif name == "latency":
        from bench.latency import run
    elif name == "throughput":
        from bench.throughput import run
    elif name == "memory":
        from bench.memory import run
    elif name == "firstindex":
        from bench.firstindex import run
    elif name == "symbols":
        from bench.symbols import run
    else:
        raise ValueError(f"unknown suite {name}")
    return run


def run_retrieval(options: SuiteOptions, extra: Sequence[str]) -> int:
    """The retrieval-quality benchmark keeps its own command line.

    With ``--smoke`` it answers 5 queries per package from its cached index, and is skipped
    when that index has not been built yet (building it embeds six packages: minutes, not
    seconds).
    """
    from bench.retrieval import CACHE_DIR, main

    argv = list(extra)
    if options.smoke:
        if not any((CACHE_DIR / "index").glob("*/state.db")):
            log(
                "retrieval (smoke): skipped, its index is not built yet "
                "(run `python -m bench retrieval` once)"
            )
            return 0
        argv += [
            "--limit-queries",
            "5",
            "--output",
            str(options.output_dir / "retrieval-smoke.json"),
        ]
    return int(main(argv) or 0)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="SUITE",
        help=f"{', '.join(SUITES)}, all, or report (default: retrieval)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny inputs (whole run < 2 minutes); results to <suite>-smoke.json",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="repetitions per measurement (default 5; 3 with --smoke)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild cached corpora and indexes (bench/.cache) first",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PART",
        help="leave out a part of a suite (repeatable): throughput: cold, warm, "
        "restart, restart-big, embed; latency: indexing, cli; freshness: burst",
    )
    parser.add_argument(
        "--model",
        help="EMBEDDING_MODEL for every daemon (default: the "
        "product's default); caches are kept per model",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where the JSON results go (default {RESULTS_DIR})",
    )
    return parser.parse_known_args(argv)


def expand(names: Sequence[str]) -> list[str]:
    """Suite names in run order (``all`` = every suite; unknown names raise SystemExit)."""
    if not names:
        return ["retrieval"]
    chosen: list[str] = []
    for name in names:
        group = SUITES if name == "all" else (name,)
        for item in group:
            if item not in (*SUITES, "report"):
                raise SystemExit(
                    f"unknown suite {item!r} (choose from {', '.join(SUITES)}, all, report)"
                )
            if item not in chosen:
                chosen.append(item)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(argv)
    names = expand(args.suites)
    runs = args.runs or (3 if args.smoke else 5)
    options = SuiteOptions(
        smoke=args.smoke,
        runs=runs,
        fresh=args.fresh,
        output_dir=args.output_dir,
        skip=frozenset(args.skip),
        model=args.model,
    )
    if extra and names != ["retrieval"]:
        raise SystemExit(f"unknown options {' '.join(extra)} (only retrieval takes its own)")
    configure_run(options)
    status = 0
    for name in names:
        if name == "report":
            from bench.report import main as report_main

            status |= report_main(options.output_dir)
            continue
        if name == "retrieval":
            status |= run_retrieval(options, extra)
            continue
        log(f"suite {name}{' (smoke)' if options.smoke else ''}: starting")
        facts = machine_facts()
        started = time.perf_counter()
        data = {"model": model_for(options), **_suite(name)(options)}
        path = save_result(name, options, facts, data, time.perf_counter() - started)
        log(f"suite {name}: done in {time.perf_counter() - started:.0f}s → {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
