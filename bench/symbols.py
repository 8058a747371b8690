"""Symbols: exact lookups and outlines through the real daemon, and recall against `ast`.

* **Trees**: the PyPI sdists of django 4.2, sympy 1.12, scikit-learn 1.3, matplotlib 3.7 and
  astropy 5.2 (the localization benchmark's cached trees, `bench/.cache/swe/trees/`;
  downloaded once if missing), together over 100k definitions. `--smoke`: this repository only.
* **Index**: a daemon with stand-in vectors (`bench.standin`: the real daemon, the model's
  inference replaced) — symbols do not depend on vectors, and embedding 100k+ chunks would
  take hours; the first phase (read, split, symbols, commit) is the product's own.
* **Lookups**: `symbols` for names sampled from the definitions (seeded), exact and fuzzy,
  and `outline` for sampled files, one connection, back to back: the daemon's own time
  (`took_ms`) and the round trip, p50 / p99.
* **References**: `references` for names with 300–700 occurrences (found by asking sampled
  names), each 5 times: the daemon's own time.
* **Recall**: every `def`, `async def` and `class` Python's `ast` finds in the trees' `.py`
  files (nested ones included), against the daemon's `outline` of the same files (by name and
  def line).
"""

from __future__ import annotations

import ast
import random
import time
from pathlib import Path
from typing import Any

from bench.run import Daemon, SuiteOptions, code_dir, log, print_table, short_tmp
from bench.stats import fmt, summarize

SUITE = "symbols"
TREES = (("django", "4.2"), ("sympy", "1.12"), ("scikit-learn", "1.3"), ("matplotlib", "3.7"),
         ("astropy", "5.2"))  # fmt: skip
TARGET_P50_MS, TARGET_P99_MS = 3.0, 20.0
TARGET_REFS_P50_MS = 20.0  # a name with ~500 occurrences
LOOKUPS, SMOKE_LOOKUPS = 2000, 100
RECALL_FILES, SMOKE_RECALL_FILES = 600, 60


def _trees(smoke: bool) -> list[Path]:
    if smoke:
        return [code_dir()]
    from bench.localization import tree_for

    return [tree_for(project, version) for project, version in TREES]


def _ast_definitions(path: Path) -> set[tuple[str, int]] | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8").replace("\r\n", "\n"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None  # Python 2 files and the like: `ast` cannot say
    return {
        (node.name, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _timed(conn: Any, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = conn.call(method, params, timeout_s=60)
    return result, (time.perf_counter() - started) * 1000


def run(options: SuiteOptions) -> dict[str, Any]:
    rng = random.Random(7)
    trees = _trees(options.smoke)
    lookups = SMOKE_LOOKUPS if options.smoke else LOOKUPS
    with short_tmp("cxs") as tmp, Daemon(tmp / "d", tmp / "r", standin=True) as daemon:
        daemon.start()
        started = time.perf_counter()
        for root in trees:
            daemon.call("add", {"path": str(root)})
        for root in trees:
            daemon.wait_fresh(root, 7200)
        index_s = time.perf_counter() - started
        log(f"{len(trees)} trees indexed in {index_s:.0f}s")
        files = [(root, p) for root in trees for p in sorted(root.rglob("*.py")) if p.is_file()]
        sample = rng.sample(files, min(len(files), SMOKE_RECALL_FILES if options.smoke
                                       else RECALL_FILES))  # fmt: skip
        want_total = found_total = files_checked = 0
        missing: list[str] = []
        outline_ms: list[float] = []
        names: list[str] = []
        with daemon.connect() as conn:
            for root, path in sample:
                want = _ast_definitions(path)
                if want is None:
                    continue
                result, _ = _timed(conn, "outline", {"path": str(path)})
                outline_ms.append(result["took_ms"])
                got = {(s["name"], s["def_line"]) for s in result["symbols"]}
                names += [s["name"] for s in result["symbols"]]
                files_checked += 1
                want_total += len(want)
                found_total += len(want & got)
                missing += [f"{path.relative_to(root)}:{n}:{line}" for n, line in want - got][:3]
            definitions = _count_definitions(conn, trees)
            exact_ms: list[float] = []
            exact_rt: list[float] = []
            fuzzy_ms: list[float] = []
            for name in rng.choices(names, k=lookups):
                result, rt = _timed(conn, "symbols", {"name": name})
                assert result["symbols"], name  # a sampled name is always found
                exact_ms.append(result["took_ms"])
                exact_rt.append(rt)
            # References: names with about 500 occurrences (300–700), each asked 5 times.
            refs_ms: list[float] = []
            refs_counts: list[int] = []
            for name in rng.sample(sorted(set(names)), min(len(set(names)), 400)):
                result, _ = _timed(conn, "references", {"name": name, "limit": 100_000})
                count = len(result["references"])
                if not 300 <= count <= 700:
                    continue
                refs_counts.append(count)
                for _ in range(5):
                    refs_ms.append(_timed(conn, "references", {"name": name})[0]["took_ms"])
                if len(refs_counts) >= 20:
                    break
            for name in rng.choices(names, k=max(lookups // 10, 10)):
                result, _ = _timed(conn, "symbols", {"name": name[: max(4, len(name) // 2)],
                                                     "match": "fuzzy", "limit": 20})  # fmt: skip
                fuzzy_ms.append(result["took_ms"])
        daemon.stop()
    recall = found_total / want_total if want_total else None
    exact, refs = summarize(exact_ms), summarize(refs_ms)
    results: dict[str, Any] = {
        "trees": [str(t.name) for t in trees],
        "index_s": round(index_s, 1),
        "definitions": definitions,
        "recall": {
            "files": files_checked,
            "ast_definitions": want_total,
            "found": found_total,
            "recall": None if recall is None else round(recall, 5),
            "missing_examples": missing[:20],
        },  # fmt: skip
        "symbols_exact_ms": exact,
        "symbols_exact_round_trip_ms": summarize(exact_rt),
        "symbols_fuzzy_ms": summarize(fuzzy_ms),
        "outline_ms": summarize(outline_ms),
        "references_ms": refs,
        "references_names": {"n": len(refs_counts), "occurrences": summarize(refs_counts)},
    }
    results["targets"] = {
        "symbols_p50_ms": {"target": TARGET_P50_MS, "measured": exact.get("p50"),
                           "definitions": definitions,
                           "met": exact.get("p50", 1e9) < TARGET_P50_MS and definitions >= 100_000},
        "symbols_p99_ms": {"target": TARGET_P99_MS, "measured": exact.get("p99"),
                           "met": exact.get("p99", 1e9) < TARGET_P99_MS and definitions >= 100_000},
        "symbols_recall": {"target": 1.0, "measured": recall, "met": recall == 1.0},
        "references_p50_ms": {"target": TARGET_REFS_P50_MS, "measured": refs.get("p50"),
                              "met": refs.get("p50", 1e9) < TARGET_REFS_P50_MS},
    }  # fmt: skip
    print_table(
        f"Symbols ({definitions:,} definitions in {', '.join(results['trees'])})",
        ["measure", "n", "p50", "p99"],
        [[k, v.get("n"), fmt(v.get("p50")), fmt(v.get("p99"))]
         for k, v in results.items() if k.endswith("_ms")],
    )  # fmt: skip
    print(f"  recall vs ast: {found_total}/{want_total} over {files_checked} files")
    return results


def _count_definitions(conn: Any, trees: list[Path]) -> int:
    """Definitions in the daemon's table for these trees (`outline` of every source file)."""
    total = 0
    for root in trees:
        for path in root.rglob("*"):
            if path.suffix in (".py", ".js", ".ts", ".c", ".h", ".cpp", ".pyx") and path.is_file():
                total += len(conn.call("outline", {"path": str(path)}, timeout_s=60)["symbols"])
    return total
