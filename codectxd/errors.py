"""The daemon's exception hierarchy.

Every message is written for the user who will read it in `status`, a CLI error or a log line.
Each class carries the stable protocol error code it maps to, so the server converts exceptions
to error replies in one place.
"""

from __future__ import annotations

import re

from codectx_client.protocol import ErrorCode


class CodectxError(Exception):
    """Base class of every error codectx raises on purpose."""

    code = ErrorCode.INTERNAL


class ConfigError(CodectxError):
    """A setting has a bad value or the config file cannot be read."""

    code = ErrorCode.BAD_CONFIG


class ProtocolError(CodectxError):
    """A client sent something that is not a valid request."""

    code = ErrorCode.BAD_REQUEST


class NotFoundError(CodectxError):
    """A repository or other named thing does not exist."""

    code = ErrorCode.NOT_FOUND


class ProviderError(CodectxError):
    """The embedding provider failed (after retries where they apply).

    Attributes:
        retryable: the same request may succeed later (429, 5xx, timeouts, garbage answers).
        retry_after: seconds the server asked us to wait (Retry-After), if it said.
    """

    code = ErrorCode.PROVIDER_ERROR

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SpendLimitReached(ProviderError):
    """The daily token limit (EMBEDDING_MAX_TOKENS_PER_DAY) would be exceeded by a request.

    Never retryable: waiting seconds does not help, the limit resets at 00:00 UTC.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class StoreError(CodectxError):
    """The vector store (Milvus) failed."""

    code = ErrorCode.STORE_ERROR


class AlreadyRunningError(CodectxError):
    """Another daemon already holds the single-instance lock."""

    code = ErrorCode.BUSY


#: Token shapes of the providers' API keys: OpenAI (sk-..., also sk-proj-...), Voyage AI (pa-...,
#: al-... for MongoDB-issued keys) and Google (AIza...). Servers echo keys back in error bodies
#: (OpenAI's 401 shows a partly masked one), so every message built from a provider's answer
#: goes through `redact`.
_KEY_PATTERN = re.compile(r"\b(?:sk|pa|al)-[A-Za-z0-9_\-*]{6,}|\bAIza[0-9A-Za-z_\-]{10,}")


def redact(text: str, *secrets: str) -> str:
    """`text` with the given secrets and anything shaped like an API key replaced by "***".

    Args:
        text: a message that may contain a key (an SDK error, a server's error body).
        secrets: the configured keys; empty strings are ignored.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)
