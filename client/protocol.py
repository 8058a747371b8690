"""The codectx wire protocol: every message type, error code and the framing.

This module is the contract between the daemon and every client (CLI, MCP server, editor
plugins); docs/protocol.md describes the same thing for non-Python clients. It imports msgspec
and the standard library only.

Framing: each message is a 4-byte big-endian unsigned length followed by that many bytes of
msgpack. A request is a map `{v, id, method, params}`; the reply carries the same `id` and
either `ok: true, result` or `ok: false, error: {code, message, data}`. A `subscribe` request
is answered once, then followed by event frames `{id, event, data}` until the client closes.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal

import msgspec

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 16 * 1024 * 1024


class ErrorCode:
    """Stable error codes (strings on the wire)."""

    BAD_REQUEST = "bad_request"  # malformed frame/request, invalid params
    UNKNOWN_METHOD = "unknown_method"
    VERSION_MISMATCH = "version_mismatch"
    FRAME_TOO_LARGE = "frame_too_large"
    NOT_FOUND = "not_found"  # no such repository
    NOT_INDEXED = "not_indexed"
    BUSY = "busy"
    TIMEOUT = "timeout"
    BAD_CONFIG = "bad_config"
    PROVIDER_ERROR = "provider_error"
    STORE_ERROR = "store_error"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


# --- envelopes ---------------------------------------------------------------------------


class Request(msgspec.Struct, omit_defaults=True):
    """A request envelope; `params` is decoded later against the method's params type."""

    method: str
    id: int | str | None = None
    v: int = PROTOCOL_VERSION
    params: msgspec.Raw = msgspec.Raw(b"\x80")  # msgpack for {}


class ErrorInfo(msgspec.Struct):
    code: str
    message: str
    data: dict[str, Any] | None = None


class Reply(msgspec.Struct):
    id: int | str | None
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


class Event(msgspec.Struct):
    """A streamed event, tagged with the id of the `subscribe` request it belongs to."""

    id: int | str | None
    event: str
    data: dict[str, Any]


# --- params ------------------------------------------------------------------------------


class Params(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """Base of every params type: unknown fields are ignored (forward compatibility)."""


class PingParams(Params):
    pass


#: A file system path from a client: any bytes but NUL (which no path can contain).
PathStr = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*\Z")]
#: A filter value (path glob, language, extension): no control characters.
FilterStr = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]*\Z")]


class AddParams(Params):
    path: PathStr
    force: bool = False  # allow system directories such as / or /etc
    ignore: list[str] = []  # extra gitignore-style patterns for this repository
    extensions: list[str] = []  # extra file extensions to index in this repository


class RemoveParams(Params):
    path: PathStr


class ListParams(Params):
    pass


class SearchParams(Params):
    query: str
    repos: list[PathStr] = []  # repository roots or paths inside them; empty: all repos
    paths: list[FilterStr] = []  # path prefixes or globs, relative to the repository root
    languages: list[FilterStr] = []
    extensions: list[FilterStr] = []
    limit: int = 10
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    # Wait up to this long for pending changes (read-your-writes); the daemon caps it at 60 s.
    wait_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0
    wait_paths: list[PathStr] = []  # absolute paths whose pending changes to wait for


class StatusParams(Params):
    repo: PathStr | None = None
    # How many recent file problems to include per repo.
    errors: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 20


class ReindexParams(Params):
    repo: PathStr | None = None  # default: all repos
    force: bool = False  # re-read and re-split every file


class ClearParams(Params):
    repo: PathStr | None = None  # default: all repos
    all: bool = False  # required when repo is omitted


class SubscribeParams(Params):
    repos: list[PathStr] = []


class ShutdownParams(Params):
    pass


PARAMS: dict[str, type[Params]] = {
    "ping": PingParams,
    "add": AddParams,
    "remove": RemoveParams,
    "list": ListParams,
    "search": SearchParams,
    "status": StatusParams,
    "reindex": ReindexParams,
    "clear": ClearParams,
    "subscribe": SubscribeParams,
    "shutdown": ShutdownParams,
}


# --- results -----------------------------------------------------------------------------


class PingResult(msgspec.Struct):
    version: str
    protocol: int
    pid: int
    uptime_s: float


class RepoInfo(msgspec.Struct):
    root: str
    state: str  # queued | scanning | indexing | ready | error | removed
    files_indexed: int
    files_pending: int
    files_skipped: int
    files_failed: int
    chunks: int
    last_sync: float | None  # unix time of the last completed sync
    watching: str  # inotify | polling | off
    collection: str
    model: str
    progress: dict[str, Any] | None = None  # {phase, files_done, files_total, chunks_done}
    error: str | None = None
    # {"full": {...}, "paths": {...}}: counts of the last full and incremental syncs
    last_report: dict[str, Any] | None = None


class AddResult(msgspec.Struct):
    repo: RepoInfo
    added: bool  # False when it was already registered


class RemoveResult(msgspec.Struct):
    removed: list[str]


class ListResult(msgspec.Struct):
    repos: list[RepoInfo]


class SearchHit(msgspec.Struct):
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    content: str


class SearchResult(msgspec.Struct):
    results: list[SearchHit]
    fresh: bool  # every searched repo fully indexed, nothing pending
    pending: int  # paths waiting to be (re)indexed in the searched repos
    indexing: list[str]  # searched repos still building their first index
    took_ms: float
    waited_ms: float = 0.0


class RepoStatus(msgspec.Struct):
    repo: RepoInfo
    skipped: dict[str, int]  # reason → count
    problems: list[dict[str, str]]  # recent {path, state, reason}
    embedding: dict[str, Any]


class StatusResult(msgspec.Struct):
    daemon: dict[str, Any]
    repos: list[RepoStatus]


class ReindexResult(msgspec.Struct):
    started: list[str]


class ClearResult(msgspec.Struct):
    cleared: list[str]


class SubscribeResult(msgspec.Struct):
    subscribed: bool
    repos: list[str]


class ShutdownResult(msgspec.Struct):
    stopping: bool


# --- framing -----------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request, strict=False)
_reply_decoder = msgspec.msgpack.Decoder()
_param_decoders = {
    name: msgspec.msgpack.Decoder(kind, strict=False) for name, kind in PARAMS.items()
}


class FrameError(Exception):
    """A frame could not be read or decoded; `code` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(message: Any) -> bytes:
    """One frame: length header + msgpack body."""
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(
            ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes exceeds the {max_bytes}-byte limit"
        )
    return int(length)


#: msgspec raises UnicodeDecodeError for a str that is not UTF-8 and RecursionError for deep
#: nesting, instead of DecodeError: all three are the client's malformed input.
UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_request(body: bytes) -> Request:
    """The envelope of a request (params left raw)."""
    try:
        return _request_decoder.decode(body)
    except UNDECODABLE as exc:
        raise FrameError(ErrorCode.BAD_REQUEST, f"invalid request: {exc}") from None


def decode_params(method: str, raw: msgspec.Raw) -> Params:
    decoder = _param_decoders.get(method)
    if decoder is None:
        raise FrameError(
            ErrorCode.UNKNOWN_METHOD,
            f"unknown method {method!r} (known: {', '.join(sorted(PARAMS))})",
        )
    data = bytes(raw)
    if data == b"\x90":  # an empty Lua table encodes as an empty array
        data = b"\x80"
    try:
        return decoder.decode(data)
    except UNDECODABLE as exc:
        raise FrameError(ErrorCode.BAD_REQUEST, f"invalid params for {method}: {exc}") from None


def decode_message(body: bytes) -> Any:
    """A reply or event as plain Python data (clients stay schema-tolerant)."""
    return _reply_decoder.decode(body)


def request(method: str, params: dict[str, Any] | None = None, id: int | str = 1) -> bytes:
    """Encode a request frame (params as a plain dict)."""
    return encode({"v": PROTOCOL_VERSION, "id": id, "method": method, "params": params or {}})
