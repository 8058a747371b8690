"""A repository is searchable from the instant it is added: no search fails while its first
index is built, and what `list` reports as stored is found (real daemon, Milvus Lite, model)."""

from __future__ import annotations

import string
import tempfile
import time
from pathlib import Path

import pytest

from codectx_client.connection import Connection, RemoteError
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess


def marker(i: int) -> str:
    """A word that occurs in file `i` only (letters only: the lexical analyzer keeps it whole)."""
    letters = ""
    while True:
        i, digit = divmod(i, 26)
        letters += string.ascii_lowercase[digit]
        if i == 0:
            return f"zq{letters}xj"


def marked_tree(files: int) -> dict[str, str]:
    return {
        f"pkg{i % 10}/mod_{i}.py": f"def handler_{i}(event):\n    return '{marker(i)}' + event\n"
        for i in range(files)
    }


@pytest.fixture(scope="module")
def daemon():  # type: ignore[no-untyped-def]
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="cxf", dir="/tmp"))).start()
    yield proc
    proc.stop()


def search_until_fresh(
    daemon: DaemonProcess, root: Path, files: int, timeout_s: float = 240.0
) -> tuple[int, int]:
    """Add `root`, then search it back to back until the reply says fresh. Every reply must be
    a success; after each `list`, every file it reports as stored must be found by its marker.
    Returns (searches sent, checks of stored files made)."""
    everything = " ".join(marker(i) for i in range(files))
    searches = checks = 0
    with daemon.connect() as conn:
        conn.call("add", {"path": str(root)})
        deadline = time.monotonic() + timeout_s
        fresh = False
        while not fresh:
            assert time.monotonic() < deadline, f"not fresh after {timeout_s}s"
            hybrid = call(
                conn,
                "search",
                {"query": f"handler {marker(searches % files)}", "repos": [str(root)], "limit": 5},
            )
            searches += 1
            stored = info(conn, root)["files_indexed"]
            found = call(
                conn,
                "search",
                {"query": everything, "repos": [str(root)], "mode": "lexical", "limit": 200},
            )
            searches += 1
            paths = {hit["path"] for hit in found["results"]}
            assert len(paths) >= stored, (stored, sorted(paths))
            checks += 1
            for reply in (hybrid, found):
                if not reply["fresh"]:  # says why: work pending, or the first index not done
                    assert reply["pending"] > 0 or reply["indexing"], reply
            fresh = hybrid["fresh"] and found["fresh"]
    assert len(paths) == files
    return searches, checks


def call(conn: Connection, method: str, params: dict[str, object]) -> dict[str, object]:
    try:
        return conn.call(method, params, timeout_s=60)  # type: ignore[no-any-return]
    except RemoteError as exc:
        pytest.fail(f"{method} failed while indexing: {exc.code}: {exc}")


def info(conn: Connection, root: Path) -> dict[str, int]:
    repos = call(conn, "list", {})["repos"]
    return next(r for r in repos if r["root"] == str(root))  # type: ignore[union-attr, index]


@pytest.mark.parametrize("files", [1, 200])
def test_search_from_add_until_fresh_never_fails(daemon: DaemonProcess, files: int) -> None:
    root = daemon.base / f"repo{files}"
    write_tree(root, marked_tree(files))
    searches, checks = search_until_fresh(daemon, root, files)
    assert searches >= 2 and checks >= 1
    # Once fresh, a file added later is found too.
    write_tree(root, {"late.py": "def late():\n    return 'zqlatexj'\n"})
    with daemon.connect() as conn:
        late = call(
            conn,
            "search",
            {
                "query": "zqlatexj",
                "repos": [str(root)],
                "mode": "lexical",
                "wait_s": 30,
                "wait_paths": [str(root / "late.py")],
            },
        )
        assert [h["path"] for h in late["results"]] == ["late.py"]
