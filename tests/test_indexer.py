"""The indexer against the real Milvus Lite, the real model and real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import codectxd
from codectxd.config import Settings
from codectxd.embeddings.service import Embedder
from codectxd.engine import Engine
from codectxd.indexer.rows import Prepared, prepare
from codectxd.languages import language_for
from codectxd.scanner import Scanner
from codectxd.splitter import Splitter
from tests.conftest import SAMPLE_REPO as REPO
from tests.conftest import make_settings, write_tree


@pytest.fixture
def engine(settings: Settings, embedder: Embedder):  # type: ignore[no-untyped-def]
    eng = Engine(settings, embedder=embedder)
    yield eng
    eng.close()


def expected_chunks(root: Path, settings: Settings) -> int:
    splitter = Splitter(settings.splitter)
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            language = language_for(rel)
            if language:
                total += len(splitter.split(Path(dirpath, name).read_text(), language))
    return total


def stored_ids(engine: Engine, collection: str) -> dict[str, tuple[str, int, int]]:
    rows = engine.store.rows_of(collection, 'id != ""', ["id", "path", "start_line", "end_line"])
    return {r["id"]: (r["path"], r["start_line"], r["end_line"]) for r in rows}


def test_full_index_then_nothing_to_do(engine: Engine, short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, REPO)
    indexer = engine.indexer_for(root)
    first = indexer.full_sync()
    assert (first.indexed, first.failed, first.skipped) == (5, 0, 0)
    count = engine.store.count(indexer.collection)
    assert count == expected_chunks(root, engine.settings) == first.chunks_written
    embedded = engine.embedder.stats.texts
    second = indexer.full_sync()
    assert second.files_read == 0 and second.indexed == 0 and second.unchanged == 5
    assert engine.embedder.stats.texts == embedded  # nothing re-embedded
    assert engine.store.count(indexer.collection) == count


def test_edit_touch_delete(engine: Engine, short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, REPO)
    indexer = engine.indexer_for(root)
    indexer.full_sync()
    before = stored_ids(engine, indexer.collection)

    # Edit one file: only its chunks change; only the changed chunk is embedded.
    path = root / "app/server.go"
    path.write_text(path.read_text() + "\nfunc StopServer() {}\n")
    embedded = engine.embedder.stats.texts
    report = indexer.full_sync()
    assert (report.files_read, report.indexed) == (1, 1)
    after = stored_ids(engine, indexer.collection)
    unchanged = {k: v for k, v in before.items() if v[0] != "app/server.go"}
    assert {k: v for k, v in after.items() if v[0] != "app/server.go"} == unchanged
    assert engine.embedder.stats.texts - embedded <= 2
    assert len(after) == expected_chunks(root, engine.settings)

    # Touch without change: read and hashed, nothing written.
    os.utime(root / "web/cart.ts", ns=(time.time_ns(), time.time_ns()))
    report = indexer.full_sync()
    assert (report.files_read, report.indexed, report.unchanged) == (1, 0, 5)
    assert stored_ids(engine, indexer.collection) == after

    # Delete a file, then a directory (incremental path).
    (root / "README.md").unlink()
    report = indexer.sync_paths(["README.md"])
    assert report.removed == 1
    assert engine.store.count(indexer.collection, 'path == "README.md"') == 0
    for name in ("config.py", "server.go"):
        (root / "app" / name).unlink()
    (root / "app").rmdir()
    report = indexer.sync_paths(["app"])
    assert report.removed == 2
    assert engine.store.count(indexer.collection) == expected_chunks(root, engine.settings)
    assert set(engine.snapshot.load(indexer.collection)) == {"web/cart.ts", "scripts/deploy.sh"}


def test_new_directory_is_scanned_whole(engine: Engine, short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, {"a.py": "def a():\n    return 1\n"})
    indexer = engine.indexer_for(root)
    indexer.full_sync()
    write_tree(root, {"pkg/sub/b.py": "def b():\n    return 2\n", "pkg/c.rs": "fn c() {}\n"})
    report = indexer.sync_paths(["pkg"])
    assert report.indexed == 2
    assert set(engine.snapshot.load(indexer.collection)) == {"a.py", "pkg/sub/b.py", "pkg/c.rs"}


def test_content_skips_are_remembered(engine: Engine, short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(
        root,
        {
            "ok.py": "x = 1\n",
            "blob.py": b"\x00\x01\x02binary",
            "bundle.js": "var a=1;" * 2000,
            "latin1.py": "caf\xe9 = 1\n".encode("latin-1"),
            "crlf.py": "def f():\r\n    return 1\r\n",
            "empty.py": "",
        },
    )
    indexer = engine.indexer_for(root)
    report = indexer.full_sync()
    assert report.skipped == 2 and report.failed == 0
    problems = {p.path: p.reason for p in engine.snapshot.problems(indexer.collection)}
    assert problems == {"blob.py": "binary", "bundle.js": "minified"}
    rows = engine.store.rows_of(indexer.collection, 'path == "crlf.py"', ["content"])
    assert rows[0]["content"] == "def f():\n    return 1\n"
    rows = engine.store.rows_of(indexer.collection, 'path == "latin1.py"', ["content"])
    assert rows[0]["content"] == "caf\ufffd = 1\n"
    again = indexer.full_sync()
    assert again.files_read == 0  # skipped files are not re-read while unchanged


def test_cache_makes_reindex_free(engine: Engine, short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, REPO)
    indexer = engine.indexer_for(root)
    indexer.full_sync()
    engine.store.drop_collection(indexer.collection)
    engine.snapshot.clear(indexer.collection)
    embedded = engine.embedder.stats.texts
    report = indexer.full_sync()
    assert report.indexed == 5
    assert engine.embedder.stats.texts == embedded


def _index_cmd(settings: Settings, root: Path) -> list[str]:
    return [sys.executable, "-m", "codectxd", "index", str(root), "--json"]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CODECTX_DATA_DIR=str(settings.paths.data_dir),
        CODECTX_CONFIG=str(settings.paths.config_file),
        CODECTX_EMBED_THREADS="1",
    )
    return env


def test_sigkill_during_index_then_rerun_equals_clean_index(short_tmp: Path) -> None:
    """Kill -9 the indexer mid-run; a re-run must give exactly the clean index."""
    root = short_tmp / "repo"
    files = {
        f"pkg{i % 4}/mod{i}.py": "".join(
            f"def func_{i}_{j}(value):\n    return value * {j} + {i}\n\n\n" for j in range(12)
        )
        for i in range(40)
    }
    write_tree(root, files)
    crashed = make_settings(short_tmp / "a")
    proc = subprocess.Popen(
        _index_cmd(crashed, root),
        env=_env(crashed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_db = crashed.paths.data_dir / "state.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            state_db.exists()
            and state_db.stat().st_size
            + (
                state_db.with_name("state.db-wal").stat().st_size
                if state_db.with_name("state.db-wal").exists()
                else 0
            )
            > 8192
        ):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the indexer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    rerun = subprocess.run(
        _index_cmd(crashed, root), env=_env(crashed), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean = make_settings(short_tmp / "b")
    done = subprocess.run(
        _index_cmd(clean, root), env=_env(clean), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]

    def contents(s: Settings) -> list[tuple[str, int, int, str]]:
        eng = Engine(s)
        try:
            coll = eng.collection_for(root)
            rows = eng.store.rows_of(coll, 'id != ""', ["id", "path", "start_line", "end_line"])
            return sorted((r["id"], r["path"], r["start_line"], r["end_line"]) for r in rows)
        finally:
            eng.close()

    crashed_rows, clean_rows = contents(crashed), contents(clean)
    assert len(crashed_rows) == len(set(crashed_rows))  # no duplicates
    assert crashed_rows == clean_rows


def test_never_reads_through_a_parent_swapped_for_a_link(
    engine: Engine, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory replaced by a symlink to outside the repository between planning and
    reading: the read checks what it opened, so nothing from outside is indexed."""
    root = short_tmp / "repo"
    outside = short_tmp / "outside"
    write_tree(root, {"sub/mod.py": "def inside_qz():\n    return 1\n"})
    write_tree(outside, {"mod.py": "def outside_qz():\n    return 2\n"})
    indexer = engine.indexer_for(root)
    indexer.full_sync()
    (root / "sub/mod.py").write_text("def inside_again_qz():\n    return 3\n")
    planned = indexer.scanner.check_file("sub/mod.py")  # planned before the swap
    os.rename(root / "sub", root / "sub_old")
    os.symlink(str(outside), root / "sub")
    monkeypatch.setattr(indexer.scanner, "check_file", lambda rel: planned)
    report = indexer.sync_paths(["sub/mod.py"])
    assert report.skipped == 1 and report.indexed == 0
    contents = engine.store.rows_of(indexer.collection, 'id != ""', ["content"])
    assert not any("outside_qz" in r["content"] for r in contents)
    state = engine.snapshot.load(indexer.collection)["sub/mod.py"]
    assert (state.state, state.reason.split(":")[0]) == ("skipped", "symlink_outside")


def skip_records(engine: Engine, collection: str) -> dict[str, str]:
    """{path: skip reason code} as the snapshot records them (what `status` reports)."""
    return {
        path: state.reason.split(":")[0]
        for path, state in engine.snapshot.load(collection).items()
        if state.state == "skipped"
    }


def test_skips_found_by_incremental_syncs_are_reported(
    engine: Engine, settings: Settings, short_tmp: Path
) -> None:
    """Scanner skips met by the watcher path are recorded at once (what status reports), go
    when the file becomes indexable or goes, are never counted twice, and survive a restart."""
    root = short_tmp / "repo"
    write_tree(root, {"ok.py": "def ok():\n    return 1\n", "old.pem": "k"})
    indexer = engine.indexer_for(root)
    indexer.full_sync()
    coll = indexer.collection
    assert skip_records(engine, coll) == {"old.pem": "secret"}
    os.symlink("ok.py", root / "late_link.py")
    os.mkfifo(root / "late_pipe.py")
    with open(root / "late_huge.py", "wb") as handle:
        handle.truncate(engine.settings.scan.max_file_bytes + 1)
    write_tree(root, {".env": "TOKEN=1", "pkg/inner.key": "k", "pkg/fine.py": "x = 1\n"})
    names = ["late_link.py", "late_pipe.py", "late_huge.py", ".env", "old.pem", "pkg"]
    report = indexer.sync_paths(names)
    assert report.indexed == 1
    expected = {
        "late_link.py": "symlink",
        "late_pipe.py": "not_regular",
        "late_huge.py": "too_large",
        ".env": "secret",
        "old.pem": "secret",
        "pkg/inner.key": "secret",
    }
    assert skip_records(engine, coll) == expected
    assert engine.snapshot.skip_counts(coll) == {
        "symlink": 1,
        "not_regular": 1,
        "too_large": 1,
        "secret": 3,
    }
    # Checked again: nothing is counted twice, nothing is rewritten.
    again = indexer.sync_paths(names)
    assert again.skipped == 0 and sum(engine.snapshot.skip_counts(coll).values()) == 6
    # Indexable now, or gone: their skip records go.
    (root / "late_huge.py").write_text("def now_small():\n    return 2\n")
    (root / ".env").unlink()
    (root / "pkg/inner.key").unlink()
    (root / "pkg/fine.py").unlink()
    (root / "pkg").rmdir()
    (root / "pkg").write_text("a file where a directory was\n")
    report = indexer.sync_paths(["late_huge.py", ".env", "pkg"])
    assert report.indexed == 1
    expected = {
        k: v for k, v in expected.items() if k not in ("late_huge.py", ".env", "pkg/inner.key")
    }
    expected["pkg"] = "unsupported"
    assert skip_records(engine, coll) == expected
    # A full scan sees the same; a restarted engine reports it before any scan.
    indexer.full_sync()
    assert skip_records(engine, coll) == expected
    engine.close()
    reopened = Engine(settings, embedder=engine.embedder)
    try:
        assert skip_records(reopened, coll) == expected
        assert reopened.snapshot.skip_counts(coll) == {
            "symlink": 1,
            "not_regular": 1,
            "secret": 1,
            "unsupported": 1,
        }
        listed = {x.path for x in reopened.snapshot.problems(coll)}
        assert listed == set(expected) - {"pkg"}  # unsupported files are counted, not listed
    finally:
        reopened.close()


def test_the_second_phase_splits_as_the_first_without_symbols(settings: Settings) -> None:
    """Phase 2 re-reads files without the symbol extraction; its chunks (and so their ids)
    must be the first phase's, or the embedded rows would not replace the keyword ones."""
    scanner = Scanner(Path(codectxd.__file__).parent.parent, settings.scan)
    splitter = Splitter(settings.splitter)
    entries = [e for e in scanner.scan().files if e.language in ("python", "lua", "markdown")]
    assert len(entries) > 50
    defined = 0
    for entry in entries:
        full = prepare(scanner, splitter, entry, None)
        lean = prepare(scanner, splitter, entry, None, with_symbols=False)
        assert isinstance(full, Prepared) and isinstance(lean, Prepared)
        assert lean.chunks == full.chunks, entry.path
        assert not lean.symbols.definitions and not lean.symbols.occurrences
        defined += bool(full.symbols.definitions)
    assert defined > 50  # the first phase's split did extract them


def test_files_read_ahead_and_changed_before_their_group_are_read_again(
    engine: Engine, short_tmp: Path
) -> None:
    """A full sync splits the next group while this one is written; a file saved in between
    (and perhaps indexed by a sync of saved files between two groups) is read again, never
    written with what the helper read before the save."""
    from codectxd.indexer import job as job_mod

    root = short_tmp / "repo"
    count = job_mod.PREFETCH_MIN_FILES + 8
    write_tree(root, {f"m{i:02d}.py": f"def old_{i}():\n    return {i}\n" for i in range(count)})
    indexer = engine.indexer_for(root)
    job = indexer.begin_full()
    assert job.step(2)  # the first group: two chunks, one per file
    prefetch = job._prefetch
    assert prefetch is not None
    deadline = time.monotonic() + 10
    while prefetch.buffered < 2:  # the helper has read the next group's files
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for i in range(2, count):
        path = root / f"m{i:02d}.py"
        path.write_text(f"def new_{i}():\n    return {i}\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a distinct mtime
    while job.step(2):
        pass
    report = job.finish()
    assert report.indexed == count and report.failed == 0
    rows = engine.store.rows_of(indexer.collection, 'id != ""', ["path", "content"])
    contents = {r["path"]: r["content"] for r in rows}
    for i in range(2, count):
        assert f"def new_{i}" in contents[f"m{i:02d}.py"], contents[f"m{i:02d}.py"]
