from pathlib import Path

import pytest

from codectxd.config import load_settings
from codectxd.errors import ConfigError


def base_env(tmp: Path) -> dict[str, str]:
    return {"CODECTX_CONFIG": str(tmp / "config.toml"), "CODECTX_DATA_DIR": str(tmp / "d")}


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(base_env(tmp_path))
    assert s.embedding.provider == "local"
    assert s.splitter.type == "ast"
    assert (s.splitter.chunk_size, s.splitter.chunk_overlap) == (2500, 300)
    assert s.milvus_uri == str(tmp_path / "d" / "milvus.db")
    assert s.scan.secrets_denylist is True


def test_file_then_env_precedence(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[embedding]\nprovider = "openai"\nmodel = "text-embedding-3-small"\n'
        '[splitter]\ntype = "line"\n[scan]\nignore = ["*.gen.go"]\n'
    )
    env = base_env(tmp_path)
    s = load_settings(env)
    assert s.embedding.provider == "openai"
    assert s.splitter.type == "line"
    assert (s.splitter.chunk_size, s.splitter.chunk_overlap) == (1000, 200)
    assert s.scan.ignore == ("*.gen.go",)
    env.update(
        EMBEDDING_PROVIDER="VoyageAI",
        CHUNK_SIZE="800",
        MILVUS_ADDRESS="http://h:19530",
        MILVUS_TOKEN="secret-token",
        VOYAGE_API_KEY="vk",
    )
    s = load_settings(env)
    assert s.embedding.provider == "voyage"
    assert s.embedding.api_key == "vk"
    assert s.splitter.chunk_size == 800
    assert s.milvus_uri == "http://h:19530"
    assert "secret-token" not in repr(s)
    assert "vk" not in repr(s.embedding)


def test_openai_base_url_aliases(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"EMBEDDING_PROVIDER": "OpenAI", "OPENAI_API_BASE": "http://x/v1"}
    assert load_settings(env).embedding.base_url == "http://x/v1"
    env["OPENAI_BASE_URL"] = "http://y/v1"
    assert load_settings(env).embedding.base_url == "http://y/v1"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("EMBEDDING_PROVIDER", "cohere", "accepted values: "),
        ("SPLITTER_TYPE", "semantic", "ast, line"),
        ("CHUNK_SIZE", "ten", "expected an integer"),
        ("CHUNK_SIZE", "10", "must be >= 100"),
        ("CODECTX_SECRETS_DENYLIST", "maybe", "true or false"),
    ],
)
def test_bad_env_values_name_the_setting(tmp_path: Path, var: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(base_env(tmp_path) | {var: value})
    message = str(info.value)
    assert var in message and needle in message


def test_bad_file_values(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[splitter]\nchunk_sise = 3\n")
    with pytest.raises(ConfigError, match="unknown setting splitter.chunk_sise"):
        load_settings(base_env(tmp_path))
    (tmp_path / "config.toml").write_text("[splitter\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(base_env(tmp_path))
    (tmp_path / "config.toml").write_text("[splitter]\nchunk_size = 500\nchunk_overlap = 600\n")
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(base_env(tmp_path))


def test_watcher_timings_and_their_old_name(tmp_path: Path) -> None:
    s = load_settings(base_env(tmp_path))
    assert (s.daemon.watch_quiet_ms, s.daemon.watch_max_batch_ms) == (50, 1600)
    assert s.deprecated == ()
    # The old name keeps working (it always meant the quiet time), with a note to move on.
    (tmp_path / "config.toml").write_text("[daemon]\ndebounce_ms = 20\n")
    s = load_settings(base_env(tmp_path))
    assert s.daemon.watch_quiet_ms == 20
    assert s.deprecated == (
        "daemon.debounce_ms is deprecated: use daemon.watch_quiet_ms (same meaning)",
    )
    env = base_env(tmp_path) | {"CODECTX_DEBOUNCE_MS": "30"}
    s = load_settings(env)
    assert s.daemon.watch_quiet_ms == 30 and "CODECTX_DEBOUNCE_MS is deprecated" in s.deprecated[0]
    # The new name wins over the old one.
    env["CODECTX_WATCH_QUIET_MS"] = "40"
    assert load_settings(env).daemon.watch_quiet_ms == 40
    (tmp_path / "config.toml").write_text("[daemon]\nwatch_max_batch_ms = 0\n")
    with pytest.raises(ConfigError, match="watch_max_batch_ms"):
        load_settings(base_env(tmp_path))
