"""Search images (codectxd.image): a collection's image answers as the loaded collection does,
is dropped before any write reaches the engine, and answers a released collection's searches
in a real daemon (real Milvus Lite, real files)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from codectxd.errors import StoreError
from codectxd.image import Image
from codectxd.lexical import lexical_query, lexical_text
from codectxd.store import Row, Store, _hit
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess

DIMENSION = 16
WORDS = [
    "parse", "config", "load_settings", "http_client", "retry", "v2", "2024", "cache",
    "invoice", "total", "render", "page", "user_id", "token", "stream", "flush", "queue",
]  # fmt: skip


def _rows(count: int, rng: random.Random) -> list[Row]:
    rows = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 30))]
        text = " ".join(words)
        vector = np.asarray([rng.gauss(0, 1) for _ in range(DIMENSION)], dtype=np.float32)
        vector /= np.linalg.norm(vector)
        copies = 2 if i % 10 == 0 else 1  # identical chunks: equal scores, ordered by id
        for copy in range(copies):
            rows.append(Row(
                id=f"c{i}-{copy}", path=f"pkg/m{i % 40}.py", language="python", ext=".py",
                start_line=i, end_line=i + 3, symbol=f"f{i}", kind="function", content=text,
                content_hash=f"h{i}", lexical=lexical_text(text), dense=vector,
                embedded=i % 7 != 0,  # some rows still wait for their vector
            ))  # fmt: skip
    return rows


def _stored(short_tmp: Path, rows: list[Row]) -> Store:
    store = Store(str(short_tmp / "m.db"))
    store.ensure_collection("cx_t", DIMENSION, {})
    paths = sorted({r.path for r in rows})
    store.replace_files("cx_t", paths, rows)
    return store


def _same(mine: list[Any], engine: list[Any]) -> bool:
    """The same hits in the same order, with the same scores (to float32's precision)."""
    return [h.id for h in mine] == [h.id for h in engine] and bool(
        np.allclose([h.score for h in mine], [h.score for h in engine], rtol=1e-5)
    )


def test_an_image_answers_as_the_loaded_collection(short_tmp: Path) -> None:
    rng = random.Random(7)
    rows = _rows(400, rng)
    store = _stored(short_tmp, rows)
    try:
        assert store.write_images(1, 0.0) == ["cx_t"]
        assert store.has_image("cx_t")
        image = store.images.open("cx_t") if store.images else None
        assert isinstance(image, Image) and image.rows == len(rows)
        for _ in range(40):
            query = lexical_query(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))))
            limit = rng.choice([5, 30, 90])
            engine = store.search("cx_t", lexical=query, limit=limit)
            assert engine, query
            assert _same([_hit(h) for h in image.search_lexical(query, limit)], engine), query
            vector = rows[rng.randrange(len(rows))].dense + np.float32(0.05)
            engine = store.search("cx_t", dense=vector, limit=limit)
            mine = [_hit(h) for h in image.search_dense(vector, limit)]
            assert _same(mine, engine)
            assert all(not h.id.startswith(("c0-", "c7-")) for h in mine)  # not embedded
        paths = ["pkg/m3.py", "pkg/m17.py", "pkg/none.py"]
        by_path = store.hits_in("cx_t", "path", paths)
        assert len(by_path) == sum(r.path in paths for r in rows)
        assert by_path == sorted(
            (_hit(h) for h in image.rows_in("path", paths, 2000)),
            key=lambda h: (h.path, h.start_line, h.id),
        )
    finally:
        store.close()


def test_a_released_collection_is_searched_in_its_image_while_it_loads(short_tmp: Path) -> None:
    rows = _rows(200, random.Random(3))
    store = _stored(short_tmp, rows)
    try:
        query = lexical_query("invoice total")
        loaded = store.search("cx_t", lexical=query, limit=10)
        assert store.write_images(1, 0.0) == ["cx_t"]
        assert store.release_idle(0.0) == ["cx_t"]
        # Not loaded: the image answers, the same hits, and the load starts behind it.
        assert _same(store.search("cx_t", lexical=query, limit=10), loaded)
        three = next(r for r in rows if r.id == "c3-0")
        assert store.hits_in("cx_t", "id", ["c3-0"])[0].content == three.content
        deadline = time.monotonic() + 60
        while store.is_resting("cx_t"):
            assert time.monotonic() < deadline, "the load behind the image never ended"
            time.sleep(0.05)
        assert _same(store.search("cx_t", lexical=query, limit=10), loaded)
        # A filtered search is never the image's: it waits for (or makes) the load.
        assert store.search("cx_t", lexical=query, limit=10, expr='path == "pkg/m1.py"')
    finally:
        store.close()


def _engines(db: Path) -> list[psutil.Process]:
    """This process's Milvus Lite engine processes for the database file `db`."""
    return [c for c in psutil.Process().children(recursive=True)
            if str(db) in " ".join(c.cmdline())]  # fmt: skip


def test_a_store_opened_later_answers_from_its_image_before_milvus_starts(
    short_tmp: Path,
) -> None:
    """A warm restart's store: opened with `open_now` False, a collection with an image needs
    no Milvus to be ensured or searched; its first search starts the engine behind it."""
    rows = _rows(150, random.Random(11))
    db = short_tmp / "m.db"
    store = _stored(short_tmp, rows)
    query = lexical_query("render page token")
    try:
        loaded = store.search("cx_t", lexical=query, limit=10)
        assert store.write_images(1, 0.0) == ["cx_t"]
    finally:
        store.close()
    assert _engines(db) == []
    later = Store(str(db), open_now=False)
    try:
        later.ensure_collection("cx_t", DIMENSION, {})
        assert _engines(db) == []  # nothing started Milvus: not the store, not the collection
        assert _same(later.search("cx_t", lexical=query, limit=10), loaded)
        later.wait_open()  # the search started the load behind the image, and so the engine
        assert _engines(db)
        later.delete_paths("cx_t", ["pkg/m2.py"])  # a write waits for the load, then goes in
        assert not later.has_image("cx_t")
        assert all(h.path != "pkg/m2.py" for h in later.search("cx_t", lexical=query, limit=50))
    finally:
        later.close()
    closed = Store(str(db), open_now=False)
    closed.close()  # never opened: nothing to stop, and a call after it fails at once
    with pytest.raises(StoreError, match="closed"):
        closed.wait_open()


def test_a_write_drops_the_image_first_and_one_read_across_a_write_is_not_kept(
    short_tmp: Path,
) -> None:
    rows = _rows(120, random.Random(5))
    store = _stored(short_tmp, rows)
    images = short_tmp / "images"
    try:
        assert store.write_images(1, 0.0) == ["cx_t"]
        assert (images / "cx_t").is_dir()
        store.replace_files("cx_t", ["pkg/m1.py"], [r for r in rows if r.path == "pkg/m1.py"][1:])
        assert not store.has_image("cx_t") and not (images / "cx_t").exists()
        assert store.write_images(1, 3600.0) == []  # not quiet yet

        def write_meanwhile() -> bool:  # called between the batches the image is read in
            store.delete_paths("cx_t", ["pkg/m2.py"])
            return False

        assert store.write_images(1, 0.0, write_meanwhile) == []
        assert not store.has_image("cx_t") and list(images.iterdir()) == []
        assert store.write_images(10_000, 0.0) == []  # too small: not imaged
    finally:
        store.close()


def _repo(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    return next(r for r in daemon.call("list")["repos"] if r["root"] == str(root))


def _wait_repo(daemon: DaemonProcess, root: Path, key: str, value: object) -> None:
    deadline = time.monotonic() + 90
    while _repo(daemon, root)[key] != value:
        assert time.monotonic() < deadline, f"{key} never became {value}:\n{daemon.log_text()}"
        time.sleep(0.1)


def _wait_log(daemon: DaemonProcess, line: str, times: int) -> None:
    deadline = time.monotonic() + 30
    while daemon.log_text().count(line) < times:
        assert time.monotonic() < deadline, daemon.log_text()
        time.sleep(0.1)


def _two_files(root: Path) -> None:
    write_tree(root, {
        "billing.py": "def compute_invoice_total(lines):\n    return sum(lines)\n",
        "mailer.py": "def send_welcome_email(user):\n    smtp.send(user.email)\n",
    })  # fmt: skip


def _paths(daemon: DaemonProcess, root: Path, query: str) -> list[tuple[str, int]]:
    found = daemon.call("search", {"query": query, "repos": [str(root)], "limit": 5})
    return [(h["path"], h["start_line"]) for h in found["results"]]


def test_daemon_answers_from_the_image_and_a_killed_write_never_leaves_it_stale(
    short_tmp: Path,
) -> None:
    root = short_tmp / "repo"
    _two_files(root)
    env = {"CODECTX_IMAGE_MIN_ROWS": "1", "CODECTX_IMAGE_QUIET_S": "0.5",
           "CODECTX_RELEASE_IDLE_S": "3"}  # fmt: skip
    daemon = DaemonProcess(short_tmp, **env).start()
    try:
        daemon.call("add", {"path": str(root)})
        daemon.wait_fresh(root)
        before = _paths(daemon, root, "invoice total")
        assert before[0][0] == "billing.py"
        _wait_repo(daemon, root, "image", True)
        _wait_repo(daemon, root, "loaded", False)  # released: the next search is the image's
        # A full sync that writes nothing leaves it released (it would start the load with the
        # line below, before the sync ends).
        synced = _repo(daemon, root)["last_sync"]
        daemon.call("reindex", {"repo": str(root)})
        deadline = time.monotonic() + 60
        while _repo(daemon, root)["last_sync"] <= synced:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
        assert "its image answers searches meanwhile" not in daemon.log_text()
        assert _repo(daemon, root)["loaded"] is False
        assert _paths(daemon, root, "invoice total") == before
        _wait_log(daemon, "its image answers searches meanwhile", 1)
        # A restart: the sync does not wait for the engine's load; the image answers.
        daemon.stop()
        daemon.start()
        daemon.wait_fresh(root)
        assert _paths(daemon, root, "invoice total") == before
        _wait_log(daemon, "its image answers searches meanwhile", 2)
        # A saved file: its write drops the image before the engine sees it...
        (root / "refunds.py").write_text("def issue_refund_voucher(order):\n    return order\n")
        deadline = time.monotonic() + 30
        while not _paths(daemon, root, "refund voucher") or (
            _paths(daemon, root, "refund voucher")[0][0] != "refunds.py"
        ):
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
        assert _repo(daemon, root)["image"] is False
        daemon.kill()  # ...so a daemon killed now restarts without a stale image
        daemon.start()
        assert _repo(daemon, root)["image"] is False
        assert _paths(daemon, root, "refund voucher")[0][0] == "refunds.py"
    finally:
        daemon.stop()


def test_a_change_made_while_the_daemon_was_down_is_written_through_the_image(
    short_tmp: Path,
) -> None:
    # The restart's scan finds the change; its write loads the collection (the load of an
    # imaged collection otherwise waits until the scan is done) and drops the image first.
    root = short_tmp / "repo"
    _two_files(root)
    env = {"CODECTX_IMAGE_MIN_ROWS": "1", "CODECTX_IMAGE_QUIET_S": "0.5"}
    daemon = DaemonProcess(short_tmp, **env).start()
    try:
        daemon.call("add", {"path": str(root)})
        daemon.wait_fresh(root)
        _wait_repo(daemon, root, "image", True)
        daemon.stop()
        (root / "mailer.py").unlink()
        (root / "refunds.py").write_text("def issue_refund_voucher(order):\n    return order\n")
        daemon.start()
        daemon.wait_fresh(root)
        info = _repo(daemon, root)
        assert info["image"] is False
        assert info["last_report"]["full"]["removed"] == 1, info
        assert _paths(daemon, root, "refund voucher")[0][0] == "refunds.py"
        assert all(p != "mailer.py" for p, _ in _paths(daemon, root, "welcome email"))
    finally:
        daemon.stop()
