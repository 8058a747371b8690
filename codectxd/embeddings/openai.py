"""OpenAI embeddings, and any OpenAI-compatible server (Ollama, LM Studio, vLLM) by base URL.

Registers "openai" and "ollama". Uses the official `openai` SDK with its retries off: the
Embedder retries. Limits and sources: docs/providers.md.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from codectxd.config import EmbeddingSettings
from codectxd.embeddings.base import (
    EmbeddingProvider,
    ModelSpec,
    RemoteProvider,
    parse_retry_after,
    register,
)
from codectxd.errors import ConfigError, ProviderError

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
OLLAMA_BASE_URL = "http://127.0.0.1:11434/v1"
DEFAULT_MODEL = "text-embedding-3-small"
OLLAMA_DEFAULT_MODEL = "nomic-embed-text"

# 8191 input tokens and 2048 inputs per request for every model; 300k tokens summed over a
# request. Our token estimate can be low on unusual text, so a batch stays at half of that.
OPENAI_MODELS: dict[str, ModelSpec] = {
    "text-embedding-3-small": ModelSpec(1536, range(1, 1537), 8191, 512, 150_000),
    "text-embedding-3-large": ModelSpec(3072, range(1, 3073), 8191, 512, 150_000),
    "text-embedding-ada-002": ModelSpec(1536, (), 8191, 512, 150_000),
}
#: Any other model, on an OpenAI-compatible server. Local servers embed big batches slowly
#: (they must answer within the timeout) and often run models with a 2048-token context
#: (Ollama's default num_ctx): small requests, conservative input limit.
COMPATIBLE_MODEL = ModelSpec(0, (), 2048, 32, 16_000)


class OpenAIProvider(RemoteProvider):
    """`POST {base}/embeddings` through `openai.OpenAI`.

    "openai" asks for base64 float32 vectors (4x smaller than JSON numbers), as the SDK does
    by default, so any server that works with the plain SDK works here; servers that ignore
    `encoding_format` answer lists of floats, which are decoded too. "ollama" asks for floats,
    the only format Ollama answers.
    """

    def __init__(self, settings: EmbeddingSettings, *, name: str = "openai") -> None:
        import openai

        ollama = name == "ollama"
        self.name = name
        self.label = "Ollama" if ollama else "OpenAI"
        self.key_env = "OLLAMA_API_KEY" if ollama else "OPENAI_API_KEY"
        super().__init__(settings.api_key)
        self.base_url = _base_url(settings.base_url, ollama)
        official = urlsplit(self.base_url).hostname == "api.openai.com"
        key = settings.api_key
        if not key:
            if official:
                raise self.missing_key()
            key = "unused"  # local servers want the header, not a key
        self.model = settings.model or (OLLAMA_DEFAULT_MODEL if ollama else DEFAULT_MODEL)
        # Unknown model: `dimensions` may be unsupported, so EMBEDDING_DIMENSION is only
        # checked against the answers; without it the dimension is probed below.
        self._dimensions = self.use_model(
            OPENAI_MODELS.get(self.model), COMPATIBLE_MODEL, settings.dimension, ask_unknown=False
        )
        self._encoding = "float" if ollama else "base64"
        self._timeout = settings.timeout_s
        self._errors = openai
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=settings.timeout_s
        )
        if not self.dimension:
            self.dimension = self.probe_dimension(f" at {self.base_url}")
            log.info(
                "%s model %s at %s: %d dimensions",
                self.label,
                self.model,
                self.base_url,
                self.dimension,
            )

    # --- EmbeddingProvider ----------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)[0]

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        return self._embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0][0]

    def close(self) -> None:
        self._client.close()

    # --- the request ------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        params: dict[str, Any] = {
            "model": self.model,
            "input": texts,
            "encoding_format": self._encoding,
        }
        if self._dimensions:
            params["dimensions"] = self._dimensions
        response: Any = None
        error: ProviderError | None = None
        try:
            response = self._client.embeddings.create(**params)
        except Exception as exc:  # every SDK failure becomes a ProviderError, below
            error = self._map(exc)
        if error is not None:
            raise error  # outside the except block: no __context__ holding the SDK error
        return self._parse(response, len(texts))

    def _parse(self, response: Any, count: int) -> tuple[np.ndarray, int | None]:
        rows: list[Any] = []
        error: ProviderError | None = None
        try:
            items = list(response.data)
            if all(getattr(item, "index", None) is not None for item in items):
                items.sort(key=lambda item: item.index)
            rows = [_decode(item.embedding) for item in items]
        except (AttributeError, TypeError, ValueError, binascii.Error) as exc:
            error = self.malformed(f"{type(exc).__name__}: {exc}")
        if error is not None:
            raise error
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "total_tokens", None) or getattr(usage, "prompt_tokens", None)
        return self.vectors(rows, count), (
            int(tokens) if isinstance(tokens, int) and tokens > 0 else None
        )

    def _map(self, exc: Exception) -> ProviderError:
        errors = self._errors
        if isinstance(exc, errors.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            inner = body.get("error", body)
            inner = inner if isinstance(inner, dict) else {}
            message = str(inner.get("message") or exc.body or exc.message)
            if exc.status_code == 429 and inner.get("code") == "insufficient_quota":
                # Retrying cannot help until someone adds credit.
                return ProviderError(
                    f"{self.label} quota exhausted (429 insufficient_quota): "
                    f"{self.detail(message)}; check the plan and billing of the account"
                )
            return self.status_error(
                exc.status_code, message, parse_retry_after(exc.response.headers)
            )
        if isinstance(exc, errors.APITimeoutError):
            return self.transient(f"no answer from {self.base_url} within {self._timeout:g}s")
        if isinstance(exc, errors.APIConnectionError):
            return self.transient(f"cannot reach {self.base_url}: {exc.__cause__ or exc}")
        return self.malformed(f"{type(exc).__name__}: {exc}")


def _decode(embedding: Any) -> Sequence[float] | np.ndarray:
    """A vector from a list of floats or from base64 little-endian float32."""
    if isinstance(embedding, str):
        data = base64.b64decode(embedding, validate=True)
        if len(data) % 4:
            raise ValueError("base64 embedding is not a whole number of float32 values")
        return np.frombuffer(data, dtype="<f4")
    if not isinstance(embedding, list | tuple):
        raise TypeError(f"embedding is a {type(embedding).__name__}")
    return embedding


def _base_url(configured: str, ollama: bool) -> str:
    """The SDK's base URL: the configured one, else the provider's default.

    For Ollama an OLLAMA_HOST-style "host" or "host:port" is accepted (port 11434 by default),
    and a URL without a path gets Ollama's OpenAI-compatible prefix /v1.
    """
    url = configured.strip().rstrip("/")
    if not url:
        return OLLAMA_BASE_URL if ollama else OPENAI_BASE_URL
    if "://" not in url:
        if not ollama:
            raise ConfigError(
                f"EMBEDDING_BASE_URL / OPENAI_BASE_URL {configured!r} must start with "
                f"http:// or https://"
            )
        host = url.split("/", 1)[0]
        url = "http://" + (url if ":" in host else url.replace(host, host + ":11434", 1))
    if ollama and urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


@register("openai")
def create_openai(settings: EmbeddingSettings) -> EmbeddingProvider:
    return OpenAIProvider(settings, name="openai")


@register("ollama")
def create_ollama(settings: EmbeddingSettings) -> EmbeddingProvider:
    return OpenAIProvider(settings, name="ollama")
