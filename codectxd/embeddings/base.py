"""The embedding provider interface and the registry providers add themselves to."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from codectxd.errors import ConfigError

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
}


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero) as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
