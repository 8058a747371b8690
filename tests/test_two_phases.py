"""The two phases of an index: every file keyword-searchable first (no embedding on that path),
then embedded in the background in a useful order; file kinds decide what is embedded.
Real Milvus Lite, real model, real files; the daemon as a subprocess for the end-to-end part."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from codectxd.config import Settings
from codectxd.embeddings.service import Embedder
from codectxd.engine import Engine
from codectxd.snapshot import EMBEDDED, LEXICAL, WAITING
from tests.conftest import SAMPLE_REPO, make_settings, write_tree
from tests.daemon_harness import DaemonProcess


@pytest.fixture
def engine(settings: Settings, embedder: Embedder):  # type: ignore[no-untyped-def]
    eng = Engine(settings, embedder=embedder)
    yield eng
    eng.close()


def dense_states(engine: Engine, collection: str) -> dict[str, tuple[int, str]]:
    """{path: (dense state, kind)} of the indexed files."""
    return {
        path: (state.dense, state.kind)
        for path, state in engine.snapshot.load(collection).items()
        if state.state == "indexed"
    }


def test_first_phase_embeds_nothing_and_every_file_is_keyword_searchable(
    engine: Engine, short_tmp: Path
) -> None:
    root = short_tmp / "repo"
    write_tree(root, SAMPLE_REPO)
    indexer = engine.indexer_for(root)
    embedded_before = engine.embedder.stats.texts
    report = indexer.begin_full().run()  # the first phase alone
    assert report.indexed == 5 and report.chunks_embedded == 0
    assert engine.embedder.stats.texts == embedded_before  # the model was not asked
    coll = indexer.collection
    assert {d for d, _ in dense_states(engine, coll).values()} == {WAITING}
    assert engine.store.count(coll, "embedded == false") == report.chunks_written
    for query, path in [("parse_config", "app/config.py"), ("StartServer", "app/server.go"),
                        ("cartTotal", "web/cart.ts"), ("rsync", "scripts/deploy.sh")]:  # fmt: skip
        hits = engine.search([root], query, limit=3, mode="lexical")
        assert hits and hits[0].path == path, (query, hits)
    assert engine.search([root], "read settings from a file", mode="dense") == []
    # The hybrid search still answers, from its keyword side.
    assert engine.search([root], "parse config", limit=3)[0].path == "app/config.py"
    # The second phase fills the dense side in.
    indexer.embed_backlog(report)
    assert report.embedded == 5 and report.chunks_embedded == report.chunks_written
    assert {d for d, _ in dense_states(engine, coll).values()} == {EMBEDDED}
    assert engine.store.count(coll, "embedded == false") == 0
    assert engine.store.count(coll) == report.chunks_written  # the keyword-only rows are gone
    hits = engine.search([root], "read settings from a file", limit=3, mode="dense")
    assert hits and hits[0].path == "app/config.py"


def test_backlog_order_recent_files_first_and_searched_directories_before(
    engine: Engine, short_tmp: Path
) -> None:
    root = short_tmp / "repo"
    files = {f"{d}/m{i}.py": f"def f_{d}_{i}():\n    return {i}\n" for d in "ab" for i in range(3)}
    write_tree(root, files)
    now = time.time()
    for n, rel in enumerate(sorted(files)):  # a/m0 oldest ... b/m2 newest
        os.utime(root / rel, (now - 1000 + n, now - 1000 + n))
    indexer = engine.indexer_for(root)
    indexer.begin_full().run()

    def order(under: list[str]) -> list[str]:
        pending = indexer.next_embedding(max_chunks=100, under=under)
        assert pending is not None and not pending.stale
        return [item.entry.path for item in pending.group]

    assert order([]) == sorted(files, reverse=True)  # most recently modified first
    assert order(["a"]) == ["a/m2.py", "a/m1.py", "a/m0.py", "b/m2.py", "b/m1.py", "b/m0.py"]
    # A file changed since the first phase stored it is not embedded as it is now: it is handed
    # back (stale) to be indexed again, and then embedded.
    (root / "b/m2.py").write_text("def changed():\n    return 9\n")
    pending = indexer.next_embedding(max_chunks=100)
    assert pending is not None and pending.stale == ["b/m2.py"]
    assert "b/m2.py" not in [item.entry.path for item in pending.group]
    report = indexer.sync_paths(pending.stale)
    assert report.indexed == 1
    hits = engine.search([root], "changed", mode="lexical", limit=1)
    assert hits and hits[0].path == "b/m2.py"


def test_file_kinds_and_what_is_embedded(short_tmp: Path, embedder: Embedder) -> None:
    big = json.dumps(
        [{"id": i, "name": f"result_row_{i}", "score": i * 0.5} for i in range(200)], indent=1
    )
    tree = {
        "src/app.py": "def serve():\n    return 1\n",
        "tests/test_app.py": "def test_serve():\n    assert serve() == 1\n",
        "docs/guide.md": "# Guide\n\nHow to serve.\n",
        "bench/results/run.json": big,
        "package.json": json.dumps({"name": "x", "version": "1.0.0"}),
        "gen/api_pb.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\nX = 1\n",
        "vendor_lib/dep.js": "function dep() { return 1; }\n",
        ".gitattributes": "vendor_lib/** linguist-vendored\n",
    }
    root = short_tmp / "repo"
    write_tree(root, tree)
    settings = make_settings(short_tmp)
    engine = Engine(settings, embedder=embedder)
    try:
        indexer = engine.indexer_for(root)
        indexer.full_sync()
        states = dense_states(engine, indexer.collection)
        assert states == {
            "src/app.py": (EMBEDDED, "code"),
            "tests/test_app.py": (EMBEDDED, "test"),
            "docs/guide.md": (EMBEDDED, "doc"),
            "bench/results/run.json": (LEXICAL, "data"),
            "package.json": (EMBEDDED, "code"),
            "gen/api_pb.py": (LEXICAL, "generated"),
            "vendor_lib/dep.js": (LEXICAL, "generated"),
        }
        coll = indexer.collection
        assert engine.snapshot.kind_counts(coll, LEXICAL) == {"data": 1, "generated": 2}
        # Lexical-only files are found by their words, never by the dense side.
        hits = engine.search([root], "result_row_7", mode="lexical", limit=3)
        assert hits and hits[0].path == "bench/results/run.json"
        assert hits[0].file_kind == "data"
        dense = engine.search([root], "rows of results with scores", mode="dense", limit=20)
        assert not {h.path for h in dense} & {"bench/results/run.json", "gen/api_pb.py"}
        assert engine.store.count(coll, 'file_kind == "data" and embedded == true') == 0
        # A kind that changes while the content does not (here `.gitattributes` marks the
        # app generated) is re-written with its new kind: keyword-only, no vectors.
        (root / ".gitattributes").write_text(
            "vendor_lib/** linguist-vendored\nsrc/** linguist-generated\n"
        )
        assert indexer.relevant([".gitattributes"])[1]  # what the watcher reports: a rescan
        report = indexer.full_sync()
        assert report.indexed >= 1, report
        assert dense_states(engine, coll)["src/app.py"] == (LEXICAL, "generated")
        assert engine.store.count(coll, 'path == "src/app.py" and embedded == true') == 0
        assert engine.search([root], "serve", mode="lexical", limit=1)[0].file_kind == "generated"
    finally:
        engine.close()
    # Configured differently: data is skipped (with its kind as reason), generated embedded.
    settings = make_settings(
        short_tmp, CODECTX_SKIP_KINDS="data", CODECTX_LEXICAL_ONLY="none", CODECTX_DATA_DIR=str(
            short_tmp / "data2"
        )
    )  # fmt: skip
    engine = Engine(settings, embedder=embedder)
    try:
        indexer = engine.indexer_for(root)
        indexer.full_sync()
        states = dense_states(engine, indexer.collection)
        assert "bench/results/run.json" not in states
        assert states["gen/api_pb.py"] == (EMBEDDED, "generated")
        assert engine.snapshot.skip_counts(indexer.collection)["data"] == 1
    finally:
        engine.close()


def test_daemon_keyword_ready_then_embedded_edits_jump_the_queue() -> None:
    """End to end: after `add`, every file is keyword-searchable while the second phase still
    embeds; an edit made meanwhile is searchable both ways at once; then fully embedded."""
    base = Path(tempfile.mkdtemp(prefix="cx2", dir="/tmp"))
    daemon = DaemonProcess(base).start()
    try:
        root = base / "repo"
        files = 250
        write_tree(root, {f"pkg{i % 5}/m{i}.py": f"def step_{i}(v):\n    return v + {i}\n"
                          for i in range(files)})  # fmt: skip
        write_tree(root, {"data/dump.json": json.dumps([{"k": i} for i in range(500)], indent=1)})
        daemon.call("add", {"path": str(root)})
        deadline = time.monotonic() + 120
        info = daemon.info(root)
        while info["state"] != "keyword_ready":
            assert info["state"] != "ready", "the second phase ended before it was seen"
            assert time.monotonic() < deadline, info
            time.sleep(0.02)
            info = daemon.info(root)
        # Keyword-ready: every file stored and found, while the dense side is still filling in.
        assert info["files_indexed"] == files + 1 and info["embedded"] < 1.0
        assert info["embedding"]["chunks_total"] >= files
        every = daemon.call("search", {"query": " ".join(f"step_{i}" for i in range(files)),
                                       "repos": [str(root)], "mode": "lexical", "limit": 200})  # fmt: skip
        assert every["fresh"] and every["embedded"][str(root)] < 1.0
        assert len({h["path"] for h in every["results"]}) == 200
        # An edit during the second phase: keyword- and dense-searchable as soon as it is in.
        target = root / "pkg0" / "m0.py"
        target.write_text(
            "def transmogrify_quaternion_matrix(q):\n"
            '    """Rotate a quaternion matrix by ninety degrees."""\n    return q\n'
        )
        started = time.monotonic()
        found = daemon.call("search", {"query": "transmogrify_quaternion_matrix",
                                       "repos": [str(root)], "mode": "lexical", "wait_s": 30,
                                       "wait_paths": [str(target)]})  # fmt: skip
        took = time.monotonic() - started
        assert [h["path"] for h in found["results"]][:1] == ["pkg0/m0.py"], found
        assert took < 10, took
        dense = daemon.call("search", {"query": "rotate a quaternion matrix by ninety degrees",
                                       "repos": [str(root)], "mode": "dense", "limit": 3})  # fmt: skip
        assert dense["results"] and dense["results"][0]["path"] == "pkg0/m0.py"
        # Then everything is embedded; the data file never is.
        info = daemon.wait_ready(root, timeout_s=300)
        assert info["embedded"] == 1.0 and info["embedding"] is None
        status = daemon.call("status", {"repo": str(root)})["repos"][0]
        assert status["lexical_only"] == {"data": 1}
        assert status["repo"]["state"] == "ready"
    finally:
        daemon.stop()


def test_kind_options_per_repository_through_the_cli() -> None:
    base = Path(tempfile.mkdtemp(prefix="cx3", dir="/tmp"))
    daemon = DaemonProcess(base).start()
    try:
        root = base / "repo"
        write_tree(root, {"src/a.py": "def a():\n    return 1\n",
                          "fixtures/rows.json": json.dumps([{"row": i} for i in range(400)],
                                                           indent=1)})  # fmt: skip
        out = daemon.client("add", str(root), "--lexical-only", "none", "--no-wait")
        assert out.returncode == 0, out.stderr
        daemon.wait_ready(root)
        status = daemon.call("status", {"repo": str(root)})["repos"][0]
        assert status["lexical_only"] == {}  # the data file is embedded here
        saved = json.loads((daemon.data_dir / "repos.json").read_text())["repos"][0]
        assert saved["lexical_only"] == [] and saved["skip_kinds"] is None
        # Added again without options: kept. With other options: re-indexed with them.
        assert daemon.client("add", str(root), "--no-wait").returncode == 0
        out = daemon.client("add", str(root), "--skip-kind", "data", "--no-wait")
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 60
        while True:  # status reads its problems, then its counts: both must have caught up
            status = daemon.call("status", {"repo": str(root)})["repos"][0]
            problems = {p["path"]: p["reason"] for p in status["problems"]}
            if status["skipped"].get("data") == 1 and "fixtures/rows.json" in problems:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert problems["fixtures/rows.json"] == "data"
        bad = daemon.client("add", str(root), "--skip-kind", "binaries", "--no-wait")
        assert bad.returncode == 1 and "unknown file kind 'binaries'" in bad.stderr
    finally:
        daemon.stop()


def test_removing_a_repository_while_it_embeds_leaves_the_daemon_serving() -> None:
    """Removing a repository cancels its second phase mid-group; the daemon goes on serving
    the others (see also `test_a_cancelled_worker_thread_sees_its_cancellation`)."""
    base = Path(tempfile.mkdtemp(prefix="cx4", dir="/tmp"))
    daemon = DaemonProcess(base).start()
    try:
        root, other = base / "repo", base / "other"
        body = "".join(f"    y{k} = x * {k} + len(str(x))\n" for k in range(12))
        write_tree(root, {f"pkg/m{i}.py": "".join(f"def f{i}_{j}(x):\n{body}    return y1\n\n\n"
                                                  for j in range(12)) for i in range(300)})  # fmt: skip
        write_tree(other, SAMPLE_REPO)
        daemon.call("add", {"path": str(other)})
        daemon.wait_ready(other)
        daemon.call("add", {"path": str(root)})
        deadline = time.monotonic() + 120
        while not ((info := daemon.info(root))["state"] == "keyword_ready" and info["embedding"]
                   and info["embedding"]["chunks_embedded"] > 0):  # fmt: skip
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        assert daemon.call("remove", {"path": str(root)})["removed"] == [str(root)]
        assert [r["root"] for r in daemon.call("list")["repos"]] == [str(other)]
        hits = daemon.call("search", {"query": "parse_config", "repos": [str(other)]})["results"]
        assert hits and hits[0]["path"] == "app/config.py"
    finally:
        assert daemon.stop() == 0


def test_a_cancelled_worker_thread_sees_its_cancellation() -> None:
    """The second phase's worker thread polls `cancel_requested`; once its task is cancelled
    it must read True (it used to ask anyio for the loop's cancellation class from the thread,
    which raised NoEventLoopError and took the daemon down on `remove`)."""
    import anyio
    import anyio.to_thread

    from codectxd.embedlane import cancel_requested

    seen: list[bool] = []
    started = threading.Event()

    def worker() -> None:
        started.set()
        while not cancel_requested():
            time.sleep(0.01)
        seen.append(True)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(worker, abandon_on_cancel=False))
            await anyio.to_thread.run_sync(started.wait)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert seen == [True]
