"""Voyage AI embeddings through the official `voyageai` SDK (registers "voyage").

Chunks are sent with input_type "document" and queries with "query" (Voyage prepends a
retrieval prompt to each). `voyageai.Client(base_url=...)` points the SDK at another host
(the tests' fake server, a proxy); its retries are off, the Embedder retries. Limits and
sources: docs/providers.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from codectxd.config import EmbeddingSettings
from codectxd.embeddings.base import (
    EmbeddingProvider,
    ModelSpec,
    RemoteProvider,
    parse_retry_after,
    redact_logs,
    register,
)
from codectxd.errors import ConfigError, ProviderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "voyage-code-3"
_FLEXIBLE = (256, 512, 1024, 2048)

# Every model takes at most 1,000 inputs per request; the token total per request is 120K,
# 320K or 1M by model. Our estimate can be low, so batches use half of it, and at most 128
# inputs (the SDK's own batch size) so one failed request re-sends little.
VOYAGE_MODELS: dict[str, ModelSpec] = {
    "voyage-code-3": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 60_000),
    "voyage-3-large": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 60_000),
    "voyage-3.5": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 160_000),
    "voyage-3.5-lite": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 500_000),
    "voyage-4-large": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 60_000),
    "voyage-4": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 160_000),
    "voyage-4-lite": ModelSpec(1024, _FLEXIBLE, 32_000, 128, 500_000),
    "voyage-3": ModelSpec(1024, (), 32_000, 128, 160_000),
    "voyage-3-lite": ModelSpec(512, (), 32_000, 128, 500_000),
    "voyage-code-2": ModelSpec(1536, (), 16_000, 128, 60_000),
    "voyage-2": ModelSpec(1024, (), 4_000, 128, 160_000),
}
#: A model this table does not know: the strictest documented request limit.
UNKNOWN_MODEL = ModelSpec(0, (), 32_000, 128, 60_000)


class VoyageProvider(RemoteProvider):
    """`POST {base}/embeddings` through `voyageai.Client.embed`."""

    name = "voyage"
    label = "Voyage AI"
    key_env = "VOYAGE_API_KEY"
    # Voyage truncates over-long inputs itself (truncation=true): we only cut what would be
    # wasted bandwidth, with a loose bound.
    bytes_per_token = 4.0

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings.api_key)
        if not settings.api_key:
            raise self.missing_key()
        # The SDK logs each error's `detail` to logger "voyage" (INFO); a server may echo the
        # key in it.
        redact_logs("voyage", settings.api_key)
        import voyageai
        import voyageai.error

        self.model = settings.model or DEFAULT_MODEL
        if _is_local_model(self.model):
            # The SDK would run it in-process with sentence-transformers (PyTorch, a model
            # download): not what a provider called "voyage" should do behind our back.
            raise ConfigError(
                f"{self.model} is a Voyage AI open-weight model that the SDK runs locally; "
                f"codectx only calls the Voyage AI API (choose an API model in EMBEDDING_MODEL)"
            )
        self._output_dimension = self.use_model(
            VOYAGE_MODELS.get(self.model), UNKNOWN_MODEL, settings.dimension
        )
        self.base_url = settings.base_url.rstrip("/")
        self._timeout = settings.timeout_s
        self._errors = voyageai.error
        self._client = voyageai.Client(
            api_key=settings.api_key,
            max_retries=0,
            timeout=settings.timeout_s,
            base_url=self.base_url or None,
        )
        if not self.dimension:
            self.dimension = self.probe_dimension()

    # --- EmbeddingProvider ----------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "document")[0]

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        return self._embed(texts, "document")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "query")[0][0]

    # --- the request ------------------------------------------------------------------------

    def _embed(self, texts: list[str], input_type: str) -> tuple[np.ndarray, int | None]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        result: Any = None
        error: ProviderError | None = None
        try:
            result = self._client.embed(
                texts,
                model=self.model,
                input_type=input_type,
                truncation=True,
                output_dimension=self._output_dimension,
            )
            rows = list(result.embeddings)
            tokens = result.total_tokens
        except Exception as exc:  # every SDK failure becomes a ProviderError, below
            error = self._map(exc)
        if error is not None:
            raise error  # outside the except block: no __context__ holding the SDK error
        used = int(tokens) if isinstance(tokens, int) and tokens > 0 else None
        return self.vectors(rows, len(texts)), used

    def _map(self, exc: Exception) -> ProviderError:
        errors = self._errors
        where = self.base_url or "api.voyageai.com"
        if isinstance(exc, errors.Timeout):
            return self.transient(f"no answer from {where} within {self._timeout:g}s")
        if isinstance(exc, errors.APIConnectionError):
            return self.transient(f"cannot reach {where}: {exc}")
        if isinstance(exc, errors.VoyageError):
            status = exc.http_status
            if isinstance(status, int) and status >= 400:
                return self.status_error(status, _message(exc), parse_retry_after(exc.headers))
            # 2xx with a body that is not JSON, or without `detail`-shaped errors.
            return self.malformed(str(exc.user_message or exc))
        return self.malformed(f"{type(exc).__name__}: {exc}")


def _is_local_model(model: str) -> bool:
    """Whether the SDK would run `model` in-process (voyageai >= 0.5 has such models)."""
    try:
        from voyageai.local.helpers import is_local_model
    except ImportError:
        return False
    return bool(is_local_model(model))


def _message(exc: Any) -> str:
    """The server's `detail`, from the parsed body or (5xx: the SDK does not parse it) raw."""
    body = exc.json_body
    if not isinstance(body, dict) and exc.http_body:
        try:
            body = json.loads(exc.http_body)
        except ValueError:
            body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail or exc.user_message or exc.http_body or "")


@register("voyage")
def create_voyage(settings: EmbeddingSettings) -> EmbeddingProvider:
    return VoyageProvider(settings)
