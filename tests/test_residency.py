"""Collections at rest leave Milvus Lite's memory and come back on their next use (real engine,
real daemon)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codectxd.store import Row, Store
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess

DIMENSION = 8


def _row(i: int) -> Row:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[i % DIMENSION] = 1.0
    text = f"def handler_{i}(): return {i}"
    return Row(
        id=f"r{i}", path=f"m{i}.py", language="python", ext=".py", start_line=1, end_line=1,
        symbol=f"handler_{i}", kind="function", content=text, content_hash=f"h{i}",
        lexical=text, dense=vector,
    )  # fmt: skip


class _Callers:
    """`count` threads calling `step` until stopped (`with` ends: stopped and joined); a
    thread's failure ends it and is kept in `errors`."""

    def __init__(self, step: Callable[[], None], count: int) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(step,)) for _ in range(count)]

    def _run(self, step: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                self.errors.append(exc)
                return

    def __enter__(self) -> _Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def test_release_never_fails_a_call_in_progress(short_tmp: Path) -> None:
    """Searches and writes race a releaser that lets go whenever the collection is unused
    (continuous use keeps it loaded, so the callers leave short gaps):
    every call succeeds and sees the rows, and the collection was really released and loaded
    again many times."""
    store = Store(str(short_tmp / "m.db"))
    try:
        store.ensure_collection("cx_t", DIMENSION, {})
        store.replace_files("cx_t", [f"m{i}.py" for i in range(20)], [_row(i) for i in range(20)])
        releases = 0
        searches = 0

        def search() -> None:
            nonlocal searches
            started = time.monotonic()
            hits = store.search("cx_t", lexical="handler_7", limit=3)
            assert hits and hits[0].path == "m7.py", hits
            dense = store.search("cx_t", dense=_row(3).dense, limit=1)
            assert dense[0].id in {"r3", "r11", "r19"}, dense
            store.replace_files("cx_t", ["m5.py"], [_row(5)])
            searches += 1
            # Gaps in which the releaser can act, as long as a call on this machine takes: a
            # loaded machine's slower calls must not leave the releaser almost no idle moment.
            time.sleep(random.random() * max(0.01, time.monotonic() - started))

        with _Callers(search, 2) as callers:
            deadline = time.monotonic() + 60
            while releases < 10 and time.monotonic() < deadline and not callers.errors:
                releases += len(store.release_idle(0.0))
        assert not callers.errors, callers.errors
        assert releases >= 10 and searches > 0
    finally:
        store.close()


def _repo(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    return next(r for r in daemon.call("list")["repos"] if r["root"] == str(root))


def _wait_loaded(daemon: DaemonProcess, root: Path, loaded: bool) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = _repo(daemon, root)
        if info["loaded"] is loaded:
            return info
        time.sleep(0.2)
    raise TimeoutError(f"{root} loaded is not {loaded}:\n{daemon.log_text()}")


def test_an_idle_repository_is_released_and_its_next_search_loads_it(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, {
        "billing.py": "def compute_invoice_total(lines):\n    return sum(lines)\n",
        "mailer.py": "def send_welcome_email(user):\n    smtp.send(user.email)\n",
    })  # fmt: skip
    daemon = DaemonProcess(short_tmp, CODECTX_RELEASE_IDLE_S="1").start()
    try:
        daemon.call("add", {"path": str(root)})
        daemon.wait_fresh(root)
        query = {"query": "invoice total", "repos": [str(root)], "limit": 5}
        before = [(h["path"], h["score"]) for h in daemon.call("search", query)["results"]]
        assert before and before[0][0] == "billing.py"

        info = _wait_loaded(daemon, root, False)
        deadline = time.monotonic() + 60
        while "unloaded local model" not in daemon.log_text():
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.2)
        # A full sync that finds nothing to write does not load it again.
        daemon.call("reindex", {"repo": str(root)})
        deadline = time.monotonic() + 60
        while (after_sync := _repo(daemon, root))["last_sync"] <= info["last_sync"]:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
        assert after_sync["last_report"]["full"]["unchanged"] == 2
        assert after_sync["loaded"] is False
        assert "(not in memory: its next search loads it)" in daemon.client("list").stdout

        result = daemon.call("search", query)
        assert [(h["path"], h["score"]) for h in result["results"]] == before
        assert result["fresh"] and _repo(daemon, root)["loaded"] is True

        # An edit while released is written (loading it) and found.
        _wait_loaded(daemon, root, False)
        (root / "refunds.py").write_text("def issue_refund_voucher(order):\n    return order\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hits = daemon.call("search", {**query, "query": "issue_refund_voucher"})["results"]
            if hits and hits[0]["path"] == "refunds.py":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the edit was not found:\n{daemon.log_text()}")
        assert "released collection" in daemon.log_text()
    finally:
        daemon.stop()


def test_the_local_model_rests_and_comes_back_the_same(local_provider) -> None:  # type: ignore[no-untyped-def]
    """The session is dropped between queries and rebuilt by the next one, while other
    threads embed: every vector equals the one before any rest."""
    query = "where are overlapping search hits merged"
    expected = local_provider.embed_query(query)
    stop = threading.Event()
    errors: list[BaseException] = []

    def embed() -> None:
        while not stop.is_set():
            try:
                np.testing.assert_allclose(local_provider.embed_query(query), expected, atol=1e-6)
                time.sleep(random.random() * 0.01)
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(exc)
                return
            runs.append(1)

    runs: list[int] = []
    workers = [threading.Thread(target=embed) for _ in range(2)]
    for worker in workers:
        worker.start()
    rests = 0
    deadline = time.monotonic() + 60
    while rests < 10 and time.monotonic() < deadline and not errors:
        rests += local_provider.rest(0.0)
    stop.set()
    for worker in workers:
        worker.join(30)
    assert not errors, errors
    assert rests >= 10 and len(runs) >= 10
    local_provider.embed_query(query)
    assert not local_provider.rest(3600.0)  # used just now: kept
    assert local_provider.rest(0.0)


def test_drop_waits_for_the_searches_reading_the_collection(short_tmp: Path) -> None:
    """A model switch drops the collection searches were reading: searches racing drops and
    re-creations never fail (one that started before a drop finishes first; one that starts
    during it finds nothing), and a drop waits for a call in progress."""
    store = Store(str(short_tmp / "m.db"))
    try:
        rows = [_row(i) for i in range(20)]
        paths = [r.path for r in rows]
        store.ensure_collection("cx_t", DIMENSION, {})
        store.replace_files("cx_t", paths, rows)
        answered = [0, 0]  # searches with hits, searches of a dropped collection

        def search() -> None:
            hits = store.search("cx_t", lexical="handler_7", limit=3)
            hits += store.search("cx_t", dense=_row(3).dense, limit=1)
            answered[not hits] += 1

        with _Callers(search, 3) as callers:
            for _ in range(8):
                if callers.errors:
                    break
                store.drop_collection("cx_t")
                store.ensure_collection("cx_t", DIMENSION, {})
                store.replace_files("cx_t", paths, rows)
        assert not callers.errors, callers.errors
        assert answered[0] > 0

        # A call in progress (entered, as every search does, before it looks the collection
        # up) holds the drop back until it ends.
        done = threading.Event()
        with store.residency.using("cx_t"):
            dropper = threading.Thread(target=lambda: (store.drop_collection("cx_t"), done.set()))
            dropper.start()
            assert store.residency.wait_dropping("cx_t", 30)
            assert store.has_collection("cx_t") and not done.is_set()
        dropper.join(30)
        assert done.is_set() and not store.has_collection("cx_t")
        assert store.search("cx_t", lexical="handler_7", limit=3) == []
    finally:
        store.close()
