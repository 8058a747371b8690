"""The daemon's exception hierarchy.

Every message is written for the user who will read it in `status`, a CLI error or a log line.
Each class carries the stable protocol error code it maps to, so the server converts exceptions
to error replies in one place.
"""

from __future__ import annotations


class CodectxError(Exception):
    """Base class of every error codectx raises on purpose."""

    code = "internal"


class ConfigError(CodectxError):
    """A setting has a bad value or the config file cannot be read."""

    code = "bad_config"


class ProtocolError(CodectxError):
    """A client sent something that is not a valid request."""

    code = "bad_request"


class NotFoundError(CodectxError):
    """A repository or other named thing does not exist."""

    code = "not_found"


class NotIndexedError(CodectxError):
    """A search was asked of a repository that has no index yet."""

    code = "not_indexed"


class BusyError(CodectxError):
    """The daemon cannot take this request now (another job holds the resource)."""

    code = "busy"


class ProviderError(CodectxError):
    """The embedding provider failed (after retries where they apply)."""

    code = "provider_error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class StoreError(CodectxError):
    """The vector store (Milvus) failed."""

    code = "store_error"


class AlreadyRunningError(CodectxError):
    """Another daemon already holds the single-instance lock."""

    code = "busy"
