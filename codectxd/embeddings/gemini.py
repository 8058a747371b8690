"""Google Gemini embeddings through the official `google-genai` SDK (registers "gemini").

The SDK's `models.embed_content` on the Gemini Developer API sends one
``POST {base}/{version}/models/{model}:batchEmbedContents`` with one entry per text
(``{model: "models/...", content: {parts: [{text}]}, taskType, outputDimensionality}``) and
reads ``{embeddings: [{values}]}``. Chunks use task type RETRIEVAL_DOCUMENT, queries
RETRIEVAL_QUERY. The SDK does not retry unless asked (no `retry_options`): the Embedder does.
Limits and sources: docs/providers.md.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

import numpy as np

from codectxd.config import EmbeddingSettings
from codectxd.embeddings.base import (
    EmbeddingProvider,
    ModelSpec,
    RemoteProvider,
    parse_retry_after,
    register,
)
from codectxd.errors import ProviderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-embedding-001"

# batchEmbedContents takes at most 100 requests ("at most 100 requests can be in one batch");
# the models read the first 2,048 tokens of each input. 20,000 tokens a request is Vertex AI's
# documented cap for the same model, and keeps a single request under the free tier's
# per-minute token quota (a request larger than the quota would be refused every time).
GEMINI_MODELS: dict[str, ModelSpec] = {
    "gemini-embedding-001": ModelSpec(3072, range(128, 3073), 2048, 100, 20_000),
    "text-embedding-004": ModelSpec(768, range(1, 769), 2048, 100, 20_000),
}
UNKNOWN_MODEL = ModelSpec(0, (), 2048, 100, 20_000)
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GeminiProvider(RemoteProvider):
    """Gemini embeddings via `genai.Client(...).models.embed_content`."""

    name = "gemini"
    label = "Gemini"
    key_env = "GEMINI_API_KEY"
    # The API uses the first 2,048 tokens and ignores the rest: cut loosely, only to avoid
    # sending (and paying for) what it will not read.
    bytes_per_token = 4.0

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings.api_key)
        if not settings.api_key:
            raise self.missing_key("GOOGLE_API_KEY, or ")
        from google import genai
        from google.genai import errors, types

        self.model = settings.model or DEFAULT_MODEL
        self._output_dimension = self.use_model(
            GEMINI_MODELS.get(self.model), UNKNOWN_MODEL, settings.dimension
        )
        self.base_url = settings.base_url.rstrip("/")
        self._timeout = settings.timeout_s
        self._types = types
        self._errors = errors
        self._transport = _transport_errors()
        options = types.HttpOptions(timeout=max(1, int(settings.timeout_s * 1000)))  # ms
        if self.base_url:
            options.base_url = self.base_url
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not switch us to
        # Vertex AI, which needs other credentials and another wire format.
        self._client = genai.Client(api_key=settings.api_key, vertexai=False, http_options=options)
        if not self.dimension:
            self.dimension = self.probe_dimension()

    # --- EmbeddingProvider ----------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "RETRIEVAL_DOCUMENT")[0]

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        return self._embed(texts, "RETRIEVAL_DOCUMENT")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "RETRIEVAL_QUERY")[0][0]

    def close(self) -> None:
        close = getattr(self._client, "close", None)  # not in every google-genai release
        if close is not None:
            close()

    # --- the request ------------------------------------------------------------------------

    def _embed(self, texts: list[str], task_type: str) -> tuple[np.ndarray, int | None]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        config = self._types.EmbedContentConfig(
            task_type=task_type,
            output_dimensionality=self._output_dimension,
        )
        rows: list[Any] = []
        tokens: Any = None
        error: ProviderError | None = None
        try:
            response = self._client.models.embed_content(
                model=self.model,
                contents=texts,  # type: ignore[arg-type]
                config=config,
            )
            rows = [item.values for item in (response.embeddings or [])]
            usage = getattr(response, "usage_metadata", None)  # not in every release
            tokens = usage.prompt_token_count if usage is not None else None
        except Exception as exc:  # every SDK failure becomes a ProviderError, below
            error = self._map(exc)
        if error is not None:
            raise error  # outside the except block: no __context__ holding the SDK error
        if any(row is None for row in rows):
            raise self.malformed("an embedding without values")
        used = int(tokens) if isinstance(tokens, int) and tokens > 0 else None
        return self.vectors(rows, len(texts)), used

    def _map(self, exc: Exception) -> ProviderError:
        where = self.base_url or "generativelanguage.googleapis.com"
        if isinstance(exc, self._errors.APIError):
            status = exc.code if isinstance(exc.code, int) else 0
            message = exc.message or exc.status or ""
            response = getattr(exc, "response", None)
            retry_after = parse_retry_after(getattr(response, "headers", None))
            if retry_after is None:
                retry_after = _retry_delay(exc.details)
            if status == 400 and (
                "API_KEY_INVALID" in str(exc.details) or "API key not valid" in str(message)
            ):
                # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
                status = 401
            if status >= 400:
                return self.status_error(status, str(message), retry_after)
            return self.malformed(f"HTTP {status}: {message}")
        if isinstance(exc, self._transport):
            if "Timeout" in type(exc).__name__:
                return self.transient(f"no answer from {where} within {self._timeout:g}s")
            return self.transient(f"cannot reach {where}: {type(exc).__name__}: {exc}")
        return self.malformed(f"{type(exc).__name__}: {exc}")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and connection failures surface as the HTTP library's own exceptions: httpx2
    (google-genai 3.x default) or httpx (older releases, or chosen by the user)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _retry_delay(details: Any) -> float | None:
    """The `retryDelay` of a google.rpc.RetryInfo in an error body (e.g. "37s"), if any."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _RETRY_DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


@register("gemini")
def create_gemini(settings: EmbeddingSettings) -> EmbeddingProvider:
    return GeminiProvider(settings)
