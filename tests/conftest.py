"""Shared fixtures: real components in short temporary directories."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from codectxd.config import Settings, load_settings
from codectxd.embeddings.base import create_provider
from codectxd.embeddings.cache import EmbeddingCache
from codectxd.embeddings.service import Embedder


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Unix socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cx", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_settings(base: Path, **env: str) -> Settings:
    """Settings isolated in `base` (data, runtime, config), plus extra environment values."""
    values = {
        "CODECTX_DATA_DIR": str(base / "data"),
        "CODECTX_RUNTIME_DIR": str(base / "run"),
        "CODECTX_CONFIG": str(base / "config.toml"),
        "CODECTX_EMBED_THREADS": "1",
    }
    values.update(env)
    return load_settings(values)


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return make_settings(short_tmp)


@pytest.fixture(scope="session")
def local_provider():  # type: ignore[no-untyped-def]
    """The real offline model, loaded once per test session."""
    from codectxd.config import EmbeddingSettings

    return create_provider(EmbeddingSettings(threads=1))


@pytest.fixture
def embedder(local_provider, settings: Settings) -> Embedder:  # type: ignore[no-untyped-def]
    cache = EmbeddingCache(settings.paths.data_dir / "embeddings.db")
    return Embedder(local_provider, cache)


#: A small mixed-language repository (Python, Go, TypeScript, Markdown, shell).
SAMPLE_REPO = {
    "app/config.py": (
        'import json\n\n\ndef parse_config(path):\n    """Read settings."""\n'
        "    with open(path) as f:\n        return json.load(f)\n\n\n"
        "class Cache:\n    def __init__(self):\n        self.items = {}\n\n"
        "    def get(self, key):\n        return self.items.get(key)\n"
    ),
    "app/server.go": (
        'package app\n\nimport "net/http"\n\n'
        "func StartServer(addr string) error {\n\treturn http.ListenAndServe(addr, nil)\n}\n"
    ),
    "web/cart.ts": (
        "export interface Item { price: number }\n\n"
        "export function cartTotal(items: Item[]): number {\n"
        "  return items.reduce((sum, item) => sum + item.price, 0);\n}\n"
    ),
    "README.md": "# Demo\n\nA demo repository.\n\n## Usage\n\nRun the server.\n",
    "scripts/deploy.sh": "#!/bin/sh\nset -e\ndeploy() {\n  rsync -a build/ host:/srv\n}\ndeploy\n",
}


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Create files (and their directories) under `root`."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def env_without_codectx() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CODECTX_")}
