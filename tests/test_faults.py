"""Dependency faults against the real daemon: the Milvus engine dies, the database is locked,
the disk fills up. The daemon reports the fault, loses nothing, and recovers when it clears."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from codectxd.store import Store
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess


def engine_children(proc: DaemonProcess) -> list[psutil.Process]:
    assert proc.proc is not None
    return [
        c for c in psutil.Process(proc.proc.pid).children(recursive=True) if "milvus" in c.name()
    ]


def engine_wrapper(base: Path, guard: str) -> Path:
    """A BIN_PATH (milvus-lite's own setting) whose engine runs `guard` (shell, `$W` is the
    directory) before it becomes the real binary: a fault at the engine's start."""
    import milvus_lite

    real = Path(milvus_lite.__file__).parent / "lib"
    wrapper = base / "bin"
    wrapper.mkdir()
    (wrapper / "milvus").write_text(
        f'#!/bin/sh\nW="{wrapper}"\n{guard}\n'
        f'LD_LIBRARY_PATH="{real}:$LD_LIBRARY_PATH" exec "{real}/milvus" "$@"\n'
    )
    (wrapper / "milvus").chmod(0o755)
    return wrapper


def test_engine_killed_then_recovers(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, {f"m{i}.py": f"def fn_{i}(x):\n    return x + {i}\n" for i in range(10)})
    proc = DaemonProcess(short_tmp).start()
    try:
        proc.call("add", {"path": str(root)})
        proc.wait_fresh(root)
        children = engine_children(proc)
        assert children, "expected a Milvus Lite engine process"
        for child in children:
            child.kill()
        hits = proc.call("search", {"query": "fn_3", "mode": "lexical"})["results"]
        assert hits and hits[0]["path"] == "m3.py"  # reconnected: a new engine, same data
        (root / "new.py").write_text("def after_the_crash():\n    return 1\n")
        hits = proc.call(
            "search",
            {
                "query": "after_the_crash",
                "mode": "lexical",
                "wait_s": 20,
                "wait_paths": [str(root / "new.py")],
            },
        )
        assert hits["results"][0]["path"] == "new.py"
        assert "reconnecting" in proc.log_text()
    finally:
        proc.stop()


def test_engine_that_dies_while_starting_is_started_again(short_tmp: Path) -> None:
    """Milvus Lite's engine process sometimes dies while it starts (seen on a loaded machine):
    the daemon starts a fresh one instead of exiting. The fault: the engine's real binary,
    behind a wrapper that dies on its first start only (milvus-lite's own BIN_PATH setting)."""
    wrapper = engine_wrapper(
        short_tmp, 'if [ ! -e "$W/died" ]; then touch "$W/died"; sleep 1; exit 1; fi'
    )
    root = short_tmp / "repo"
    write_tree(root, {"m.py": "def started_again_qz():\n    return 1\n"})
    proc = DaemonProcess(short_tmp, BIN_PATH=str(wrapper)).start()
    try:
        proc.call("add", {"path": str(root)})
        proc.wait_fresh(root)  # the store opens in the background: a new repository needs it
        assert (wrapper / "died").exists()
        assert "did not answer" in proc.log_text() and "starting it again" in proc.log_text()
        hits = proc.call("search", {"query": "started_again_qz", "mode": "lexical"})["results"]
        assert hits and hits[0]["path"] == "m.py"
    finally:
        proc.stop()


_DIES_UNTIL_HEALED = 'if [ ! -e "$W/healed" ]; then exit 1; fi'


def test_a_store_that_cannot_open_fails_the_repository_not_the_daemon(short_tmp: Path) -> None:
    """Milvus opens in the background: while it cannot (its engine dies at every start, until
    the fault clears), a repository added says why in `list` and the daemon answers; once the
    engine starts, the repository's retry indexes it."""
    wrapper = engine_wrapper(short_tmp, _DIES_UNTIL_HEALED)
    root = short_tmp / "repo"
    write_tree(root, {"m.py": "def opened_at_last_qz():\n    return 1\n"})
    proc = DaemonProcess(short_tmp, BIN_PATH=str(wrapper)).start()
    try:
        proc.call("add", {"path": str(root)})
        deadline = time.monotonic() + 120
        while (info := proc.info(root))["state"] != "error":
            assert time.monotonic() < deadline, info
            time.sleep(0.1)
        assert "cannot open the Milvus store" in (info["error"] or "")
        assert "cannot open the Milvus store" in proc.call("status")["daemon"]["store_error"]
        assert "cannot open the Milvus store" in proc.client("status").stdout
        assert proc.call("ping") is not None and proc.proc is not None and proc.proc.poll() is None
        (wrapper / "healed").touch()
        (root / "m.py").write_text("def opened_at_last_qz():\n    return 2\n")  # a retry now
        proc.wait_fresh(root)
        hits = proc.call("search", {"query": "opened_at_last_qz", "mode": "lexical"})["results"]
        assert hits and hits[0]["path"] == "m.py"
        assert proc.call("status")["daemon"]["store_error"] is None
    finally:
        proc.stop()


def test_a_reconnect_that_fails_is_finished_by_a_later_call(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine dies and cannot start again for a while: the call that found it gone fails;
    a call once it can start opens it again as a reconnect (what the old engine had loaded
    is forgotten: `on_reconnect`)."""
    from codectxd import milvus
    from codectxd.errors import StoreError

    wrapper = engine_wrapper(short_tmp, _DIES_UNTIL_HEALED)
    (wrapper / "healed").touch()
    monkeypatch.setenv("BIN_PATH", str(wrapper))
    monkeypatch.setattr(milvus, "_REOPEN_S", 0.0)  # no wait between a failed open and the next
    forgot: list[int] = []
    conn = milvus.MilvusConnection(str(short_tmp / "m.db"), on_reconnect=lambda: forgot.append(1))
    try:
        assert conn.run("list", lambda c: c.list_collections()) == []
        (wrapper / "healed").unlink()
        for child in psutil.Process().children(recursive=True):
            if "milvus" in child.name():
                child.kill()
        with pytest.raises(StoreError, match="cannot open the Milvus store"):
            conn.run("list", lambda c: c.list_collections())
        assert forgot == []
        (wrapper / "healed").touch()
        assert conn.run("list", lambda c: c.list_collections()) == []
        assert forgot == [1] and conn.reconnects == 1
    finally:
        conn.close()


def test_a_collection_killed_before_its_indexes_is_completed(short_tmp: Path) -> None:
    """Killed between creating a collection's schema and its indexes: the next
    `ensure_collection` builds the missing indexes and the collection takes rows and answers
    both searches."""
    from codectxd.store import _schema
    from tests.test_residency import DIMENSION, _row

    store = Store(str(short_tmp / "m.db"))
    try:
        store.wait_open()
        store._run("half a creation", lambda c: c.create_collection(
            "cx_half", schema=_schema(c, DIMENSION, {})))  # fmt: skip
        store.ensure_collection("cx_half", DIMENSION, {})
        store.replace_files("cx_half", ["m1.py", "m2.py"], [_row(1), _row(2)])
        assert store.search("cx_half", lexical="handler_2", limit=1)[0].path == "m2.py"
        assert store.search("cx_half", dense=_row(1).dense, limit=1)[0].id == "r1"
    finally:
        store.close()


def test_engine_started_without_the_fixed_wait_is_the_one_used_and_stopped(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """codectxd starts Milvus Lite's engine itself (`lite_engine`): pymilvus talks to that
    process, and closing the store stops it and frees the file, as milvus-lite's own start."""
    db = short_tmp / "milvus.db"
    with caplog.at_level(logging.DEBUG, logger="codectxd.lite_engine"):
        store = Store(str(db))
        store.wait_open()
    assert any("engine answering after" in r.getMessage() for r in caplog.records)
    engines = [
        c for c in psutil.Process().children(recursive=True) if str(db) in " ".join(c.cmdline())
    ]
    try:
        assert len(engines) == 1, "expected exactly one engine process for the file"
        store.ensure_collection("cx_lite_engine", 4, {})
        assert "cx_lite_engine" in store.list_collections()
        assert _locked_elsewhere(db)
    finally:
        store.close()
    engines[0].wait(timeout=10)
    assert not engines[0].is_running()
    assert not _locked_elsewhere(db)
    again = Store(str(db))  # the file is free again, the data kept
    try:
        assert "cx_lite_engine" in again.list_collections()
    finally:
        again.close()


def _locked_elsewhere(db: Path) -> bool:
    """Whether the file's lock is held, seen from another process (a process's own locks do
    not stop it)."""
    code = "import sys; from codectxd.milvus import _locked; sys.exit(3 if _locked(sys.argv[1]) else 0)"
    return subprocess.run([sys.executable, "-c", code, str(db)], timeout=60).returncode == 3


def test_a_file_another_process_holds_is_reported_and_its_lock_kept(short_tmp: Path) -> None:
    """Between the lock check and the start another process may take the file: the start
    says so, and does not delete that process's lock file (milvus-lite's own Server would,
    when collected)."""
    import gc

    from codectxd import lite_engine

    db = short_tmp / "milvus.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from codectxd.store import Store; s = Store(sys.argv[1]); s.wait_open(); "
         "print('open', flush=True); sys.stdin.read(); s.close()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(lite_engine.Locked):
            lite_engine.start(str(db))
        gc.collect()  # what milvus-lite's Server does when it is collected
        assert (db.parent / f".{db.name}.lock").exists()
        assert _locked_elsewhere(db)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def test_database_locked_by_another_process(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp)
    proc.data_dir.mkdir(parents=True)
    holder = Store(str(proc.data_dir / "milvus.db"))
    holder.wait_open()  # it holds the file from here
    try:
        out = subprocess.run(
            [sys.executable, "-m", "codectxd", "start"],
            env=proc.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert out.returncode == 1
    assert "in use by another process" in out.stderr
    proc.start()  # once the other process let go, the daemon starts
    proc.stop()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CODECTX_SLOW") != "1", reason="slow suite: CODECTX_SLOW=1")
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a small tmpfs"
)
def test_disk_full_then_space_freed(short_tmp: Path) -> None:
    mount_point = short_tmp / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.strip()}")
    try:
        root = short_tmp / "repo"
        body = "".join(
            f"def f_{j}(value):\n    return value * {j} + len('{'x' * 300}')\n\n\n"
            for j in range(40)
        )
        write_tree(root, {f"pkg/m{i}.py": body.replace("f_", f"m{i}_f_") for i in range(120)})
        proc = DaemonProcess(short_tmp, CODECTX_DATA_DIR=str(mount_point / "data"))
        proc.start()
        try:
            proc.call("add", {"path": str(root)})
            deadline = time.monotonic() + 300
            info: dict = {}
            while time.monotonic() < deadline:
                info = next(r for r in proc.call("list")["repos"] if r["root"] == str(root))
                if info["files_failed"] or info["state"] == "error":
                    break
                if info["state"] == "ready" and info["last_sync"]:
                    break
                time.sleep(0.5)
            assert info["files_failed"] or info["state"] == "error", info
            status = proc.call("status", {"repo": str(root)})["repos"][0]
            reasons = " ".join(p["reason"] for p in status["problems"]) + str(info.get("error"))
            assert "is full or nearly" in reasons, (reasons, info)
            assert proc.call("ping")  # still serving
            subprocess.run(["mount", "-o", "remount,size=400m", str(mount_point)], check=True)
            proc.call("reindex", {"repo": str(root)})
            info = proc.wait_fresh(root, timeout_s=600)
            assert info["files_indexed"] == 120 and info["files_failed"] == 0
        finally:
            proc.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
