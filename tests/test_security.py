"""Secrets never leave the machine: deny-listed files are never sent to the embedding API, and
API keys never appear in the daemon's logs or status."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess
from tests.fake_providers import FakeProviders

KEY = "sk-proj-SECRETKEY-do-not-leak-4f8a2c"
MARKERS = {
    ".env": "DATABASE_PASSWORD=marker-env-91c3",
    ".env.production": "STRIPE_KEY=marker-envprod-5d2e",
    "deploy/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nmarker-rsa-77aa\n",
    "certs/server.key": "-----BEGIN PRIVATE KEY-----\nmarker-tlskey-0b1f\n",
    "config/credentials.json": '{"token": "marker-creds-3e9d"}',
}


def test_secret_files_never_reach_the_provider_and_keys_never_logged(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, {**MARKERS, "app.py": "def main():\n    return 'hello'\n"})
    with FakeProviders(api_key=KEY) as fake:
        daemon = DaemonProcess(
            short_tmp,
            EMBEDDING_PROVIDER="openai",
            OPENAI_API_KEY=KEY,
            OPENAI_BASE_URL=fake.base_url("openai"),
        )
        daemon.start()
        try:
            daemon.call("add", {"path": str(root)})
            daemon.wait_fresh(root)
            sent = "\n".join(fake.texts("openai"))
            assert "def main" in sent  # the provider did receive the source file
            for marker in MARKERS.values():
                token = marker.split("marker-")[1][:12]
                assert token not in sent
            status = daemon.call("status", {"repo": str(root)})
            skipped = status["repos"][0]["skipped"]
            assert skipped.get("secret") == len(MARKERS)
            hits = daemon.call("search", {"query": "marker", "mode": "lexical"})["results"]
            assert all("marker-" not in h["content"] for h in hits)
            assert KEY not in str(status)
            assert status["daemon"]["settings"]["embedding"]["api_key"] == "set"
        finally:
            daemon.stop()
        log = daemon.log.read_text(errors="replace")
        assert "openai" in log.lower()  # the log did talk about the provider...
        assert KEY not in log and KEY[8:20] not in log  # ...but never showed its key
