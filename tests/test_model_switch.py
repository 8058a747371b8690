"""Switching the embedding model builds a new index beside the old one; searches keep working
on the old one until the new one is complete, then the old one is removed."""

from __future__ import annotations

from pathlib import Path

from codectxd.config import load_settings
from codectxd.engine import Engine
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess
from tests.fake_providers import FakeProviders, Fault

KEY = "sk-test-switch-0123456789abcdef"


def collections(data_dir: Path) -> list[str]:
    settings = load_settings(
        {"CODECTX_DATA_DIR": str(data_dir), "CODECTX_CONFIG": str(data_dir / "none.toml")}
    )
    engine = Engine(settings)
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
    local = DaemonProcess(short_tmp).start()
    try:
        local.call("add", {"path": str(root)})
        local.wait_fresh(root)
    finally:
        local.stop()
    old = collections(local.data_dir)
    assert len(old) == 1 and "local" in old[0]

    with FakeProviders(api_key=KEY) as fake:
        fake.always(Fault(delay=0.4))  # a slow provider: the new index takes a while
        cloud = DaemonProcess(
            short_tmp,
            EMBEDDING_PROVIDER="openai",
            OPENAI_API_KEY=KEY,
            OPENAI_BASE_URL=fake.base_url("openai"),
            EMBEDDING_MODEL="text-embedding-3-small",
            EMBEDDING_BATCH_SIZE="2",
            EMBEDDING_CONCURRENCY="1",
        )
        cloud.start()
        try:
            # While the new index builds, the old one answers (by keywords: its vectors come
            # from the other model).
            during = cloud.call("search", {"query": "compute_tax_7", "repos": [str(root)]})
            assert during["results"] and during["results"][0]["path"] == "src/m7.py"
            assert not during["fresh"]
            info = next(r for r in cloud.call("list")["repos"] if r["root"] == str(root))
            assert "openai" in info["collection"] and info["state"] != "ready"
            fake.always(None)
            cloud.wait_fresh(root, timeout_s=300)
            after = cloud.call("search", {"query": "tax on an amount", "repos": [str(root)]})
            assert after["fresh"] and after["results"]
            assert fake.count("openai") > 0
            status = cloud.call("status")
            assert status["daemon"]["provider"] == "openai"
            assert status["daemon"]["dimension"] == 1536
            assert KEY not in str(status) and KEY not in cloud.log_text()
        finally:
            cloud.stop()
    remaining = collections(cloud.data_dir)
    assert len(remaining) == 1 and "openai" in remaining[0]  # the old index was removed
