"""Crash-consistency harness: kill the real daemon at random moments, restart it, and compare
its index with a clean full index of the same tree.

Used by tests/test_crash.py (a few trials in CI, more in the slow suite) and runnable on its own
for as many trials as you like:

    python -m tests.crash_harness --trials 50 --seed 7 --json crash.json

Each trial: build a repository, start the daemon on a private data dir, then one scenario
    full     — kill at a random moment of the first index;
    phase1   — kill while the first index is in its first phase (keyword search);
    phase2   — kill while the second phase embeds (every file keyword-searchable already);
    edit     — index, then edit / add / delete files while it runs, kill during the sync;
    branch   — index, then rewrite half the tree at once (a branch switch), kill mid-resync;
and, while the daemon is down, change a few more files. Restart, wait until it reports
fresh and fully embedded, stop it (SIGTERM, which must exit 0 within 5 s) and read its
collection. The reference is `codectxd index` of the final tree in a fresh data dir (both
phases). Any missing, duplicate or stale chunk fails the trial (a chunk's id says whether its
vector is real, so a chunk left without its vector is missing and stale).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codectxd.config import load_settings
from codectxd.engine import Engine
from tests.daemon_harness import DaemonProcess

SCENARIOS = ("full", "phase1", "phase2", "edit", "branch")
LANGS = {
    ".py": lambda name, i: f'def {name}(value):\n    """Step {i}."""\n    return value + {i}\n\n\n',
    ".go": lambda name, i: f"func {name}(v int) int {{\n\treturn v + {i}\n}}\n\n",
    ".ts": lambda name, i: (
        f"export function {name}(v: number): number {{\n  return v + {i};\n}}\n\n"
    ),
    ".rs": lambda name, i: f"fn {name}(v: i64) -> i64 {{\n    v + {i}\n}}\n\n",
}


def make_file(rng: random.Random, ext: str, tag: str, functions: int) -> str:
    head = {".go": "package p\n\n", ".py": "import os\n\n\n"}.get(ext, "")
    body = "".join(LANGS[ext](f"{tag}_fn_{i}_{rng.randrange(10**6)}", i) for i in range(functions))
    return head + body


def build_tree(root: Path, rng: random.Random, files: int) -> None:
    for i in range(files):
        ext = rng.choice(list(LANGS))
        path = root / f"pkg{i % 5}" / f"mod{i}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make_file(rng, ext, f"m{i}", rng.randint(2, 12)))


def mutate(root: Path, rng: random.Random, fraction: float) -> int:
    """Rewrite, delete and add files (a branch switch when `fraction` is large)."""
    existing = sorted(p for p in root.rglob("*") if p.is_file())
    changed = 0
    for path in existing:
        roll = rng.random()
        if roll < fraction * 0.6:
            path.write_text(make_file(rng, path.suffix, f"e{changed}", rng.randint(1, 10)))
        elif roll < fraction * 0.8:
            path.unlink()
        else:
            continue
        changed += 1
    for j in range(int(len(existing) * fraction * 0.2) + 1):
        ext = rng.choice(list(LANGS))
        path = root / f"pkg{rng.randrange(7)}" / f"new{rng.randrange(10**6)}_{j}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make_file(rng, ext, f"n{j}", rng.randint(1, 8)))
        changed += 1
    return changed


def index_rows(data_dir: Path, root: Path) -> list[tuple[str, str, int, int, str]]:
    """Every row of the repository's collection: (id, path, start, end, content hash), and
    every definition of its symbol table in the same shape (`def:` ids)."""
    settings = load_settings(
        {"CODECTX_DATA_DIR": str(data_dir), "CODECTX_CONFIG": str(data_dir / "none.toml")}
    )
    engine = Engine(settings)
    try:
        coll = engine.collection_for(root)
        if not engine.store.has_collection(coll):
            return []
        rows = engine.store.rows_of(
            coll, 'id != ""', ["id", "path", "start_line", "end_line", "content_hash"]
        )
        definitions = engine.snapshot.select_definitions(coll, "1", [], "path", 10**7)
        return sorted(
            [(r["id"], r["path"], r["start_line"], r["end_line"], r["content_hash"]) for r in rows]
            + [(f"def:{d.path}:{d.qualified}:{d.def_line}", d.path, d.start_line, d.end_line,
                f"{d.kind}:{d.signature}") for d in definitions]
        )  # fmt: skip
    finally:
        engine.close()


def reference_rows(
    base: Path, root: Path, cache: Path | None
) -> list[tuple[str, str, int, int, str]]:
    data_dir = base / "reference"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    if cache is not None and cache.exists():
        shutil.copy(cache, data_dir / "embeddings.db")
    env = {
        **os.environ,
        "CODECTX_DATA_DIR": str(data_dir),
        "CODECTX_CONFIG": str(data_dir / "none.toml"),
        "CODECTX_EMBED_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "codectxd", "index", str(root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"reference index failed: {out.stderr[-2000:]}")
    return index_rows(data_dir, root)


@dataclass
class Trial:
    seed: int
    scenario: str
    kill_after_s: float = 0.0
    killed_mid_work: bool = False
    killed_in: str = ""  # the repository's state when it was killed
    changed_while_running: int = 0
    changed_while_down: int = 0
    rows: int = 0
    missing: int = 0
    stale: int = 0
    duplicates: int = 0
    sigterm_exit: int | None = None
    sigterm_s: float = 0.0
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.missing == 0
            and self.stale == 0
            and self.duplicates == 0
            and self.sigterm_exit == 0
            and self.sigterm_s < 5.0
        )


def _state(proc: DaemonProcess, root: Path) -> dict | None:
    try:
        repos = proc.call("list", timeout_s=5)["repos"]
    except Exception:  # noqa: BLE001 - the daemon may be starting
        return None
    return next((r for r in repos if r["root"] == str(root)), None)


def _busy(info: dict | None) -> bool:
    return info is None or info["state"] != "ready" or bool(info["files_pending"])


def _wait_phase(proc: DaemonProcess, root: Path, phase: str, timeout_s: float = 120.0) -> None:
    """Until the first index is in `phase`: "phase1" (some files stored, the first phase
    running) or "phase2" (keyword-ready, the second phase embedding)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _state(proc, root)
        state = info["state"] if info is not None else ""
        if phase == "phase1" and state == "indexing":
            return
        if phase == "phase2" and state == "keyword_ready" and info["embedded"] < 1.0:
            return
        if state == "ready":
            return  # too late to catch it: the trial records where the kill landed
        time.sleep(0.005)


def run_trial(
    base: Path, seed: int, scenario: str, *, files: int = 40, warm_cache: Path | None = None
) -> Trial:
    """One kill-and-recover trial in `base` (a short, private directory)."""
    rng = random.Random(seed)
    trial = Trial(seed=seed, scenario=scenario)
    started = time.monotonic()
    root = base / "repo"
    build_tree(root, rng, files)
    work = base / "daemon"
    proc = DaemonProcess(work)
    work.mkdir(parents=True, exist_ok=True)
    proc.data_dir.mkdir(parents=True, exist_ok=True)
    if warm_cache is not None and warm_cache.exists() and rng.random() < 0.5:
        shutil.copy(warm_cache, proc.data_dir / "embeddings.db")
    try:
        proc.start()
        added = time.monotonic()
        proc.call("add", {"path": str(root)})
        if scenario in ("phase1", "phase2"):
            _wait_phase(proc, root, scenario)
            if scenario == "phase2":  # anywhere in it: embedding a group, or committing one
                time.sleep(rng.uniform(0.0, 1.5))
        else:
            if scenario != "full":
                proc.wait_ready(root, timeout_s=600)
                fraction = 0.15 if scenario == "edit" else 0.6
                trial.changed_while_running = mutate(root, rng, fraction)
            time.sleep(rng.uniform(0.05, 0.8 if scenario == "edit" else 3.0))
        trial.kill_after_s = round(time.monotonic() - added, 3)
        info = _state(proc, root)
        trial.killed_mid_work = _busy(info)
        trial.killed_in = info["state"] if info else "starting"
        proc.kill()  # SIGKILL
        trial.changed_while_down = mutate(root, rng, 0.05)
        proc.start()
        proc.wait_ready(root, timeout_s=900)
        stop_started = time.monotonic()
        trial.sigterm_exit = proc.stop()
        trial.sigterm_s = time.monotonic() - stop_started
        got = index_rows(proc.data_dir, root)
        cache = proc.data_dir / "embeddings.db"
        want = reference_rows(base, root, cache)
        trial.rows = len(want)
        ids = Counter(row[0] for row in got)
        trial.duplicates = sum(n - 1 for n in ids.values() if n > 1)
        got_set, want_set = set(got), set(want)
        trial.missing = len(want_set - got_set)
        trial.stale = len(got_set - want_set)
    except Exception as exc:  # noqa: BLE001 - a harness failure is a failed trial, with reason
        trial.error = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        proc.kill()
        trial.seconds = round(time.monotonic() - started, 1)
    return trial


@dataclass
class Summary:
    trials: list[Trial] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "trials": len(self.trials),
            "passed": sum(t.ok for t in self.trials),
            "killed_mid_work": sum(t.killed_mid_work for t in self.trials),
            "by_scenario": dict(Counter(t.scenario for t in self.trials)),
            "killed_in": dict(Counter(t.killed_in for t in self.trials)),
            "missing": sum(t.missing for t in self.trials),
            "stale": sum(t.stale for t in self.trials),
            "duplicates": sum(t.duplicates for t in self.trials),
            "max_sigterm_s": max((t.sigterm_s for t in self.trials), default=0.0),
            "rows_compared": sum(t.rows for t in self.trials),
            "details": [asdict(t) | {"ok": t.ok} for t in self.trials],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    summary = Summary()
    cache_home = Path(tempfile.mkdtemp(prefix="cxc", dir="/tmp"))
    warm = cache_home / "warm.db"
    try:
        for n in range(args.trials):
            base = Path(tempfile.mkdtemp(prefix="cxt", dir="/tmp"))
            scenario = SCENARIOS[n % len(SCENARIOS)]
            trial = run_trial(base, args.seed + n, scenario, files=args.files, warm_cache=warm)
            cache = base / "daemon" / "data" / "embeddings.db"
            if cache.exists():
                shutil.copy(cache, warm)  # later trials sometimes start warm
            shutil.rmtree(base, ignore_errors=True)
            summary.trials.append(trial)
            print(
                f"trial {n + 1}/{args.trials} {scenario:7} seed={trial.seed} "
                f"{'ok' if trial.ok else 'FAIL'} rows={trial.rows} missing={trial.missing} "
                f"stale={trial.stale} dup={trial.duplicates} kill@{trial.kill_after_s:.2f}s "
                f"in={trial.killed_in} mid-work={trial.killed_mid_work} "
                f"sigterm={trial.sigterm_s:.2f}s "
                f"{trial.error}",
                flush=True,
            )
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)
    result = summary.as_dict()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "details"}))
    return 0 if result["passed"] == result["trials"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
