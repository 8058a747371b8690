"""Hostile files in watched repositories, against the real daemon (subprocess, socket, Milvus Lite).

Every hostile entry must be indexed correctly or skipped with a documented reason (visible in
`status`), and no scenario may crash or stall the daemon: afterwards it still answers ping and a
search, and the repository becomes fresh again. Tree builders live in tests/hostile_tree.py.

Long variants (a 200k-file tree) run with CODECTX_SLOW=1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from codectx_client.connection import RemoteError
from tests import hostile_tree as ht
from tests.daemon_harness import DaemonProcess

SLOW = pytest.mark.skipif(
    os.environ.get("CODECTX_SLOW") != "1", reason="long-running; set CODECTX_SLOW=1 to run"
)
NOT_ROOT_ONLY = pytest.mark.skipif(
    ht.is_root(),
    reason="root bypasses file permissions, and the daemon cannot drop privileges "
    "in this harness: permission-denied files can only be tested as a normal user",
)


# --- fixtures and helpers ---------------------------------------------------------------------


def _base(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    base = _base("cxh")
    proc = DaemonProcess(base).start()
    try:
        yield proc
    finally:
        proc.stop()
        ht.close_sockets()
        ht.restore_permissions(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def repo(daemon: DaemonProcess, request: pytest.FixtureRequest) -> Iterator[Path]:
    """An empty repository directory (not yet added), removed from the daemon afterwards."""
    name = request.node.name.removeprefix("test_")[:20]
    root = Path(tempfile.mkdtemp(prefix=f"r_{name}_", dir=daemon.base))
    yield root
    with contextlib.suppress(Exception):
        daemon.call("remove", {"path": str(root)})


def ping_latency(daemon: DaemonProcess, timeout_s: float = 10.0) -> float:
    started = time.perf_counter()
    with daemon.connect() as conn:
        pong = conn.call("ping", timeout_s=timeout_s)
    assert pong["pid"] == daemon.proc.pid
    return time.perf_counter() - started


def assert_healthy(daemon: DaemonProcess, *roots: Path, timeout_s: float = 120.0) -> None:
    """The daemon is alive, answers ping quickly and a search, and every root becomes fresh."""
    assert daemon.proc.poll() is None, daemon.log_text()
    assert ping_latency(daemon) < 2.0
    result = daemon.call("search", {"query": "function", "limit": 3}, timeout_s=30)
    assert isinstance(result["results"], list)
    for root in roots:
        daemon.wait_fresh(root, timeout_s)


def lexical(
    daemon: DaemonProcess, query: str, repos: list[str] | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    return daemon.call(
        "search", {"query": query, "mode": "lexical", "limit": limit, "repos": repos or []}
    )["results"]


def has_marker(daemon: DaemonProcess, marker: str, repos: list[str] | None = None) -> list[str]:
    """Paths whose indexed content contains `marker` (BM25 also matches partial tokens, so
    a non-empty result alone proves nothing)."""
    return [h["path"] for h in lexical(daemon, marker, repos) if marker in h["content"]]


def wait_marker(
    daemon: DaemonProcess, marker: str, repos: list[str] | None = None, timeout_s: float = 30.0
) -> list[str]:
    deadline = time.monotonic() + timeout_s
    found = has_marker(daemon, marker, repos)
    while not found and time.monotonic() < deadline:
        time.sleep(0.3)
        found = has_marker(daemon, marker, repos)
    return found


def repo_status(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    return daemon.call("status", {"repo": str(root), "errors": 1000})["repos"][0]


def wait_skips(
    daemon: DaemonProcess, root: Path, expected: dict[str, str], timeout_s: float = 30.0
) -> None:
    """Until `status` reports each path skipped with its reason ({path: reason}): the event
    that says the daemon has seen and judged the change (before a negative assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = repo_status(daemon, root)["problems"]
        reasons = {p["path"]: p["reason"].split(":", 1)[0] for p in problems}
        if all(reasons.get(path) == reason for path, reason in expected.items()):
            return
        assert time.monotonic() < deadline, (
            f"skips {expected} not reported; status: {reasons}\n{daemon.log_text()[-6000:]}"
        )
        time.sleep(0.1)


def info(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    return next(r for r in daemon.call("list")["repos"] if r["root"] == str(root))


def check_expectations(daemon: DaemonProcess, root: Path, expects: list[ht.Expect]) -> None:
    """Every hostile entry is skipped with an accepted reason or searchable at the right line;
    content that must not be indexed is found nowhere."""
    item = repo_status(daemon, root)
    problems = {p["path"]: p["reason"].split(":", 1)[0] for p in item["problems"]}
    skipped = item["skipped"]
    failures: list[str] = []
    for exp in expects:
        if not exp.indexed:
            reason = problems.get(exp.path)
            if reason is None and "unsupported" in exp.reasons and skipped.get("unsupported"):
                reason = "unsupported"  # status lists counts, not examples, of unsupported
            if reason not in exp.reasons:
                failures.append(
                    f"{exp.path!r}: skip reason {reason!r}, expected one of {sorted(exp.reasons)}"
                )
            elif not skipped.get(reason):
                failures.append(f"{exp.path!r}: {reason} not counted in skipped {skipped}")
        else:
            hits = [
                h
                for h in lexical(daemon, exp.marker or "", [str(root)])
                if exp.marker in h["content"]
            ]
            if not hits:
                failures.append(f"{exp.path!r}: marker {exp.marker} not searchable")
                continue
            if hits[0]["path"] != exp.path:
                failures.append(f"{exp.path!r}: marker found in {hits[0]['path']!r}")
            if exp.line is not None:
                hit = hits[0]
                lines = hit["content"].split("\n")
                offset = exp.line - hit["start_line"]
                if not (
                    hit["start_line"] <= exp.line <= hit["end_line"]
                    and 0 <= offset < len(lines)
                    and exp.marker in lines[offset]
                ):
                    failures.append(
                        f"{exp.path!r}: marker expected on line {exp.line}, hit spans "
                        f"{hit['start_line']}-{hit['end_line']}: {hit['content'][:200]!r}"
                    )
        for marker in exp.absent:
            leaked = [h["path"] for h in lexical(daemon, marker) if marker in h["content"]]
            if leaked:
                failures.append(f"{exp.path!r}: content {marker!r} indexed as {leaked}")
    assert not failures, "\n".join(failures) + f"\nproblems={problems}\nskipped={skipped}"


def add_and_check(
    daemon: DaemonProcess, root: Path, expects: list[ht.Expect], timeout_s: float = 120.0
) -> dict[str, Any]:
    daemon.call("add", {"path": str(root)})
    repo_info = daemon.wait_fresh(root, timeout_s)
    check_expectations(daemon, root, expects)
    assert_healthy(daemon, root)
    return repo_info


def daemon_rchar(daemon: DaemonProcess) -> int:
    """Bytes the daemon process has read through read() (page cache included)."""
    with open(f"/proc/{daemon.proc.pid}/io") as handle:
        for line in handle:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


needs_proc_io = pytest.mark.skipif(
    not os.path.exists("/proc/self/io"), reason="needs /proc/<pid>/io (Linux)"
)


class PingProbe:
    """Measures ping latency from a background thread (a fresh connection each time)."""

    def __init__(self, daemon: DaemonProcess, interval_s: float = 0.1) -> None:
        self.daemon = daemon
        self.interval_s = interval_s
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(ping_latency(self.daemon, timeout_s=10))
            except BaseException as exc:  # noqa: BLE001
                self.errors.append(exc)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PingProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


# --- content -----------------------------------------------------------------------------------


def test_binary_files(daemon: DaemonProcess, repo: Path) -> None:
    add_and_check(daemon, repo, ht.binary_files(repo))


@needs_proc_io
def test_100mb_file_skipped_without_reading(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.huge_file(repo)
    (repo / "small.py").write_text("def small_next_to_huge_qz():\n    return 1\n")
    # Control: a 900 KB file the daemon must read (to find it is binary), so the measurement
    # below demonstrably sees reads.
    (repo / "control.py").write_bytes(b"\x00" + b"c" * 900_000)
    before = daemon_rchar(daemon)
    started = time.monotonic()
    add_and_check(
        daemon,
        repo,
        [
            *expects,
            ht.indexed("small.py", "small_next_to_huge_qz", 1),
            ht.skipped("control.py", "binary"),
        ],
    )
    assert time.monotonic() - started < 30
    assert daemon_rchar(daemon) - before >= 900_000, "rchar does not see the daemon's reads"
    # A second huge file appears while watched (the single-path classification path).
    with open(repo / "huge2.py", "wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    daemon.call(
        "search",
        {"query": "x", "repos": [str(repo)], "wait_s": 20, "wait_paths": [str(repo / "huge2.py")]},
    )
    daemon.wait_fresh(repo)
    read = daemon_rchar(daemon) - before
    assert read < 20 * 1024 * 1024, f"the daemon read {read} bytes: a huge file was read"
    item = repo_status(daemon, repo)
    assert item["skipped"].get("too_large", 0) >= 1
    assert time.monotonic() - started < 60


def test_minified_single_line_js(daemon: DaemonProcess, repo: Path) -> None:
    (repo / "app.js").write_text("export function tinyReadableMarkerQz(a) {\n  return a;\n}\n")
    add_and_check(
        daemon, repo, [*ht.minified_js(repo), ht.indexed("app.js", "tinyReadableMarkerQz", 1)]
    )


def test_encodings(daemon: DaemonProcess, repo: Path) -> None:
    add_and_check(daemon, repo, ht.encodings(repo))


def test_line_endings_keep_line_numbers(daemon: DaemonProcess, repo: Path) -> None:
    add_and_check(daemon, repo, ht.line_endings(repo))


def test_empty_and_whitespace_files(daemon: DaemonProcess, repo: Path) -> None:
    repo_info = add_and_check(daemon, repo, ht.empty_files(repo))
    # Nothing is left pending or failed because of files without any chunk.
    assert repo_info["files_pending"] == 0 and repo_info["files_failed"] == 0
    # Emptying a file that had chunks removes them.
    (repo / "empty/sibling.py").write_text("")
    result = daemon.call(
        "search",
        {
            "query": "beside_empty_marker_qz",
            "mode": "lexical",
            "repos": [str(repo)],
            "wait_s": 20,
            "wait_paths": [str(repo / "empty/sibling.py")],
        },
    )
    assert all("beside_empty_marker_qz" not in h["content"] for h in result["results"])


# --- file system oddities ----------------------------------------------------------------------


def test_symlink_loops_and_links_outside(daemon: DaemonProcess, repo: Path) -> None:
    outside = repo.parent / f"outside_{repo.name}"
    expects = ht.symlinks(repo, outside)
    add_and_check(daemon, repo, expects)
    # A link created while watched is not followed either.
    os.symlink(str(outside / "secret_module.py"), repo / "links/late_outside.py")
    daemon.call(
        "search",
        {"query": "x", "repos": [str(repo)], "wait_s": 20, "wait_paths": [str(repo / "links")]},
    )
    assert_healthy(daemon, repo)
    assert not [
        h
        for h in lexical(daemon, "outside_file_marker_qz")
        if "outside_file_marker_qz" in h["content"]
    ]


def _swap_dir_for_outside_link(repo: Path, outside: Path) -> None:
    """Modify sub/mod.py, then at once replace directory `sub` by a symlink to `outside`, so the
    watcher reports `sub/mod.py` and `sub` in one batch."""
    (repo / "sub/mod.py").write_text("def inside_again_qz():\n    return 2\n")
    os.rename(repo / "sub", repo / "sub_old")
    os.symlink(str(outside), repo / "sub")


def test_directory_swapped_for_outside_symlink_is_not_followed(
    daemon: DaemonProcess, repo: Path
) -> None:
    outside = repo.parent / f"outside_{repo.name}"
    (outside).mkdir()
    (outside / "mod.py").write_text("def outside_through_parent_link_qz():\n    return 1\n")
    (repo / "sub").mkdir()
    (repo / "sub/mod.py").write_text("def inside_module_qz():\n    return 1\n")
    daemon.call("add", {"path": str(repo)})
    daemon.wait_fresh(repo)
    assert lexical(daemon, "inside_module_qz", [str(repo)])
    leaked: list[str] = []
    for attempt in range(3):
        if attempt:
            os.unlink(repo / "sub")
            os.rename(repo / "sub_old", repo / "sub")
            deadline = time.monotonic() + 30
            while has_marker(daemon, "inside_again_qz", [str(repo)]) != ["sub/mod.py"]:
                assert time.monotonic() < deadline, "the restored directory was not reindexed"
                time.sleep(0.1)
            daemon.wait_fresh(repo)
        _swap_dir_for_outside_link(repo, outside)
        # The watcher reported the swap and the daemon judged it: `sub` is a link, skipped.
        wait_skips(daemon, repo, {"sub": "symlink_outside"})
        daemon.wait_fresh(repo)
        leaked = [
            h["path"]
            for h in lexical(daemon, "outside_through_parent_link_qz")
            if "outside_through_parent_link_qz" in h["content"]
        ]
        if leaked:
            break
    assert not leaked, f"content from outside the repository indexed as {leaked}"
    assert_healthy(daemon, repo)


@pytest.fixture(scope="module")
def follow_daemon() -> Iterator[DaemonProcess]:
    """A daemon with CODECTX_FOLLOW_SYMLINKS=1 (links inside the repository are followed)."""
    base = _base("cxs")
    proc = DaemonProcess(base, CODECTX_FOLLOW_SYMLINKS="1").start()
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(base, ignore_errors=True)


def _follow_tree(daemon: DaemonProcess, name: str) -> Path:
    root = daemon.base / name
    ht.symlinks(root, daemon.base / f"outside_{name}")
    os.makedirs(root / "tree/a/b")
    os.symlink("../..", root / "tree/a/b/back_to_tree")
    os.symlink("../../..", root / "tree/a/b/back_to_root")
    (root / "tree/a/b/leaf.py").write_text("def leaf_below_loops_qz():\n    return 1\n")
    daemon.call("add", {"path": str(root)})
    daemon.wait_fresh(root, timeout_s=60)
    return root


def test_follow_symlinks_mode_never_leaves_the_repo(follow_daemon: DaemonProcess) -> None:
    root = _follow_tree(follow_daemon, "follow")
    check_expectations(
        follow_daemon,
        root,
        [
            ht.skipped(
                "links/outside_file.py",
                "symlink_outside",
                absent=("outside_file_marker_qz", "outside_dir_marker_qz"),
            ),
            ht.skipped("links/outside_dir", "symlink_outside"),
            ht.skipped("links/relative_out.py", "symlink_outside"),
            ht.skipped("links/passwd.py", "symlink_outside", absent=("root:x:0:0",)),
            ht.skipped("links/here", "symlink_loop"),
            ht.skipped("links/up", "symlink_loop"),
            ht.skipped("tree/a/b/back_to_tree", "symlink_loop"),
            ht.skipped("tree/a/b/back_to_root", "symlink_loop"),
            ht.indexed("links/real.py", "real_beside_links_marker_qz", 1),
            ht.indexed("tree/a/b/leaf.py", "leaf_below_loops_qz", 1),
        ],
    )
    # The followed inside link is indexed under its own name too.
    assert "links/inside_link.py" in has_marker(follow_daemon, "real_beside_links_marker_qz")
    assert_healthy(follow_daemon, root)


def test_follow_symlinks_mode_skip_reasons(follow_daemon: DaemonProcess) -> None:
    root = _follow_tree(follow_daemon, "follow_reasons")
    check_expectations(
        follow_daemon,
        root,
        [
            ht.skipped("links/loop_a.py", "symlink_loop"),
            ht.skipped("links/loop_b.py", "symlink_loop"),
            ht.skipped("links/self.py", "symlink_loop"),
            ht.skipped("links/dangling.py", "symlink", "unreadable"),
        ],
    )


def test_fifos_sockets_and_devices_do_not_block(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.special_files(repo)
    started = time.monotonic()
    add_and_check(daemon, repo, expects, timeout_s=60)
    assert time.monotonic() - started < 60
    # A regular indexed file replaced by a FIFO while watched: old chunks go, nothing blocks.
    target = repo / "special/ordinary.py"
    target.unlink()
    os.mkfifo(target)
    with PingProbe(daemon) as probe:
        result = daemon.call(
            "search",
            {
                "query": "beside_fifo_marker_qz",
                "mode": "lexical",
                "repos": [str(repo)],
                "wait_s": 20,
                "wait_paths": [str(target)],
            },
            timeout_s=60,
        )
    assert not probe.errors and probe.worst < 2.0
    assert all("beside_fifo_marker_qz" not in h["content"] for h in result["results"])
    daemon.wait_fresh(repo)
    # A FIFO created while watched.
    os.mkfifo(repo / "special/late_pipe.ts")
    daemon.call(
        "search",
        {
            "query": "x",
            "repos": [str(repo)],
            "wait_s": 20,
            "wait_paths": [str(repo / "special/late_pipe.ts")],
        },
    )
    assert_healthy(daemon, repo)


def test_skips_found_by_the_watcher_are_reported_in_status(
    daemon: DaemonProcess, repo: Path
) -> None:
    (repo / "ok.py").write_text("def present_from_the_start_qz():\n    return 1\n")
    daemon.call("add", {"path": str(repo)})
    daemon.wait_fresh(repo)
    outside = repo.parent / f"outside_{repo.name}"
    ht._write(outside / "x.py", "def outside_late_qz():\n    return 1\n")
    os.symlink(str(outside / "x.py"), repo / "late_outside.py")
    os.symlink("ok.py", repo / "late_inside.py")
    os.mkfifo(repo / "late_pipe.py")
    with open(repo / "late_huge.py", "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    (repo / ".env").write_text("TOKEN=late\n")
    expects = [
        ht.skipped("late_outside.py", "symlink_outside"),
        ht.skipped("late_inside.py", "symlink"),
        ht.skipped("late_pipe.py", "not_regular"),
        ht.skipped("late_huge.py", "too_large"),
        ht.skipped(".env", "secret"),
    ]
    # wait_paths resolves symlinks (to outside the repo: not_found), so give it the others
    # and let the watcher report the links.
    daemon.call(
        "search",
        {
            "query": "x",
            "repos": [str(repo)],
            "wait_s": 20,
            "wait_paths": [str(repo / e.path) for e in expects[2:]],
        },
    )
    wait_skips(daemon, repo, {e.path: min(e.reasons) for e in expects})
    daemon.wait_fresh(repo)
    assert not has_marker(daemon, "outside_late_qz")
    check_expectations(daemon, repo, expects)


@NOT_ROOT_ONLY
def test_permission_denied(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.unreadable(repo)
    try:
        add_and_check(daemon, repo, expects)
    finally:
        ht.restore_permissions(repo)


def test_non_utf8_and_newline_names(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.bad_names(repo)
    add_and_check(daemon, repo, expects)
    # watchfiles cannot report such names: this repository is scanned periodically instead,
    # and says why; the daemon goes on watching the others.
    deadline = time.monotonic() + 30
    while (item := info(daemon, repo))["watching"] != "polling":
        assert time.monotonic() < deadline, item
        time.sleep(0.1)
    assert "not UTF-8" in (item["watch_error"] or ""), item
    out = daemon.client("status")
    assert "not watched: a name that is not UTF-8" in out.stdout, out.stdout
    (other,) = _add_repos(daemon, Path(tempfile.mkdtemp(dir=daemon.base)), "beside_odd_names")
    try:
        assert info(daemon, other)["watching"] == "inotify"
        assert info(daemon, other)["watch_error"] is None
        (other / "o2.py").write_text("def beside_odd_names_after_qz():\n    return 3\n")
        assert wait_marker(daemon, "beside_odd_names_after_qz", [str(other)]) == ["o2.py"]
    finally:
        _cleanup(daemon, other)
    # The same names appearing while it is scanned.
    base = os.fsencode(repo / "names")
    with open(os.path.join(base, b"late\nnew.py"), "wb") as handle:
        handle.write(b"def late_newline_name_qz():\n    pass\n")
    with open(os.path.join(base, b"late\xfe.py"), "wb") as handle:
        handle.write(b"def late_badbyte_name_qz():\n    pass\n")
    wait_skips(daemon, repo, {"names/late\nnew.py": "bad_path", "names/late\ufffd.py": "bad_path"})
    assert_healthy(daemon, repo)
    for marker in ("late_newline_name_qz", "late_badbyte_name_qz"):
        assert not [h for h in lexical(daemon, marker) if marker in h["content"]]
    # The status reply (with U+FFFD paths) still encodes, and the CLI can print it.
    out = daemon.client("status")
    assert out.returncode == 0, out.stderr


def test_special_characters_in_names_index_update_delete(daemon: DaemonProcess, repo: Path) -> None:
    """Quotes, backslashes, %, _, spaces, globs, unicode: indexed, updated, deleted correctly
    (every store write and delete quotes the path in a Milvus filter expression)."""
    expects = ht.special_names(repo)
    add_and_check(daemon, repo, expects)
    # Rewrite every file: exactly one version of each may remain in the index.
    for rel, marker in ht.SPECIAL_NAMES.items():
        (repo / rel).write_text(f"def {marker}_v2():\n    return 2\n")
    daemon.call(
        "search",
        {
            "query": "x",
            "repos": [str(repo)],
            "wait_s": 30,
            "wait_paths": [str(repo / rel) for rel in ht.SPECIAL_NAMES],
        },
    )
    daemon.wait_fresh(repo)
    for rel, marker in ht.SPECIAL_NAMES.items():
        hits = [h for h in lexical(daemon, marker, [str(repo)]) if marker in h["content"]]
        assert [h["path"] for h in hits] == [rel], (rel, hits)
        assert all(f"{marker}_v2" in h["content"] for h in hits), (rel, hits)
    # Delete them all: nothing of theirs may stay searchable.
    for rel in ht.SPECIAL_NAMES:
        (repo / rel).unlink()
    daemon.call(
        "search",
        {
            "query": "x",
            "repos": [str(repo)],
            "wait_s": 30,
            "wait_paths": [str(repo / rel) for rel in ht.SPECIAL_NAMES],
        },
    )
    daemon.wait_fresh(repo)
    for marker in ht.SPECIAL_NAMES.values():
        assert not [h for h in lexical(daemon, marker, [str(repo)]) if marker in h["content"]]
    assert info(daemon, repo)["files_indexed"] == 0
    assert_healthy(daemon, repo)


def test_path_filter_on_names_with_underscore_and_percent(
    daemon: DaemonProcess, repo: Path
) -> None:
    ht.special_names(repo)
    daemon.call("add", {"path": str(repo)})
    daemon.wait_fresh(repo)
    cases = {
        "under_score_dir": "underscore_dir_marker_qz",
        "under_score_dir/": "underscore_dir_marker_qz",
        "under_score_dir/*.py": "underscore_dir_marker_qz",
        "100%": "percent_dir_marker_qz",
        "space dir": "space_name_marker_qz",
        "ünïcödé": "unicode_name_marker_qz",
        'quote"dir': "double_quote_marker_qz",
    }
    missing = []
    for prefix, marker in cases.items():
        hits = daemon.call(
            "search", {"query": marker, "mode": "lexical", "repos": [str(repo)], "paths": [prefix]}
        )["results"]
        if not any(marker in h["content"] for h in hits):
            missing.append(prefix)
    assert not missing, f"path filters that lost their results: {missing}"


# --- churn -------------------------------------------------------------------------------------


def _churn_state(daemon: DaemonProcess, repo: Path) -> dict[str, list[str]]:
    """path → contents of the indexed chunks under churn/ (the whole index of that dir)."""
    hits = daemon.call(
        "search",
        {
            "query": "churn gen qz pad",
            "mode": "lexical",
            "repos": [str(repo)],
            "paths": ["churn"],
            "limit": 200,
        },
    )["results"]
    state: dict[str, list[str]] = {}
    for hit in hits:
        state.setdefault(hit["path"], []).append(hit["content"])
    return state


def _churn_mismatches(daemon: DaemonProcess, repo: Path, churner: ht.Churner) -> list[str]:
    state = _churn_state(daemon, repo)
    wrong = []
    for path, marker in churner.final_markers().items():
        contents = state.get(path)
        if not contents or not all(marker in c for c in contents):
            wrong.append(f"{path}: expected {marker}, index has {contents}")
    for path in churner.deleted_paths():
        if path in state:
            wrong.append(f"{path}: deleted but indexed as {state[path]}")
    return wrong


def test_files_rewritten_and_deleted_during_indexing(daemon: DaemonProcess, repo: Path) -> None:
    # Enough ordinary files that the initial index is still running while the churn starts.
    for i in range(150):
        (repo / f"steady_{i}.py").write_text(f"def steady_{i}(x):\n    return x * {i}\n")
    with ht.churning(repo, n_files=40) as churner:
        daemon.call("add", {"path": str(repo)})
        with PingProbe(daemon) as probe:
            time.sleep(6.0)
        churner.stop()
        assert not churner.errors, churner.errors
        assert churner.rounds > 10, churner.rounds
        churner.settle()
    assert not probe.errors and probe.worst < 2.0, (probe.errors[:3], probe.worst)
    # Converge without any read-your-writes hint: the watcher's events only.
    deadline = time.monotonic() + 90
    wrong: list[str] = ["not checked"]
    while time.monotonic() < deadline and wrong:
        time.sleep(1.0)
        daemon.wait_fresh(repo)
        wrong = _churn_mismatches(daemon, repo, churner)
    assert not wrong, "\n".join(wrong[:10])
    repo_info = info(daemon, repo)
    assert repo_info["files_indexed"] == 150 + len(churner.final_markers())
    assert repo_info["files_pending"] == 0 and repo_info["files_failed"] == 0
    assert_healthy(daemon, repo)


# --- repository directory removed / renamed ----------------------------------------------------


def _wait_state(daemon: DaemonProcess, root: Path, state: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    current: dict = {}
    while time.monotonic() < deadline:
        current = info(daemon, root)
        if current["state"] == state:
            return current
        time.sleep(0.2)
    raise AssertionError(f"{root} not {state} after {timeout_s}s: {current}")


def _add_repos(daemon: DaemonProcess, parent: Path, *names: str) -> list[Path]:
    roots = []
    for name in names:
        root = parent / name
        root.mkdir()
        (root / "v.py").write_text(f"def {name}_function_qz():\n    return 1\n")
        daemon.call("add", {"path": str(root)})
        roots.append(root)
    for root in roots:
        daemon.wait_fresh(root)
    return roots


def _cleanup(daemon: DaemonProcess, *roots: Path) -> None:
    for root in roots:
        with contextlib.suppress(Exception):
            daemon.call("remove", {"path": str(root)})


#: The worker's retry delay in the error state: an upper bound only, as `reindex` cuts it short
#: (test_recreated_repo_directory_is_reindexed_and_watched_again).
_ERROR_RETRY_S = 30


def test_repo_directory_removed_then_restored(daemon: DaemonProcess, repo: Path) -> None:
    """One repository directory is deleted, another renamed away: both report the error state,
    a third keeps being served (watcher included); restored, both are back after a reindex."""
    deleted, renamed, other = _add_repos(daemon, repo, "deleted", "renamed", "other")
    moved = repo / "renamed_away"
    try:
        shutil.rmtree(deleted)
        os.rename(renamed, moved)
        for root in (deleted, renamed):
            failed = _wait_state(daemon, root, "error", 30)
            assert failed["error"] and "missing" in failed["error"], failed
        # Said as a warning, without a traceback (the retries every half minute would fill the
        # log with them).
        logged = daemon.log.read_text(errors="replace")
        assert f"{deleted}: the repository directory {deleted} is missing" in logged
        assert f"sync of {deleted} failed" not in logged
        # The other repository keeps working, including its file watcher (no hint given).
        (other / "o2.py").write_text("def other_after_victims_gone_qz():\n    return 3\n")
        assert wait_marker(daemon, "other_after_victims_gone_qz", [str(other)]) == ["o2.py"]
        assert_healthy(daemon, other)
        # Searching the missing repositories answers (no crash, no hang).
        for root in (deleted, renamed):
            with contextlib.suppress(RemoteError):
                daemon.call("search", {"query": "function", "repos": [str(root)]}, timeout_s=30)
        # Restore both: back to normal after a reindex.
        deleted.mkdir()
        (deleted / "v.py").write_text("def deleted_restored_qz():\n    return 1\n")
        os.rename(moved, renamed)
        for root in (deleted, renamed):
            daemon.call("reindex", {"repo": str(root)})
        for root in (deleted, renamed):
            restored = _wait_state(daemon, root, "ready", _ERROR_RETRY_S + 30)
            assert restored["error"] is None, restored
            daemon.wait_fresh(root)
        assert has_marker(daemon, "deleted_restored_qz", [str(deleted)]) == ["v.py"]
        assert not has_marker(daemon, "deleted_function_qz")
        assert has_marker(daemon, "renamed_function_qz", [str(renamed)]) == ["v.py"]
        assert_healthy(daemon, deleted, renamed, other)
    finally:
        _cleanup(daemon, deleted, renamed, other)


def test_recreated_repo_directory_is_reindexed_and_watched_again(
    daemon: DaemonProcess, repo: Path
) -> None:
    """A repository in the error state (its directory deleted) recovers as soon as `reindex`
    asks, without waiting for the retry delay, and the recreated directory is watched again
    (the watcher checks its roots' identities every few seconds)."""
    (victim,) = _add_repos(daemon, repo, "victim")
    try:
        shutil.rmtree(victim)
        _wait_state(daemon, victim, "error", 30)
        victim.mkdir()
        (victim / "v.py").write_text("def victim_back_qz():\n    return 1\n")
        daemon.call("reindex", {"repo": str(victim)})
        _wait_state(daemon, victim, "ready", 8)
        daemon.wait_fresh(victim)
        assert has_marker(daemon, "victim_back_qz", [str(victim)]) == ["v.py"]
        # No read-your-writes hint: only the watcher can notice this file.
        (victim / "new_after_restore.py").write_text("def watched_again_qz():\n    return 1\n")
        assert wait_marker(daemon, "watched_again_qz", [str(victim)], timeout_s=10), (
            "a file created in the recreated repository was not indexed within 10 s"
        )
    finally:
        _cleanup(daemon, victim)


def test_repo_directory_recloned_quickly(daemon: DaemonProcess, repo: Path) -> None:
    """`rm -rf repo && git clone ...`: deleted and recreated within the watcher's debounce."""
    (victim,) = _add_repos(daemon, repo, "victim")
    try:
        shutil.rmtree(victim)
        victim.mkdir()
        (victim / "v.py").write_text("def recloned_content_qz():\n    return 1\n")
        assert wait_marker(daemon, "recloned_content_qz", [str(victim)]) == ["v.py"]
        daemon.wait_fresh(victim)
        assert info(daemon, victim)["error"] is None
        assert not has_marker(daemon, "victim_function_qz")
        # The new directory is watched (the old inotify watch died with the old one).
        (victim / "after_reclone.py").write_text("def watched_after_reclone_qz():\n    return 1\n")
        assert wait_marker(daemon, "watched_after_reclone_qz", [str(victim)], timeout_s=10), (
            "a file created in the recloned repository was not indexed within 10 s"
        )
        assert_healthy(daemon, victim)
    finally:
        _cleanup(daemon, victim)


# --- big trees ---------------------------------------------------------------------------------


def test_deep_directory_tree(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.deep_tree(repo, depth=200)
    add_and_check(daemon, repo, expects)
    # A change at the bottom of the tree is picked up by the watcher.
    bottom = repo / expects[0].path
    bottom.write_text("def deep_bottom_changed_qz():\n    return 2\n")
    assert wait_marker(daemon, "deep_bottom_changed_qz", [str(repo)]) == [expects[0].path]


def test_directory_deeper_than_path_max() -> None:
    """Absolute paths over PATH_MAX cannot even be opened: skipped, never a crash. Runs on its
    own daemon: a watcher failure here must not hide behind other tests."""
    base = _base("cxp")
    own = DaemonProcess(base)
    root = base / "r"
    root.mkdir()
    (root / "ok.py").write_text("def beside_path_max_qz():\n    return 1\n")
    first = ht.beyond_path_max(root)
    try:
        own.start()
        own.call("add", {"path": str(root)})
        own.wait_fresh(root)
        check_expectations(own, root, [ht.indexed("ok.py", "beside_path_max_qz", 1)])
        assert not has_marker(own, "beyond_path_max_marker_qz")
        status = own.call("status")
        # Watching still works for the rest of the repository.
        (root / "later.py").write_text("def after_path_max_qz():\n    return 1\n")
        found = wait_marker(own, "after_path_max_qz", [str(root)])
        assert found, f"watcher: {status['daemon']['watching']} {status['daemon']['watch_error']}"
        assert_healthy(own, root)
    finally:
        own.stop()
        ht.remove_beyond_path_max(root, first.split("/")[0])
        shutil.rmtree(base, ignore_errors=True)


def test_wide_directory_20k_files(daemon: DaemonProcess, repo: Path) -> None:
    expects = ht.wide_tree(repo, files=20_000, sources=50)
    with PingProbe(daemon) as probe:
        started = time.monotonic()
        repo_info = add_and_check(daemon, repo, expects, timeout_s=180)
        took = time.monotonic() - started
    assert not probe.errors and probe.worst < 2.0, (probe.errors[:3], probe.worst)
    assert repo_info["files_indexed"] == 50
    item = repo_status(daemon, repo)
    assert item["skipped"].get("unsupported") == 20_000 - 50
    # Unsupported files are counted, not listed one by one.
    assert len(item["problems"]) <= 20
    assert took < 120, took


@pytest.mark.slow
@SLOW
def test_200k_file_tree_scan_time_and_responsiveness(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = _base("cxb")
    own = DaemonProcess(base)
    root = base / "big"
    try:
        t0 = time.monotonic()
        n_sources = ht.big_tree(root, 200_000, per_dir=500, source_every=100)
        build_s = time.monotonic() - t0
        own.start()
        with PingProbe(own, interval_s=0.05) as probe:
            started = time.monotonic()
            own.call("add", {"path": str(root)})
            own.wait_fresh(root, timeout_s=1200)
            total_s = time.monotonic() - started
        repo_info = info(own, root)
        report = repo_info["last_report"]["full"]
        lat = sorted(probe.latencies)
        p50 = lat[len(lat) // 2] if lat else 0.0
        p99 = lat[int(len(lat) * 0.99)] if lat else 0.0
        print(
            f"\n200k tree: built in {build_s:.1f}s, indexed in {total_s:.1f}s "
            f"(report {report}); ping p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {probe.worst * 1000:.1f} ms over {len(lat)} pings"
        )
        assert repo_info["files_indexed"] == n_sources
        assert not probe.errors and probe.worst < 2.0
        # A rescan of the unchanged tree (stat only) is much faster than the first index.
        own.call("reindex", {"repo": str(root)})
        time.sleep(0.5)
        started = time.monotonic()
        own.wait_fresh(root, timeout_s=600)
        rescan_s = time.monotonic() - started
        print(f"200k tree: unchanged rescan {rescan_s:.1f}s")
        assert_healthy(own, root)
    finally:
        own.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- raw socket sanity for hostile names (status encodes) --------------------------------------


def test_status_frames_with_hostile_names_are_valid_msgpack(
    daemon: DaemonProcess, repo: Path
) -> None:
    ht.bad_names(repo)
    ht.special_names(repo)
    daemon.call("add", {"path": str(repo)})
    daemon.wait_fresh(repo)
    body = msgspec.msgpack.encode(
        {"v": 1, "id": 9, "method": "status", "params": {"repo": str(repo), "errors": 1000}}
    )
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(daemon.socket))
        s.sendall(struct.pack(">I", len(body)) + body)
        header = s.recv(4, socket.MSG_WAITALL)
        (length,) = struct.unpack(">I", header)
        data = b""
        while len(data) < length:
            chunk = s.recv(length - len(data))
            assert chunk
            data += chunk
    reply = msgspec.msgpack.decode(data)
    assert reply["ok"] is True and reply["id"] == 9
    paths = [p["path"] for p in reply["result"]["repos"][0]["problems"]]
    assert all(isinstance(p, str) for p in paths)
    assert "names/new\nline.py" in paths and "names/latin\ufffd.py" in paths
