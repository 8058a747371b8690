"""The embedding provider interface and the registry providers add themselves to."""

from __future__ import annotations

import abc
import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from codectxd.errors import ConfigError, ProviderError, redact

if TYPE_CHECKING:
    from codectxd.config import EmbeddingSettings


class EmbeddingProvider(abc.ABC):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Implementations declare their limits; batching, caching and retries live in
    `codectxd.embeddings.service.Embedder`, not in each provider.
    """

    #: Registry name, e.g. "local", "openai".
    name: str = ""
    #: Model id as the provider knows it.
    model: str = ""
    #: Output dimension (known after construction; OpenAI-compatible servers may detect it).
    dimension: int = 0
    #: Most texts in one request.
    max_batch: int = 32
    #: Most (estimated) tokens in one request.
    max_batch_tokens: int = 100_000
    #: Longest input the model reads, in tokens; longer texts are truncated.
    max_input_tokens: int = 512
    #: Remote providers are called with retries and concurrency; the local one is not.
    remote: bool = False
    #: Concurrent queries are cheaper as one batch (`embed_queries`): a local model.
    batches_queries: bool = False

    @property
    def identity(self) -> str:
        """What makes two vectors comparable: provider, model and dimension."""
        return f"{self.name}:{self.model}:{self.dimension}"

    @abc.abstractmethod
    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Vectors for code chunks, shape (len(texts), dimension)."""

    @abc.abstractmethod
    def embed_query(self, text: str) -> np.ndarray:
        """The vector for a search query, shape (dimension,)."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for several search queries, shape (len(texts), dimension)."""
        return np.stack([self.embed_query(t) for t in texts])

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        """Document vectors plus the tokens the provider billed for them (None: it did not
        say). The Embedder calls this, so the spend guard counts real tokens when it can."""
        return self.embed_documents(texts), None

    def count_tokens(self, text: str) -> int:
        """A cheap token estimate used for batching and the spend guard (~4 chars a token
        for English, less for code: 3 keeps us on the safe side of request limits)."""
        return len(text) // 3 + 1

    def truncate(self, text: str) -> tuple[str, bool]:
        """Cut `text` to the model's input limit; returns (text, was_truncated)."""
        limit = self.max_input_tokens * 3
        return (text, False) if len(text) <= limit else (text[:limit], True)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients / sessions."""

    def warm(self) -> None:  # noqa: B027 - optional hook
        """Load what the first embedding would otherwise wait for (a local model's session)."""

    def rest(self, idle_s: float) -> bool:
        """Drop what the provider holds in memory if it has not been used for `idle_s`; the
        next call rebuilds it. Returns whether anything was dropped."""
        return False


ProviderFactory = Callable[["EmbeddingSettings"], EmbeddingProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Decorator: make a provider factory available under `name`."""

    def decorate(factory: ProviderFactory) -> ProviderFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def create_provider(settings: EmbeddingSettings) -> EmbeddingProvider:
    """Build the configured provider (importing its module, and so its SDK, only now)."""
    import importlib

    module = _PROVIDER_MODULES.get(settings.provider)
    if module is None:
        raise ConfigError(
            f"unknown embedding provider {settings.provider!r} "
            f"(accepted: {', '.join(sorted(_PROVIDER_MODULES))})"
        )
    importlib.import_module(module)
    return _REGISTRY[settings.provider](settings)


#: Provider name → module that registers it (imported lazily: each cloud SDK is heavy).
_PROVIDER_MODULES: dict[str, str] = {
    "local": "codectxd.embeddings.local",
    "openai": "codectxd.embeddings.openai",
    "ollama": "codectxd.embeddings.openai",
    "voyage": "codectxd.embeddings.voyage",
    "gemini": "codectxd.embeddings.gemini",
}


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero) as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


# --- shared by the cloud providers -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What we know about one remote model (docs/providers.md gives the sources).

    Attributes:
        dimension: the native output dimension.
        dimensions: output dimensions the API can be asked for (empty: fixed dimension).
        max_input_tokens: the model's context; longer inputs are truncated.
        max_batch: most inputs in one request.
        max_batch_tokens: most tokens in one request (we stay under it with our estimate).
    """

    dimension: int
    dimensions: Collection[int] = ()
    max_input_tokens: int = 8192
    max_batch: int = 128
    max_batch_tokens: int = 100_000


def choose_dimension(label: str, model: str, spec: ModelSpec, requested: int) -> int | None:
    """The output dimension to ask the API for (None: do not send one, use the native one).

    Raises:
        ConfigError: EMBEDDING_DIMENSION names a dimension the model cannot produce.
    """
    if not requested or (requested == spec.dimension and not spec.dimensions):
        return None
    if requested in spec.dimensions:
        return requested
    if isinstance(spec.dimensions, range) and spec.dimensions:
        accepted = f"{spec.dimensions.start}..{spec.dimensions.stop - 1}"
    else:
        accepted = ", ".join(str(d) for d in sorted({spec.dimension, *spec.dimensions}))
    raise ConfigError(
        f"{label} model {model} cannot produce {requested}-dimensional vectors "
        f"(EMBEDDING_DIMENSION; accepted: {accepted})"
    )


PROBE_TEXT = "def probe(): return 'embedding dimension'"


class RemoteProvider(EmbeddingProvider):
    """Common parts of the API providers: token estimates, truncation, error messages.

    Every message built from an SDK exception or a server's answer goes through `redact`, and
    providers raise these errors outside their `except` blocks, so no exception chain keeps
    the SDK's exception (whose request object carries the key in its headers).
    """

    remote = True
    #: Name used in messages, e.g. "OpenAI".
    label: str = ""
    #: The environment variable that holds the key (named in key errors).
    key_env: str = ""
    #: Bytes per token assumed when cutting a text to `max_input_tokens`: byte-level BPE
    #: tokenizers need at least ~2 bytes a token even on CJK text, base64 or emoji, so 2 keeps
    #: us under limits the server enforces with an error; providers that truncate on the
    #: server themselves use a looser bound.
    bytes_per_token: float = 2.0

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def missing_key(self, alternatives: str = "") -> ConfigError:
        """The error for a provider started without its API key."""
        return ConfigError(
            f"the {self.name} embedding provider needs an API key: set {self.key_env} "
            f"(or {alternatives}embedding.api_key in the config file)"
        )

    def use_model(
        self, spec: ModelSpec | None, unknown: ModelSpec, requested: int, ask_unknown: bool = True
    ) -> int | None:
        """Adopt the limits and dimension of `self.model` (`spec`, None when the table does not
        know it: then `unknown`'s limits and the requested dimension, probed when 0).

        Returns the output dimension to ask the API for (None: the model's own); for an
        unknown model the requested one only when `ask_unknown`.
        """
        if spec is not None:
            output = choose_dimension(self.label, self.model, spec, requested)
            self.dimension = output or spec.dimension
        else:
            spec = unknown
            output = (requested or None) if ask_unknown else None
            self.dimension = requested
        self.max_input_tokens = spec.max_input_tokens
        self.max_batch = spec.max_batch
        self.max_batch_tokens = spec.max_batch_tokens
        return output

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity}>"

    def count_tokens(self, text: str) -> int:
        # ~3 bytes a token for code (4 for English prose): errs towards more tokens.
        return len(text.encode("utf-8", "surrogatepass")) // 3 + 1

    def truncate(self, text: str) -> tuple[str, bool]:
        limit = int(self.max_input_tokens * self.bytes_per_token)
        if len(text) * 4 <= limit:  # even 4-byte characters fit: skip encoding
            return text, False
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return text, False
        return data[:limit].decode("utf-8", "ignore"), True

    def redact(self, text: str) -> str:
        """`text` without the configured key or anything shaped like an API key."""
        return redact(text, self._api_key)

    def probe_dimension(self, where: str = "") -> int:
        """Learn the output dimension from one tiny request (models we have no table for)."""
        error: ProviderError | None = None
        try:
            vectors = self.embed_documents([PROBE_TEXT])
        except ProviderError as exc:
            # Raised outside the `except` block: no exception chain keeps the SDK error.
            error = ProviderError(
                f"cannot learn the dimension of {self.label} model {self.model!r}{where}: "
                f"{exc} (set EMBEDDING_DIMENSION to skip this check)",
                retryable=exc.retryable,
                retry_after=exc.retry_after,
            )
        if error is not None:
            raise error
        return int(vectors.shape[1])

    def detail(self, text: object, limit: int = 300) -> str:
        """A server's error text made fit for a status line: one line, short, redacted."""
        flat = " ".join(str(text).split())
        flat = self.redact(flat)
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    def status_error(
        self, status: int, detail: str = "", retry_after: float | None = None
    ) -> ProviderError:
        """The ProviderError for an HTTP error status (detail: the server's message)."""
        said = f": {self.detail(detail)}" if detail else ""
        label = self.label
        if status == 401:
            return ProviderError(f"{label} rejected the API key (401){said}; check {self.key_env}")
        if status == 403:
            return ProviderError(
                f"{label} refused the request (403, permission denied){said}; check that the "
                f"key may use model {self.model}"
            )
        if status == 404:
            return ProviderError(
                f"{label} does not know model {self.model!r} or the endpoint (404){said}; "
                f"check EMBEDDING_MODEL and EMBEDDING_BASE_URL"
            )
        if status == 429:
            return ProviderError(
                f"{label} rate limit (429){said}", retryable=True, retry_after=retry_after
            )
        if status in (408, 409) or status >= 500:
            return ProviderError(
                f"{label} server error ({status}){said}", retryable=True, retry_after=retry_after
            )
        if status in (400, 413, 422):
            return ProviderError(f"{label} rejected the request ({status}){said}")
        return ProviderError(f"{label} answered HTTP {status}{said}")

    def transient(self, what: str) -> ProviderError:
        """A retryable failure without an HTTP status (timeout, connection refused...)."""
        return ProviderError(f"{self.label}: {self.detail(what)}", retryable=True)

    def malformed(self, what: str) -> ProviderError:
        """The server answered, but not with what the API promises: retry."""
        return ProviderError(
            f"{self.label} sent a malformed response: {self.detail(what)}", retryable=True
        )

    def vectors(self, rows: Sequence[Any], count: int) -> np.ndarray:
        """Check and L2-normalise `rows` (one vector per input).

        Raises:
            ProviderError: wrong count, ragged or wrong dimension, non-finite values.
        """
        if len(rows) != count:
            raise self.malformed(f"{len(rows)} vectors for {count} inputs")
        try:
            array = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise self.malformed("vectors are not lists of numbers") from None
        if array.ndim != 2 or array.shape[0] != count or array.shape[1] == 0:
            raise self.malformed(f"vectors of shape {array.shape}")
        if self.dimension and array.shape[1] != self.dimension:
            # Not retryable: the server serves another model or dimension, and the
            # collection we write to is sized for `self.dimension`.
            raise ProviderError(
                f"{self.label} returned {array.shape[1]}-dimensional vectors for model "
                f"{self.model}, expected {self.dimension} (check EMBEDDING_MODEL / "
                f"EMBEDDING_DIMENSION)"
            )
        if not np.isfinite(array).all():
            raise self.malformed("vectors contain NaN or infinite values")
        return normalise(array)


def header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """A response header by case-insensitive name, from any mapping-like headers object."""
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.title())
        if value is not None:
            return str(value)
        for key, val in headers.items():
            if str(key).lower() == name:
                return str(val)
    except (AttributeError, TypeError):
        return None
    return None


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    millis = header(headers, "retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = header(headers, "retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _RedactingFilter(logging.Filter):
    """Rewrites records of one logger with the known keys (and key-shaped tokens) removed."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, *self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_redactors: dict[str, _RedactingFilter] = {}
_redactors_lock = threading.Lock()


def redact_logs(logger_name: str, secret: str) -> None:
    """Redact `secret` (and key-shaped tokens) from what SDK logger `logger_name` logs.

    Some SDKs log the server's error text (the voyageai SDK logs every error "detail" at INFO),
    and servers echo keys in it. A logger's filters see only records created on that logger,
    so this names the exact logger the SDK uses.
    """
    with _redactors_lock:
        redactor = _redactors.get(logger_name)
        if redactor is None:
            redactor = _redactors[logger_name] = _RedactingFilter()
            logging.getLogger(logger_name).addFilter(redactor)
        if secret:
            redactor.secrets.add(secret)
