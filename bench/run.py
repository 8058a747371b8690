"""What every performance suite shares: the real daemon as a subprocess, RSS sampling, machine
facts, tables and the JSON results files.

The daemon runs exactly as a user would run it (``python -m codectxd start``) with private data
and runtime directories (the runtime dir is a short ``/tmp/cxb*`` path: Unix socket paths are
limited to ~107 bytes) and is always stopped, then killed if it does not stop, by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from codectx_client.connection import ClientError, Connection, RemoteError, connect

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
#: Environment prefixes of codectx settings: removed so a user's config never leaks in.
_SETTING_PREFIXES = ("CODECTX_", "EMBEDDING_", "MILVUS_", "CHUNK_", "SPLITTER_")
_PACKAGES = (
    "codectxd",  # the distribution (called "codectx" before 2026-12)
    "milvus-lite",
    "pymilvus",
    "onnxruntime",
    "tokenizers",
    "watchfiles",
    "tree-sitter",
    "numpy",
    "psutil",
)


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """Options every suite receives.

    Attributes:
        smoke: tiny inputs (the whole smoke run stays under two minutes).
        runs: repetitions of each measurement (medians are reported).
        fresh: rebuild cached corpora and indexes instead of reusing them.
        output_dir: where ``<suite>.json`` is written.
        skip: parts of suites not to run (each suite's docstring names its parts).
        model: ``EMBEDDING_MODEL`` for every daemon and embedder of the run (None: the
            product's default at the time of the run).
    """

    smoke: bool = False
    runs: int = 5
    fresh: bool = False
    output_dir: Path = RESULTS_DIR
    skip: frozenset[str] = frozenset()
    model: str | None = None


def model_for(options: SuiteOptions) -> str:
    """The local embedding model a run uses (the product's default unless overridden)."""
    from codectxd.config import load_settings
    from codectxd.embeddings.local import DEFAULT_LOCAL_MODEL

    env = {"CODECTX_CONFIG": "/nonexistent/codectx.toml"}
    if options.model:
        env["EMBEDDING_MODEL"] = options.model
    return load_settings(env).embedding.model or DEFAULT_LOCAL_MODEL


def perf_cache(options: SuiteOptions) -> Path:
    """Where a run's indexes are cached: one directory per embedding model, so a change of
    the default model never reuses (or silently re-embeds) another model's index."""
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in model_for(options))
    return CACHE_DIR / "perf" / slug


def daemon_env(options: SuiteOptions) -> dict[str, str]:
    """Settings every daemon (and in-process embedder) of the run gets."""
    return {"EMBEDDING_MODEL": options.model} if options.model else {}


#: Settings given to every `Daemon` of this process (set once per run by `configure_run`).
_RUN_ENV: dict[str, str] = {}


def configure_run(options: SuiteOptions) -> None:
    """Apply the run-wide daemon settings (the embedding model) to every later `Daemon`."""
    _RUN_ENV.clear()
    _RUN_ENV.update(daemon_env(options))


def run_env() -> dict[str, str]:
    """The run-wide daemon settings."""
    return dict(_RUN_ENV)


# --- machine facts --------------------------------------------------------------------------


def _tool_version(command: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def code_dir() -> Path:
    """The checkout whose ``codectxd`` this run measures.

    Usually this repository; when the suites are run from another checkout (for instance a
    ``git worktree`` of a commit, so that edits in progress elsewhere are not measured), its
    ``codectxd`` comes first on ``sys.path`` and the daemons started from there use it too.
    """
    import codectxd

    return Path(codectxd.__file__).resolve().parent.parent


def _git_commit() -> str | None:
    """The measured code's commit (``+dirty`` when ``codectxd/`` or ``client/`` differ)."""
    where = str(code_dir())
    version = _tool_version(["git", "-C", where, "rev-parse", "--short", "HEAD"])
    if version is None:
        return None
    dirty = subprocess.run(
        ["git", "-C", where, "status", "--porcelain", "codectxd", "client"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return version + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """Cores, memory, load, CPU model and the versions of everything measured."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    versions["ripgrep"] = _tool_version(["rg", "--version"])
    versions["hyperfine"] = _tool_version(["hyperfine", "--version"])
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git": _git_commit(),
        "code_dir": str(code_dir()),
        "versions": versions,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# --- results --------------------------------------------------------------------------------


def result_path(suite: str, options: SuiteOptions) -> Path:
    """``<output>/<suite>.json``, or ``<suite>-smoke.json`` for a smoke run."""
    return options.output_dir / f"{suite}{'-smoke' if options.smoke else ''}.json"


def save_result(
    suite: str,
    options: SuiteOptions,
    started: dict[str, Any],
    data: Mapping[str, Any],
    seconds: float,
) -> Path:
    """Write one suite's JSON (atomically) with the machine facts at its start and end."""
    end = machine_facts()
    payload = {
        "suite": suite,
        "smoke": options.smoke,
        "runs": options.runs,
        "seconds": round(seconds, 1),
        "machine": {
            **started,
            "load_average_start": started["load_average"],
            "load_average_end": end["load_average"],
            "finished": end["time"],
        },
        **data,
    }
    payload["machine"].pop("load_average", None)
    path = result_path(suite, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


def log(message: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------


def rss_of_tree(pid: int) -> tuple[int, int]:
    """(RSS of the process, RSS of all its descendants) in bytes; (0, 0) once it is gone."""
    try:
        proc = psutil.Process(pid)
        own = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return own, total


@dataclass(slots=True)
class RssSampler:
    """Samples a process tree's RSS every ``interval_s`` in a thread.

    Attributes:
        samples: (seconds since start, own RSS MB, children RSS MB).
    """

    pid: int
    interval_s: float = 0.5
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        started = time.monotonic()

        def loop() -> None:
            while not self._stop.is_set():
                own, children = rss_of_tree(self.pid)
                if own:
                    self.samples.append(
                        (
                            round(time.monotonic() - started, 2),
                            round(own / 2**20, 1),
                            round(children / 2**20, 1),
                        )
                    )
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def peak_mb(self) -> float:
        """Peak of process + children RSS (MB)."""
        return max((own + kids for _, own, kids in self.samples), default=0.0)


@contextlib.contextmanager
def short_tmp(prefix: str = "cxb") -> Iterator[Path]:
    """A short temporary directory under /tmp, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.05,
    what: str = "condition",
) -> float:
    """Poll ``predicate`` until true; return the seconds it took.

    Raises:
        TimeoutError: not true within ``timeout_s``.
    """
    started = time.perf_counter()
    while True:
        if predicate():
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what} not reached within {timeout_s:.0f}s")
        time.sleep(interval_s)


class Daemon:
    """The real ``codectxd`` as a subprocess on private directories.

    Args:
        data_dir: index, state and embedding cache (may be a cached directory).
        runtime_dir: socket and lock; keep it short (``/tmp/cxb...``).
        standin: run ``bench.standin`` (the real daemon with stand-in vectors instead of the
            model's inference) — only to prepare an index that a later, real daemon measures.
        env: extra settings (``CODECTX_MEMORY_BUDGET_MB``...).
    """

    def __init__(
        self, data_dir: Path, runtime_dir: Path, *, standin: bool = False, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.runtime_dir = runtime_dir
        self.socket = runtime_dir / "codectxd.sock"
        self.log = data_dir / "bench-daemon.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIXES)}
        self.env.update(
            CODECTX_DATA_DIR=str(data_dir),
            CODECTX_RUNTIME_DIR=str(runtime_dir),
            CODECTX_CONFIG=str(runtime_dir / "none.toml"),
            CODECTX_SOCKET=str(self.socket),
            CODECTX_LOG_LEVEL="info",
            GRPC_VERBOSITY="NONE",
            # A periodic reconcile in the middle of a measurement would only add noise.
            CODECTX_RESCAN_INTERVAL_S="0",
        )
        self.env.update(_RUN_ENV)
        self.env.update(env)
        # The measured checkout's codectxd first, then this bench package (bench.standin).
        paths = [str(code_dir()), str(BENCH_DIR.parent), self.env.get("PYTHONPATH", "")]
        self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        self.module = "bench.standin" if standin else "codectxd"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ping_s: float | None = None  # start → first ping answered
        self.list_races = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 300.0) -> float:
        """Start the daemon and wait until it answers ``status``; returns the seconds taken."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.log, "ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, "start"],
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        deadline = self.started_at + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with self.connect() as conn:
                    conn.call("ping", timeout_s=5)
                    if self.ping_s is None:
                        self.ping_s = time.perf_counter() - self.started_at
                    if conn.call("status", timeout_s=60)["daemon"]["model"]:
                        return time.perf_counter() - self.started_at
            except ClientError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"daemon did not answer in {timeout_s}s:\n{self.log_tail()}")

    def connect(self) -> Connection:
        """A new socket connection (the in-process client)."""
        return connect(self.socket)

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 120.0
    ) -> Any:
        """One request on a fresh connection."""
        with self.connect() as conn:
            return conn.call(method, params, timeout_s=timeout_s)

    def repo(self, root: Path) -> dict[str, Any]:
        """The RepoInfo of one registered repository.

        Works around a race of older daemons, kept for baselines measured at their commits:
        ``list`` iterated the repository dict across an ``await`` while start-up still added
        repositories, and failed with "dictionary changed size during iteration" (counted in
        ``list_races``; the daemon now iterates a copy).
        """
        for _ in range(100):
            try:
                repos = self.call("list")["repos"]
            except RemoteError as exc:
                if "changed size during iteration" not in str(exc):
                    raise
                self.list_races += 1
                time.sleep(0.05)
                continue
            return next(r for r in repos if r["root"] == str(root))
        raise RuntimeError("list kept failing")

    def is_fresh(self, root: Path) -> bool:
        """Initial index done and fully embedded, nothing pending, searches say ``fresh``."""
        info = self.repo(root)
        if info["state"] != "ready" or info["files_pending"] or not info["last_sync"]:
            return False
        result = self.call(
            "search", {"query": "x", "repos": [str(root)], "limit": 1, "mode": "lexical"}
        )
        return bool(result["fresh"]) and not result["indexing"]

    def wait_fresh(self, root: Path, timeout_s: float, interval_s: float = 0.2) -> float:
        """Block until ``root`` is fresh and fully embedded; return the seconds waited."""
        return wait_until(lambda: self.is_fresh(root), timeout_s, interval_s, what=f"{root} fresh")

    def is_keyword_ready(self, root: Path) -> bool:
        """Every file keyword-searchable, nothing pending (the first phase done); the second
        phase may still be embedding."""
        info = self.repo(root)
        if info["state"] not in ("keyword_ready", "ready") or info["files_pending"]:
            return False
        result = self.call(
            "search", {"query": "x", "repos": [str(root)], "limit": 1, "mode": "lexical"}
        )
        return bool(result["fresh"]) and not result["indexing"]

    def wait_keyword_ready(self, root: Path, timeout_s: float, interval_s: float = 0.1) -> float:
        return wait_until(
            lambda: self.is_keyword_ready(root), timeout_s, interval_s, what=f"{root} keyword-ready"
        )

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM, wait, then SIGKILL (the daemon and, through its lock, the Milvus child)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _reap(children)

    def kill(self) -> None:
        """SIGKILL the daemon and its children now."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        _reap(children, grace_s=0.0)

    def rss_mb(self) -> tuple[float, float]:
        """(daemon RSS, children RSS) in MB."""
        own, children = rss_of_tree(self.pid)
        return round(own / 2**20, 1), round(children / 2**20, 1)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def prepare_index(data_dir: Path, roots: Sequence[Path], timeout_s: float) -> dict[str, Any]:
    """Make sure ``roots`` are registered and fully indexed in ``data_dir``, using the stand-in
    daemon (``bench.standin``: real everything but the model's inference) for whatever is not
    indexed yet; a no-op beyond one daemon start when the cached index is complete.

    Returns:
        ``{"seconds", "standin": True, "repos": {root: {"files", "chunks"}}}``.
    """
    started = time.perf_counter()
    out: dict[str, Any] = {"standin": True, "repos": {}}
    with short_tmp() as run_dir, Daemon(data_dir, run_dir / "r", standin=True) as daemon:
        daemon.start()
        for root in roots:
            daemon.call("add", {"path": str(root)})
        for root in roots:
            daemon.wait_fresh(root, timeout_s, 0.5)
            info = daemon.repo(root)
            out["repos"][str(root)] = {"files": info["files_indexed"], "chunks": info["chunks"]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def settle_images(data_dir: Path, roots: Sequence[Path], timeout_s: float) -> dict[str, Any]:
    """Leave ``roots`` as a daemon left running leaves them once nobody writes: with the
    search image of every collection large enough for one (``codectxd.image``; the daemon
    writes it after ``daemon.image_quiet_s``, 1 s here). A checkout without images (the field
    is missing from its status) is left as it is.

    Returns:
        ``{root: {"image": bool, "chunks"}, "seconds"}``.
    """
    started = time.perf_counter()
    out: dict[str, Any] = {}
    with short_tmp() as run_dir, Daemon(data_dir, run_dir / "r", CODECTX_IMAGE_QUIET_S="1") as d:
        d.start()
        for root in roots:
            d.wait_fresh(root, timeout_s, 0.5)
            deadline = time.monotonic() + timeout_s
            while True:
                info = d.repo(root)
                if "image" not in info or info["image"] or info["chunks"] < IMAGE_MIN_ROWS:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no search image of {root} after {timeout_s:.0f} s")
                time.sleep(0.5)
            out[str(root)] = {"image": bool(info.get("image")), "chunks": info["chunks"]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    log(f"search images settled in {out['seconds']} s: {out}")
    return out


#: The daemon's default `daemon.image_min_rows` (a collection's rows; chunks here).
IMAGE_MIN_ROWS = 20_000


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _reap(children: list[psutil.Process], grace_s: float = 10.0) -> None:
    """Wait for the daemon's children (Milvus Lite's engine exits by itself), then kill."""
    _, alive = psutil.wait_procs(children, timeout=grace_s) if grace_s else ([], children)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
