"""Typed settings: defaults < TOML file (platformdirs config dir) < environment.

One `Settings` object is built once at start-up and passed down; no other module reads
`os.environ`. Every setting is described once in `_FIELDS` (section, key, parser, env vars), so
the TOML file, the environment and the error messages cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from codectx_client.paths import default_runtime_dir
from codectxd.errors import ConfigError

APP_NAME = "codectx"

#: Provider names accepted in EMBEDDING_PROVIDER, with the aliases the seed project used.
PROVIDER_ALIASES: dict[str, str] = {
    "local": "local",
    "onnx": "local",
    "openai": "openai",
    "ollama": "ollama",
    "voyage": "voyage",
    "voyageai": "voyage",
    "gemini": "gemini",
    "google": "gemini",
}
#: Which environment variables hold the API key, per provider (first one set wins).
API_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "ollama": ("OLLAMA_API_KEY",),
    "voyage": ("VOYAGE_API_KEY", "VOYAGEAI_API_KEY"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "local": (),
}
SPLITTER_TYPES = ("ast", "line")
LOG_LEVELS = ("debug", "info", "warning", "error")
WATCH_MODES = ("auto", "poll")
#: Per-splitter defaults (characters): AST chunks are larger because they follow code structure.
SPLITTER_DEFAULTS: dict[str, tuple[int, int]] = {"ast": (2500, 300), "line": (1000, 200)}


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    provider: str = "local"
    model: str = ""  # empty: the provider's default model
    dimension: int = 0  # 0: the model's native dimension
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    batch_size: int = 0  # 0: the provider's default
    concurrency: int = 2
    max_retries: int = 6
    timeout_s: float = 60.0
    max_tokens_per_day: int = 0  # 0: no spend guard
    threads: int = 0  # local provider: inference threads (0: all cores)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    address: str = ""  # empty: a Milvus Lite file in the data dir
    token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class SplitterSettings:
    type: str = "ast"
    chunk_size: int = 2500
    chunk_overlap: int = 300


@dataclass(frozen=True, slots=True)
class ScanSettings:
    max_file_bytes: int = 1_000_000
    ignore: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()  # extra file extensions to index, e.g. ".tpl"
    secrets_denylist: bool = True
    follow_symlinks: bool = False
    # Kinds of file (codectxd.kinds) indexed for keyword search only, and kinds not indexed.
    lexical_only: tuple[str, ...] = ("data", "generated")
    skip_kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    memory_budget_mb: int = 2048
    log_level: str = "info"
    # The watcher hands a batch of changes over once no new change arrived for this long...
    watch_quiet_ms: int = 50
    # ...or, for a burst that keeps changing, after at most this long.
    watch_max_batch_ms: int = 1600
    watch: str = "auto"  # auto: file events, periodic scans if they fail; poll: scans only
    poll_interval_s: float = 10.0
    rescan_interval_s: float = 600.0
    request_timeout_s: float = 30.0
    # A repository's collection unused this long leaves Milvus Lite's memory (longer for one
    # that is slow to load: codectxd.residency), and so does the local model's session; the
    # next search loads them again. 0: never.
    release_idle_s: float = 60.0
    # A collection of at least image_min_rows rows with no write for image_quiet_s gets a
    # search image on disk, which answers its searches while Milvus Lite loads it (after a
    # restart, or a release): codectxd.image. image_quiet_s 0: no images.
    image_min_rows: int = 20_000
    image_quiet_s: float = 300.0


@dataclass(frozen=True, slots=True)
class PathSettings:
    config_file: Path
    data_dir: Path
    runtime_dir: Path


@dataclass(frozen=True, slots=True)
class Settings:
    paths: PathSettings
    embedding: EmbeddingSettings = EmbeddingSettings()
    store: StoreSettings = StoreSettings()
    splitter: SplitterSettings = SplitterSettings()
    scan: ScanSettings = ScanSettings()
    daemon: DaemonSettings = DaemonSettings()
    #: Old names used in this configuration, each with what replaces it (logged at start).
    deprecated: tuple[str, ...] = ()

    @property
    def milvus_uri(self) -> str:
        """The URI pymilvus connects to: a server address, or the Lite file in the data dir."""
        return self.store.address or str(self.paths.data_dir / "milvus.db")


# --- parsers: each takes the raw value and returns the typed one or raises ValueError ---------


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


def _int_min(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("expected an integer") from None
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number

    return parse


def _float_min(minimum: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if number < minimum:
            raise ValueError(f"must be >= {minimum}")
        return number

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _choice(choices: Mapping[str, str] | tuple[str, ...]) -> Callable[[Any], str]:
    table = choices if isinstance(choices, Mapping) else {c: c for c in choices}

    def parse(value: Any) -> str:
        text = _str(value).lower()
        if text not in table:
            raise ValueError(f"accepted values: {', '.join(sorted(set(table)))}")
        return table[text]

    return parse


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [_str(part) for part in value]
    else:
        raise ValueError("expected a list of strings (or a comma-separated string)")
    return tuple(item for item in items if item)


def _kinds(value: Any) -> tuple[str, ...]:
    """Kinds of file (codectxd.kinds); "none" (or an empty list in TOML) for none."""
    from codectxd.kinds import parse_kinds

    items = _str_list(value)
    return () if items == ("none",) else parse_kinds(items, "the list")


@dataclass(frozen=True, slots=True)
class _Field:
    section: str
    key: str
    parse: Callable[[Any], Any]
    env: tuple[str, ...] = ()
    #: Old names still accepted (TOML key, environment variable), with a deprecation note.
    old_key: str = ""
    old_env: str = ""


_FIELDS: tuple[_Field, ...] = (
    _Field("embedding", "provider", _choice(PROVIDER_ALIASES), ("EMBEDDING_PROVIDER",)),
    _Field("embedding", "model", _str, ("EMBEDDING_MODEL",)),
    _Field("embedding", "dimension", _int_min(0), ("EMBEDDING_DIMENSION",)),
    _Field("embedding", "api_key", _str),  # env depends on the provider: see _resolve_api_key
    _Field("embedding", "base_url", _str, ("EMBEDDING_BASE_URL",)),
    _Field("embedding", "batch_size", _int_min(0), ("EMBEDDING_BATCH_SIZE",)),
    _Field("embedding", "concurrency", _int_min(1), ("EMBEDDING_CONCURRENCY",)),
    _Field("embedding", "max_retries", _int_min(0), ("EMBEDDING_MAX_RETRIES",)),
    _Field("embedding", "timeout_s", _float_min(0.1), ("EMBEDDING_TIMEOUT_S",)),
    _Field("embedding", "max_tokens_per_day", _int_min(0), ("EMBEDDING_MAX_TOKENS_PER_DAY",)),
    _Field("embedding", "threads", _int_min(0), ("CODECTX_EMBED_THREADS",)),
    _Field("store", "address", _str, ("MILVUS_ADDRESS",)),
    _Field("store", "token", _str, ("MILVUS_TOKEN",)),
    _Field("splitter", "type", _choice(SPLITTER_TYPES), ("SPLITTER_TYPE",)),
    _Field("splitter", "chunk_size", _int_min(100), ("CHUNK_SIZE",)),
    _Field("splitter", "chunk_overlap", _int_min(0), ("CHUNK_OVERLAP",)),
    _Field("scan", "max_file_bytes", _int_min(1), ("CODECTX_MAX_FILE_BYTES",)),
    _Field("scan", "ignore", _str_list, ("CODECTX_IGNORE",)),
    _Field("scan", "extensions", _str_list, ("CODECTX_EXTENSIONS",)),
    _Field("scan", "secrets_denylist", _bool, ("CODECTX_SECRETS_DENYLIST",)),
    _Field("scan", "follow_symlinks", _bool, ("CODECTX_FOLLOW_SYMLINKS",)),
    _Field("scan", "lexical_only", _kinds, ("CODECTX_LEXICAL_ONLY",)),
    _Field("scan", "skip_kinds", _kinds, ("CODECTX_SKIP_KINDS",)),
    _Field("daemon", "memory_budget_mb", _int_min(64), ("CODECTX_MEMORY_BUDGET_MB",)),
    _Field("daemon", "log_level", _choice(LOG_LEVELS), ("CODECTX_LOG_LEVEL",)),
    _Field(
        "daemon",
        "watch_quiet_ms",
        _int_min(1),
        ("CODECTX_WATCH_QUIET_MS",),
        old_key="debounce_ms",
        old_env="CODECTX_DEBOUNCE_MS",
    ),
    _Field("daemon", "watch_max_batch_ms", _int_min(1), ("CODECTX_WATCH_MAX_BATCH_MS",)),
    _Field("daemon", "watch", _choice(WATCH_MODES), ("CODECTX_WATCH",)),
    _Field("daemon", "poll_interval_s", _float_min(0.5), ("CODECTX_POLL_INTERVAL_S",)),
    _Field("daemon", "rescan_interval_s", _float_min(0), ("CODECTX_RESCAN_INTERVAL_S",)),
    _Field("daemon", "request_timeout_s", _float_min(0.1), ("CODECTX_REQUEST_TIMEOUT_S",)),
    _Field("daemon", "release_idle_s", _float_min(0), ("CODECTX_RELEASE_IDLE_S",)),
    _Field("daemon", "image_min_rows", _int_min(1), ("CODECTX_IMAGE_MIN_ROWS",)),
    _Field("daemon", "image_quiet_s", _float_min(0), ("CODECTX_IMAGE_QUIET_S",)),
)
_SECTIONS: dict[str, type] = {
    "embedding": EmbeddingSettings,
    "store": StoreSettings,
    "splitter": SplitterSettings,
    "scan": ScanSettings,
    "daemon": DaemonSettings,
}


def _resolve_paths(env: Mapping[str, str], config_file: Path | None) -> PathSettings:
    file = config_file or Path(
        env.get("CODECTX_CONFIG") or Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
    )
    data_dir = Path(env.get("CODECTX_DATA_DIR") or platformdirs.user_data_dir(APP_NAME))
    runtime_dir = default_runtime_dir(env)
    return PathSettings(
        config_file=file.expanduser(),
        data_dir=data_dir.expanduser(),
        runtime_dir=runtime_dir.expanduser(),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    known = set(_SECTIONS)
    for section, value in data.items():
        if section not in known:
            raise ConfigError(
                f"config file {path}: unknown section [{section}] "
                f"(known: {', '.join(sorted(known))})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"config file {path}: [{section}] must be a table")
        keys = {f.key for f in _FIELDS if f.section == section}
        keys |= {f.old_key for f in _FIELDS if f.section == section and f.old_key}
        for key in value:
            if key not in keys:
                raise ConfigError(
                    f"config file {path}: unknown setting {section}.{key} "
                    f"(known: {', '.join(sorted(keys))})"
                )
    return data


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build the settings from defaults, the TOML config file and the environment.

    Args:
        env: the environment to read (default: ``os.environ``); tests pass their own.
        config_file: an explicit config file (default: ``$CODECTX_CONFIG`` or
            ``<platformdirs config dir>/config.toml``; a missing file is fine).

    Raises:
        ConfigError: a value is invalid; the message names the setting, where it came from and
            the accepted values.
    """
    env = os.environ if env is None else env
    paths = _resolve_paths(env, config_file)
    file_data = _read_toml(paths.config_file)
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    deprecated: list[str] = []
    for spec in _FIELDS:
        raw, origin = _lookup(spec, file_data, env, paths.config_file, deprecated)
        if origin:
            try:
                values[spec.section][spec.key] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid value {raw!r} for {origin}: {exc}") from None
    _apply_splitter_defaults(values["splitter"])
    _resolve_provider_env(values["embedding"], env)
    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    settings = Settings(paths=paths, **sections, deprecated=tuple(deprecated))
    if settings.splitter.chunk_overlap >= settings.splitter.chunk_size:
        raise ConfigError(
            f"splitter.chunk_overlap ({settings.splitter.chunk_overlap}) must be smaller than "
            f"splitter.chunk_size ({settings.splitter.chunk_size})"
        )
    return settings


def _lookup(
    spec: _Field,
    file_data: dict[str, Any],
    env: Mapping[str, str],
    config_file: Path,
    deprecated: list[str],
) -> tuple[Any, str]:
    """(raw value, where it came from) of one setting; ("", "") when it is not set. The
    environment wins over the file, a current name over an old one."""
    section = file_data.get(spec.section, {})
    raw: Any = None
    origin = ""
    old = False
    for key in (spec.old_key, spec.key):
        if key and key in section:
            raw, origin = section[key], f"{spec.section}.{key} in {config_file}"
            old = key == spec.old_key
    for var in (spec.old_env, *spec.env):
        if var and env.get(var, "") != "":
            raw, origin = env[var], f"environment variable {var}"
            old = var == spec.old_env
    if origin and old:
        used = origin.split(" in ")[0].removeprefix("environment variable ")
        new = spec.env[0] if used == spec.old_env else f"{spec.section}.{spec.key}"
        deprecated.append(f"{used} is deprecated: use {new} (same meaning)")
    return raw, origin


def _apply_splitter_defaults(splitter: dict[str, Any]) -> None:
    size, overlap = SPLITTER_DEFAULTS[splitter.get("type", "ast")]
    splitter.setdefault("chunk_size", size)
    splitter.setdefault("chunk_overlap", overlap)


def _resolve_provider_env(embedding: dict[str, Any], env: Mapping[str, str]) -> None:
    provider = embedding.get("provider", "local")
    if not embedding.get("api_key"):
        for var in API_KEY_ENV.get(provider, ()):
            if env.get(var):
                embedding["api_key"] = env[var].strip()
                break
    if not embedding.get("base_url") and provider in ("openai", "ollama"):
        for var in (
            ("OPENAI_BASE_URL", "OPENAI_API_BASE") if provider == "openai" else ("OLLAMA_HOST",)
        ):
            if env.get(var):
                embedding["base_url"] = env[var].strip()
                break


def describe(settings: Settings) -> dict[str, Any]:
    """A JSON-safe view of the settings with secrets replaced by whether they are set."""
    out: dict[str, Any] = {}
    for name in ("embedding", "store", "splitter", "scan", "daemon", "paths"):
        section = dataclasses.asdict(getattr(settings, name))
        for secret in ("api_key", "token"):
            if secret in section:
                section[secret] = "set" if section[secret] else ""
        out[name] = {k: (str(v) if isinstance(v, Path) else v) for k, v in section.items()}
    return out
