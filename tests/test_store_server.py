"""The server code path (same gRPC protocol as Milvus / Zilliz): a real milvus_lite server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from codectxd.store import Row, Store, collection_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def milvus_server(short_tmp: Path):  # type: ignore[no-untyped-def]
    """Milvus Lite's own server binary on a TCP port: the gRPC protocol a Milvus server or
    Zilliz Cloud speaks, so Store takes its non-Lite code path."""
    import milvus_lite

    lib = Path(milvus_lite.__file__).parent / "lib"
    port = free_port()
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "DYLD_LIBRARY_PATH": str(lib),
    }
    proc = subprocess.Popen(
        [str(lib / "milvus"), str(short_tmp / "server.db"), f"127.0.0.1:{port}", "ERROR"],
        cwd=short_tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"milvus server exited: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_store_over_grpc(milvus_server: str) -> None:
    store = Store(milvus_server)
    name = collection_name("srvtest", "local:test", 4)
    vec = np.array([1, 0, 0, 0], dtype=np.float32)
    other = np.array([0, 1, 0, 0], dtype=np.float32)
    # Not created yet, then created but never written: no results, never an error (Milvus
    # fails a BM25 search of a collection that never held a row).
    assert store.search(name, lexical="save", limit=2) == []
    store.ensure_collection(name, 4, {"root": "/r"})
    assert store.search(name, lexical="save", limit=2) == []
    assert store.search(name, dense=vec, limit=2) == []
    rows = [
        Row(
            "a",
            "src/a.py",
            "python",
            "py",
            1,
            3,
            "load_settings",
            "function",
            "def load",
            "h",
            "load_settings load settings",
            vec,
        ),
        Row(
            "b",
            "src/b.py",
            "python",
            "py",
            1,
            2,
            "save",
            "function",
            "def save",
            "h",
            "save file",
            other,
        ),
    ]
    store.replace_files(name, ["src/a.py", "src/b.py"], rows)
    assert store.count(name) == 2
    hits = store.search(name, dense=vec, limit=2)
    assert hits[0].path == "src/a.py" and hits[0].symbol == "load_settings"
    hits = store.search(name, lexical="save", limit=2)
    assert [h.path for h in hits] == ["src/b.py"] and hits[0].id == "b"
    store.replace_files(name, ["src/a.py"], [])
    assert store.count(name) == 1
    assert name in store.list_collections()
    store.drop_collection(name)
    assert not store.has_collection(name)
    store.close()
