"""Real-repository localization: given a real GitHub issue's text, rank the repository's files so
that a file the real fix changed comes first.

Data: ``../shared/bench-data/swe-lite-dev.jsonl`` (243 SWE-bench Lite instances of django, sympy,
scikit-learn, matplotlib and astropy, each with the files its fix changed). Trees: the PyPI
source distribution of the instance's ``pypi==version`` stands in for the checkout (downloaded
once from PyPI's simple index, unpacked, cached in ``bench/.cache/swe/trees/``). Instances
whose gold files are not in the sdist are skipped (and counted).

Systems, on the same trees and queries in one run:

* codectx ``hybrid``, ``dense``, ``lexical``: the repository indexed as the daemon indexes it
  (every file it would index, tests included), searched with the issue text; files ranked by
  their best hit (``search(..., group="file")`` when available);
* ``bm25-strong`` (pinned, never tuned): Okapi BM25, k1 1.2, b 0.75, over the whole text of
  the repository's non-test ``.py`` files (a test file: under ``test/``, ``tests/`` or
  ``testing/``, or named ``test_*``, ``*_test.py``, ``conftest.py``); tokens are identifiers
  split on snake_case / camelCase plus the whole identifier, lower-cased, path tokens
  included, English stop words dropped.

Metrics: Recall@1/5/10 and MRR of the first gold file, on the tuning projects (django, sympy),
the report projects (scikit-learn, matplotlib, astropy) and all of them. Tune on the first
group only; the second is reported, never tuned on.

Run: ``python -m bench.localization [--modes lexical] [--projects ...] [--keyword-ready]
[--embed TREE ...] [--weights NAME=VALUE ...]``. A TREE is a project (all its versions) or one
version of it, ``django@3.1``. The first run embeds every tree (909k chunks in 32 trees: about a
day on 2 cores); the embedding cache makes later runs short. Every tree is also searched as the
first phase serves it, ``hybrid@keyword-ready`` (BM25, names, paths and priors, no dense side).
``--keyword-ready`` embeds nothing; ``--embed`` only the trees named, so ``hybrid`` and
``dense`` cover those alone. ``--weights`` replaces fusion weights (``codectxd.ranking.Weights``
fields) for every codectx system: how they are tuned, on the tuning projects only.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tarfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codectxd.ranking import Weights

BENCH_DIR = Path(__file__).resolve().parent
DATA_FILE = BENCH_DIR.parent.parent / "shared" / "bench-data" / "swe-lite-dev.jsonl"
CACHE = BENCH_DIR / ".cache" / "swe"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "localization.json"
TUNE = ("django", "sympy")
REPORT = ("scikit-learn", "matplotlib", "astropy")
MODES = ("hybrid", "dense", "lexical")
BASELINE = "bm25-strong"
KEYWORD_READY = "hybrid@keyword-ready"  # hybrid on the first phase's index: no dense side
#: The systems that rank without the dense side (every tree has their rows).
NO_DENSE = ("lexical", KEYWORD_READY, BASELINE)
DEPTH = 100  # files ranked per query (MRR counts a gold file found within them)
SIMPLE_INDEX = "https://pypi.org/simple/{name}/"

log = logging.getLogger("bench.localization")


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    project: str  # the PyPI name
    version: str
    gold_files: tuple[str, ...]
    query: str

    @property
    def tree(self) -> str:
        return f"{self.project}@{self.version}"

    def named_by(self, specs: Iterable[str]) -> bool:
        """Whether `specs` (projects or ``project@version`` trees) include this instance."""
        return any(spec in (self.project, self.tree) for spec in specs)


def load_instances(path: Path = DATA_FILE) -> list[Instance]:
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out.append(
            Instance(
                row["instance_id"],
                row["pypi"],
                row["version"],
                tuple(row["gold_files"]),
                row["problem_statement"],
            )
        )
    return out


# --- trees -----------------------------------------------------------------------------------


def _sdist_url(name: str, version: str) -> tuple[str, str]:
    """(file name, URL) of the sdist of ``name==version`` (3.5 also finds 3.5.0, as pip does;
    when the line has no such release, its first patch release: 0.21 → 0.21.1)."""
    request = urllib.request.Request(
        SIMPLE_INDEX.format(name=name), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - PyPI only
        files = json.load(response)["files"]
    wanted = {version, f"{version}.0", f"{version}.0.0"}
    patches: list[tuple[int, str, str]] = []
    for item in files:
        filename = item["filename"]
        match = re.match(r"(?i)(.+?)-(\d[^-]*)\.(tar\.gz|zip|tar\.bz2)$", filename)
        if not match:
            continue
        if match.group(2) in wanted:
            return filename, item["url"]
        patch = re.fullmatch(re.escape(version) + r"\.(\d+)", match.group(2))
        if patch:
            patches.append((int(patch.group(1)), filename, item["url"]))
    if patches:
        _, filename, url = min(patches)
        return filename, url
    raise FileNotFoundError(f"no sdist of {name} {version} on PyPI")


def tree_for(project: str, version: str) -> Path:
    """The unpacked sdist of ``project==version`` (downloaded and unpacked once)."""
    dest = CACHE / "trees" / f"{project}-{version}"
    done = dest / ".complete"
    if done.is_file():
        return dest / done.read_text().strip()
    filename, url = _sdist_url(project, version)
    archive = CACHE / "downloads" / filename
    if not archive.is_file():
        log.info("downloading %s", filename)
        archive.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 - PyPI only
            archive.write_bytes(response.read())
    dest.mkdir(parents=True, exist_ok=True)
    if filename.endswith(".zip"):
        import zipfile

        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(dest)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    top = next(p.name for p in dest.iterdir() if p.is_dir())
    done.write_text(top)
    return dest / top


# --- the pinned strong baseline --------------------------------------------------------------

#: English stop words (the pinned baseline's own list; the product's may change).
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
""".split()
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def tokens(text: str) -> list[str]:
    """Identifiers, lower-cased, each followed by its snake_case / camelCase parts; English
    stop words dropped."""
    out: list[str] = []
    for ident in _IDENT.findall(text):
        whole = ident.lower()
        parts = [p.lower() for piece in ident.split("_") for p in _CAMEL.findall(piece)]
        for token in (whole, *(p for p in parts if p != whole)):
            if token not in STOP_WORDS:
                out.append(token)
    return out


def is_test_path(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        any(p in ("test", "tests", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


class StrongBm25:
    """Okapi BM25 (k1 1.2, b 0.75) over non-test ``.py`` files, path tokens included."""

    def __init__(self, root: Path, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.names: list[str] = []
        self.freqs: list[Counter[str]] = []
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if is_test_path(rel) or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            self.names.append(rel)
            self.freqs.append(Counter(tokens(text) + tokens(rel.replace("/", " "))))
        self.lengths = [sum(f.values()) for f in self.freqs]
        self.avg = sum(self.lengths) / max(len(self.lengths), 1)
        df: Counter[str] = Counter()
        for freq in self.freqs:
            df.update(freq.keys())
        n = len(self.names)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def rank(self, query: str, depth: int = DEPTH) -> list[str]:
        terms = set(tokens(query))
        scored = []
        for i, freq in enumerate(self.freqs):
            norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg)
            score = sum(
                self.idf[t] * freq[t] * (self.k1 + 1) / (freq[t] + norm) for t in terms if t in freq
            )
            if score > 0:
                scored.append((score, self.names[i]))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [name for _, name in scored[:depth]]


# --- codectx ------------------------------------------------------------------------------------


def ranked_files(
    engine: Any,
    root: Path,
    query: str,
    mode: str,
    depth: int = DEPTH,
    keyword_ready: bool = False,
    fusion: Weights | None = None,
) -> list[str]:
    """Files in the order of their best hit (the product's file-level answer when it has one).
    `keyword_ready`: what the first phase serves, the dense side left out even where a cached
    tree happens to be partly embedded (an earlier, interrupted embedding run). `fusion`: the
    `codectxd.ranking.Weights` to rank with (default: the product's)."""
    from codectxd.ranking import DEFAULT

    fusion = fusion or DEFAULT
    if keyword_ready:
        from codectxd.search import Target, search

        target = Target(str(root), engine.collection_for(root), lexical_only=True)
        hits = search(engine.store, engine.embedder, [target], query, snapshot=engine.snapshot,
                      limit=depth, mode=mode, group="file", weights=fusion)  # fmt: skip
    else:
        hits = engine.search([root], query, limit=depth, mode=mode, group="file", weights=fusion)
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.path, None)
    return list(seen)[:depth]


def first_gold_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    wanted = set(gold)
    for rank, path in enumerate(ranked, start=1):
        if path in wanted:
            return rank
    return None


def metrics(ranks: Sequence[int | None]) -> dict[str, float | int]:
    n = len(ranks)
    if not n:
        return {"n": 0}
    found = [r for r in ranks if r is not None]
    return {
        "n": n,
        "r@1": round(sum(r <= 1 for r in found) / n, 4),
        "r@5": round(sum(r <= 5 for r in found) / n, 4),
        "r@10": round(sum(r <= 10 for r in found) / n, 4),
        "mrr": round(sum(1 / r for r in found) / n, 4),
    }


# --- the run ------------------------------------------------------------------------------------


def run(
    modes: Sequence[str] = MODES,
    projects: Sequence[str] = TUNE + REPORT,
    output: Path = DEFAULT_OUTPUT,
    limit: int | None = None,
    keyword_ready: bool = False,
    embed: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Rank every instance's files with each system. `projects` and `embed` name projects or
    ``project@version`` trees; `embed`: the trees embedded and searched with the dense side
    too (default: all; none with `keyword_ready`). Every tree is also searched as the first
    phase serves it (``hybrid@keyword-ready``). `weights`: fusion weights replaced."""
    from bench.run import machine_facts
    from codectxd.config import load_settings
    from codectxd.engine import Engine
    from codectxd.ranking import DEFAULT

    changed: dict[str, Any] = dict(weights or {})
    fusion = replace(DEFAULT, **changed)

    machine = machine_facts()
    instances = [i for i in load_instances() if i.named_by(projects)][:limit]
    data_dir = CACHE / "index"
    settings = load_settings({"CODECTX_DATA_DIR": str(data_dir),
                              "CODECTX_CONFIG": "/nonexistent/codectx.toml"})  # fmt: skip
    engine = Engine(settings)
    dense_modes = any(m != "lexical" for m in modes)
    embedded = {
        i.tree
        for i in instances
        if dense_modes and not keyword_ready and (embed is None or i.named_by(embed))
    }
    systems = [m for m in modes if m == "lexical" or embedded]
    if "hybrid" in modes:
        systems.append(KEYWORD_READY)
    ranks: dict[str, dict[str, int | None]] = {s: {} for s in (*systems, BASELINE)}
    skipped: list[str] = []
    timing: dict[str, float] = {}
    per_tree: dict[tuple[str, str], list[Instance]] = {}
    for inst in instances:
        per_tree.setdefault((inst.project, inst.version), []).append(inst)
    started = time.perf_counter()
    try:
        for (project, version), group in sorted(per_tree.items()):
            root = tree_for(project, version)
            usable = [i for i in group if all((root / g).is_file() for g in i.gold_files)]
            skipped += [i.instance_id for i in group if i not in usable]
            if not usable:
                continue
            t0 = time.perf_counter()
            indexer = engine.indexer_for(root)
            report = indexer.begin_full().run()
            dense_too = f"{project}@{version}" in embedded
            if dense_too:
                indexer.embed_backlog(report)
            timing[f"{project}-{version}"] = round(time.perf_counter() - t0, 1)
            log.info("%s %s indexed (%.0fs; %d issues)", project, version,
                     time.perf_counter() - t0, len(usable))  # fmt: skip
            baseline = StrongBm25(root)
            for inst in usable:
                for system in systems:
                    if system not in NO_DENSE and not dense_too:
                        continue
                    first_phase = system == KEYWORD_READY
                    mode = "hybrid" if first_phase else system
                    ranked = ranked_files(engine, root, inst.query, mode,
                                          keyword_ready=first_phase, fusion=fusion)  # fmt: skip
                    ranks[system][inst.instance_id] = first_gold_rank(ranked, inst.gold_files)
                ranked = baseline.rank(inst.query)
                ranks[BASELINE][inst.instance_id] = first_gold_rank(ranked, inst.gold_files)
        model = engine.embedder.identity
    finally:
        engine.close()
    splits: dict[str, set[str]] = {
        name: {i.instance_id for i in instances if i.project in members}
        for name, members in (("tune", TUNE), ("report", REPORT), ("all", TUNE + REPORT))
    }
    # Every system on the embedded trees' issues, unless a split already is just those.
    on_embedded = {i.instance_id for i in instances if i.tree in embedded}
    if on_embedded and on_embedded not in splits.values():
        splits["embedded"] = on_embedded

    def covers(system: str, ids: set[str]) -> bool:  # dense rows: embedded trees only
        return system in NO_DENSE or ids <= on_embedded

    table = {
        system: {
            name: metrics([r for iid, r in got.items() if iid in ids])
            if covers(system, ids)
            else {"n": 0}
            for name, ids in splits.items()
        }
        for system, got in ranks.items()
    }
    end = machine_facts()
    machine.update(load_average_start=machine.pop("load_average"),
                   load_average_end=end["load_average"], finished=end["time"])  # fmt: skip
    result = {
        "suite": "localization",
        "machine": machine,
        "model": model,
        "keyword_ready": not embedded,
        "embedded_trees": sorted(embedded),
        "trees": sorted({i.tree for i in instances}),
        "weights": dict(weights or {}),
        "instances": len(instances),
        "skipped": skipped,
        "metrics": table,
        "targets": targets(table),
        "ranks": ranks,
        "index_seconds": timing,
        "seconds": round(time.perf_counter() - started, 1),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print_table(table)
    return result


#: What the product is judged on: its hybrid search (on a first-phase index, when the run
#: did not embed) against the pinned BM25 on the report projects.
MRR_RATIO = 1.15
DENSE_GAIN = 0.10


def targets(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    strong = table[BASELINE]["report"]
    full = table.get("hybrid", {}).get("report", {})
    system = "hybrid" if full.get("n") and full["n"] == strong.get("n") else KEYWORD_READY
    ours = table.get(system, {}).get("report", {})
    out: dict[str, Any] = {}
    if ours.get("n") and strong.get("n"):
        ratio = ours["mrr"] / strong["mrr"] if strong["mrr"] else None
        out["localization_mrr_ratio"] = {
            "system": system, "target": MRR_RATIO,
            "measured": None if ratio is None else round(ratio, 3),
            "met": ratio is not None and ratio >= MRR_RATIO,
        }  # fmt: skip
        out["localization_r5"] = {
            "system": system, "target": strong["r@5"], "measured": ours["r@5"],
            "met": ours["r@5"] >= strong["r@5"],
        }  # fmt: skip
    dense = table.get("dense", {}).get("report", {})
    if system == "hybrid" and dense.get("mrr") and dense["n"] == ours["n"]:
        gain = ours["mrr"] / dense["mrr"] - 1
        out["localization_hybrid_vs_dense"] = {
            "target": DENSE_GAIN, "measured": round(gain, 4), "met": gain >= DENSE_GAIN,
        }  # fmt: skip
    return out


def print_table(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    print(f"{'system':<20} {'split':<7} {'n':>4} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
    for system, splits in table.items():
        for split, m in splits.items():
            if m.get("n"):
                print(f"{system:<20} {split:<7} {m['n']:>4} {m['r@1']:>6.3f} {m['r@5']:>6.3f} "
                      f"{m['r@10']:>6.3f} {m['mrr']:>6.3f}")  # fmt: skip


def parse_weights(items: Sequence[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs naming numeric fields of `codectxd.ranking.Weights`."""
    from dataclasses import fields

    from codectxd.ranking import Weights

    numeric = {f.name for f in fields(Weights) if f.type in ("float", float)}
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in numeric:
            raise ValueError(f"--weights: {item!r} is not NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(numeric))}")  # fmt: skip
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--weights: {item!r}: {value!r} is not a number") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.localization",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--projects", nargs="+", default=list(TUNE + REPORT))
    parser.add_argument("--limit", type=int, help="at most N instances (a quick check)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--keyword-ready",
        action="store_true",
        help="do not embed: search the first phase's index (BM25, names, paths; no dense side)",
    )
    which.add_argument(
        "--embed",
        nargs="*",
        metavar="TREE",
        help="embed only these trees (a project, or one version: django@3.1); hybrid and dense "
        "rows for them alone, the others searched as the first phase serves them (default: "
        "embed every tree)",
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        metavar="NAME=VALUE",
        default=[],
        help="replace fusion weights (fields of codectxd.ranking.Weights, e.g. "
        "dense_share_long=0.5) for every codectx system; tune on the tuning projects only",
    )
    args = parser.parse_args(argv)
    selected = [i for i in load_instances() if i.named_by(args.projects)]
    unknown = [spec for spec in args.projects if not any(i.named_by([spec]) for i in selected)]
    if unknown:
        parser.error(f"--projects names no instance: {', '.join(unknown)}")
    unknown = [spec for spec in args.embed or () if not any(i.named_by([spec]) for i in selected)]
    if unknown:
        parser.error(f"--embed names trees not run: {', '.join(unknown)}")
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    run(args.modes, args.projects, args.output, args.limit, args.keyword_ready, args.embed, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
