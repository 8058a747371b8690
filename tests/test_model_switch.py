"""Switching the embedding model builds a new index beside the old one; searches keep working
on the old one until the new one is complete, then the old one is removed."""

from __future__ import annotations

import time
from pathlib import Path

from codectxd.config import load_settings
from codectxd.engine import Engine
from codectxd.indexer import repo_key
from codectxd.store import collection_name
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess
from tests.fake_providers import FakeProviders, Fault

KEY = "sk-test-switch-0123456789abcdef"


def _engine(data_dir: Path) -> Engine:
    """The data dir's engine in this process (the daemon stopped), default settings."""
    return Engine(load_settings(
        {"CODECTX_DATA_DIR": str(data_dir), "CODECTX_CONFIG": str(data_dir / "none.toml")}
    ))  # fmt: skip


def _indexed_once(short_tmp: Path, root: Path) -> Path:
    """Index `root` with a daemon of default settings, stop it; its data dir."""
    daemon = DaemonProcess(short_tmp).start()
    try:
        daemon.call("add", {"path": str(root)})
        daemon.wait_fresh(root)
    finally:
        daemon.stop()
    return daemon.data_dir


def collections(data_dir: Path) -> list[str]:
    engine = _engine(data_dir)
    try:
        return engine.store.list_collections()
    finally:
        engine.close()


def test_switch_from_local_to_openai_keeps_searching(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(
        root,
        {
            f"src/m{i}.py": f"def compute_tax_{i}(amount):\n    return amount * 0.{i}\n"
            for i in range(1, 25)
        },
    )
    old = collections(_indexed_once(short_tmp, root))
    assert len(old) == 1 and "local" in old[0]

    with FakeProviders(api_key=KEY) as fake:
        fake.always(Fault(status=503, message="overloaded"))  # the new model is down at first
        cloud = DaemonProcess(
            short_tmp,
            EMBEDDING_PROVIDER="openai",
            OPENAI_API_KEY=KEY,
            OPENAI_BASE_URL=fake.base_url("openai"),
            EMBEDDING_MODEL="text-embedding-3-small",
            EMBEDDING_BATCH_SIZE="2",
            EMBEDDING_CONCURRENCY="1",
            EMBEDDING_MAX_RETRIES="0",
        )
        cloud.start()
        try:
            # Searches never fail and always find the file by keywords: from the old index
            # (its vectors come from the other model) until the new one is keyword-complete,
            # then from the new one, whose vectors cannot be made while the provider is down.
            def keyword_hit() -> dict:
                result = cloud.call("search", {"query": "compute_tax_7", "repos": [str(root)]})
                assert result["results"] and result["results"][0]["path"] == "src/m7.py"
                return result

            def repo() -> dict:
                return next(r for r in cloud.call("list")["repos"] if r["root"] == str(root))

            keyword_hit()
            deadline = time.monotonic() + 60
            while not ("openai" in repo()["collection"] and repo()["state"] == "keyword_ready"):
                assert time.monotonic() < deadline, repo()
                keyword_hit()
                time.sleep(0.1)
            during = keyword_hit()
            assert during["fresh"] and during["embedded"] == {str(root): 0.0}
            info = repo()
            assert info["embedded"] == 0.0 and info["embedding"]["chunks_embedded"] == 0
            assert collections_of(cloud) == [info["collection"]]  # the old index is gone
            while not (repo()["embedding"] or {}).get("error"):
                assert time.monotonic() < deadline, repo()
                time.sleep(0.1)
            assert "503" in repo()["embedding"]["error"]
            # The provider is back: the second phase fills the dense side in.
            fake.always(None)
            cloud.call("reindex", {"repo": str(root)})
            while repo()["state"] != "ready":
                assert time.monotonic() < deadline + 120, repo()
                time.sleep(0.2)
            assert repo()["embedded"] == 1.0 and repo()["embedding"] is None
            after = cloud.call(
                "search", {"query": "tax on an amount", "repos": [str(root)], "mode": "dense"}
            )
            assert after["fresh"] and after["results"] and after["embedded"] == {str(root): 1.0}
            assert fake.count("openai") > 0
            status = cloud.call("status")
            assert status["daemon"]["provider"] == "openai"
            assert status["daemon"]["dimension"] == 1536
            assert KEY not in str(status) and KEY not in cloud.log_text()
        finally:
            cloud.stop()
    remaining = collections(cloud.data_dir)
    assert len(remaining) == 1 and "openai" in remaining[0]  # the old index was removed


def collections_of(daemon: DaemonProcess) -> list[str]:
    """The collections a running daemon's repositories use (from `status`)."""
    return sorted({r["repo"]["collection"] for r in daemon.call("status")["repos"]})


def test_a_leftover_collection_is_removed_at_the_next_start(short_tmp: Path) -> None:
    """A model switch stopped between completing the new index and dropping the old one
    leaves the old collection: the next start finds and removes it (after the store opens in
    the background), and keeps the complete one."""
    root = short_tmp / "repo"
    write_tree(root, {"src/a.py": "def compute_tax(amount):\n    return amount * 0.2\n"})
    data_dir = _indexed_once(short_tmp, root)
    (active,) = collections(data_dir)
    leftover = collection_name(repo_key(root.resolve()), "other:model", 8)
    engine = _engine(data_dir)
    try:
        engine.store.ensure_collection(leftover, 8, {})
    finally:
        engine.close()
    assert sorted(collections(data_dir)) == sorted([active, leftover])

    again = DaemonProcess(short_tmp).start()
    try:
        deadline = time.monotonic() + 60
        while "removed older collections" not in again.log_text():
            assert time.monotonic() < deadline, again.log_text()[-3000:]
            time.sleep(0.1)
        assert leftover in again.log_text()
        found = again.call("search", {"query": "compute_tax", "repos": [str(root)]})
        assert found["results"][0]["path"] == "src/a.py"
    finally:
        again.stop()
    assert collections(again.data_dir) == [active]
