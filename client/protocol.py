"""The codectx wire protocol: every message type, error code and the framing.

This module is the contract between the daemon and every client (CLI, MCP server, editor
plugins); docs/protocol.md describes the same thing for non-Python clients. It imports msgspec
and the standard library only.

Framing: each message is a 4-byte big-endian unsigned length followed by that many bytes of
msgpack. A request is a map `{v, id, method, params}`; the reply carries the same `id` and
either `ok: true, result` or `ok: false, error: {code, message, data}`. A `subscribe` request
is answered once, then followed by event frames `{id, event, data}` until the client closes.

`METHODS` is the one table of the protocol: method name → params type → result type. The
daemon serves exactly these methods and builds every reply and event from these types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import msgspec

# The framing both sides share lives in `wire` (standard library only); re-exported here.
from codectx_client.wire import HEADER, PROTOCOL_VERSION, ErrorCode, FrameError
from codectx_client.wire import MAX_FRAME_BYTES as MAX_FRAME_BYTES
from codectx_client.wire import frame_length as frame_length

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
    result: Any = None  # the method's result type (METHODS)
    error: ErrorInfo | None = None


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
    # Kinds of file (code, test, doc, data, generated) indexed for keyword search only / not
    # indexed in this repository; omitted: the daemon's settings (scan.lexical_only, ...).
    lexical_only: list[str] | None = None
    skip_kinds: list[str] | None = None


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
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 10
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    # "file": rank files (`limit` of them), each with its best chunks, in `files`.
    group: Literal["chunk", "file"] = "chunk"
    # Wait up to this long for pending changes (read-your-writes); the daemon caps it at 60 s.
    wait_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0
    wait_paths: list[PathStr] = []  # absolute paths whose pending changes to wait for


class SymbolsParams(Params):
    # A name or a qualified name (`Class.method`, `Class/method`).
    name: Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]*\Z", max_length=500)]
    repos: list[PathStr] = []  # as in search; empty: all repos
    # exact (case-sensitive) | prefix | insensitive | fuzzy (a part of the name, any case)
    match: Literal["exact", "prefix", "insensitive", "fuzzy"] = "exact"
    kinds: list[FilterStr] = []  # function, method, class, type, module
    languages: list[FilterStr] = []
    paths: list[FilterStr] = []  # path prefixes or globs, as in search
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    wait_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0
    wait_paths: list[PathStr] = []


class ReferencesParams(Params):
    # An identifier (a qualified name's last part is used: `Cart.total` → `total`).
    name: Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]*\Z", max_length=500)]
    repos: list[PathStr] = []
    paths: list[FilterStr] = []
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    wait_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0
    wait_paths: list[PathStr] = []


class OutlineParams(Params):
    path: PathStr  # a file inside a registered repository
    wait_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0


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


# --- results -----------------------------------------------------------------------------


class PingResult(msgspec.Struct):
    version: str
    protocol: int
    pid: int
    uptime_s: float


class Progress(msgspec.Struct):
    """A running sync: `files_done` of `files_total` files handled so far."""

    phase: str  # scanning | indexing | idle
    files_done: int
    files_total: int
    chunks_done: int
    errors: int


class SyncSummary(msgspec.Struct):
    """Counts and timings of one completed sync."""

    scanned: int
    unchanged: int
    files_read: int
    indexed: int
    removed: int
    skipped: int
    failed: int
    chunks_written: int
    seconds: float
    cancelled: bool
    # Where the time went (seconds): listing files, reading + hashing + splitting, computing
    # embeddings (cache lookups included), writing to the store + snapshot.
    scan_s: float
    parse_s: float
    embed_s: float
    store_s: float
    finished: float  # unix time


class LastSyncs(msgspec.Struct):
    full: SyncSummary | None = None  # the last full sync (start-up, rescan, reindex)
    paths: SyncSummary | None = None  # the last incremental sync (changed files)


class EmbeddingProgress(msgspec.Struct):
    """The second phase while it has work: chunks embedded of those to embed."""

    chunks_embedded: int
    chunks_total: int
    chunks_per_s: float  # over the last minute
    eta_s: float | None  # at that rate; None until there is a rate
    error: str | None = None  # the last failure (the provider was down...), retried


#: Repository states: `keyword_ready` — every file is keyword-searchable, and the second phase
#: is still embedding (search fuses the dense side over what is embedded); `ready` — fully
#: embedded, nothing pending.
RepoState = Literal["queued", "scanning", "indexing", "keyword_ready", "ready", "error"]


class RepoInfo(msgspec.Struct):
    root: str
    state: RepoState
    files_indexed: int
    files_pending: int
    files_skipped: int
    files_failed: int
    chunks: int
    last_sync: float | None  # unix time of the last completed sync
    watching: str  # inotify | polling | off
    collection: str
    model: str
    embedded: float = 1.0  # of the chunks to embed, the fraction embedded (0–1)
    progress: Progress | None = None  # while a sync runs
    embedding: EmbeddingProgress | None = None  # while the second phase has work
    error: str | None = None
    last_report: LastSyncs | None = None
    # False: the engine does not hold the collection in memory: it rested unused and was
    # released, or the daemon started and has not loaded it yet; the next search loads it (a
    # fraction of a second for a small repository, seconds for a large one).
    loaded: bool = True
    # A search image is on disk: while the collection is not loaded (after a restart, or at
    # rest) it answers searches without filters at once (large repositories, once quiet).
    image: bool = False
    # Why this repository is scanned periodically instead of watched (None: it is watched, or
    # the daemon's `watch_error` says why nothing is).
    watch_error: str | None = None


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
    kind: str  # the symbol's kind (function, class, method...), "" when none
    language: str
    score: float
    content: str
    file_kind: str = ""  # the file's kind: code, test, doc, data, generated


class FileHit(msgspec.Struct):
    """A file ranked by its hits (search with group "file")."""

    repo: str
    path: str
    language: str
    file_kind: str
    score: float
    hits: list[SearchHit]  # its best chunks, best first (at most 3)


class SearchResult(msgspec.Struct):
    results: list[SearchHit]  # with group "file": each file's best hit, in file order
    fresh: bool  # every file of the searched repos keyword-searchable, nothing pending
    pending: int  # paths waiting to be (re)indexed in the searched repos
    indexing: list[str]  # searched repos still building their first index
    took_ms: float
    waited_ms: float = 0.0
    embedded: dict[str, float] = {}  # searched repo → fraction of its chunks embedded (0–1)
    warnings: list[str] = []  # e.g. the query could not be embedded: keyword results only
    files: list[FileHit] = []  # with group "file": the files, best first


class SymbolHit(msgspec.Struct):
    """A definition; lines are 1-based, `start_line` includes decorators, `def_line` is the
    definition's own line and `signature` that line's text."""

    repo: str
    path: str
    name: str
    qualified_name: str
    kind: str
    language: str
    start_line: int
    end_line: int
    def_line: int
    signature: str


class SymbolsResult(msgspec.Struct):
    symbols: list[SymbolHit]  # best match first, then by path and line
    fresh: bool  # as in search
    pending: int
    took_ms: float
    waited_ms: float = 0.0


class ReferenceHit(msgspec.Struct):
    """An occurrence of the identifier; `text` is its line as on disk, `enclosing` the
    qualified name of the innermost definition around it ("" at top level)."""

    repo: str
    path: str
    line: int
    column: int
    text: str
    enclosing: str
    is_definition: bool


class ReferencesResult(msgspec.Struct):
    references: list[ReferenceHit]  # sorted by repo, path, then line
    fresh: bool
    pending: int
    took_ms: float
    waited_ms: float = 0.0
    truncated: bool = False  # `limit` cut the list


class OutlineResult(msgspec.Struct):
    symbols: list[SymbolHit]  # in file order, nested definitions after their owner
    fresh: bool
    pending: int
    took_ms: float
    waited_ms: float = 0.0


class Problem(msgspec.Struct):
    path: str
    # skipped with a reason; dirty: left pending by a failure; indexed: keyword-searchable,
    # its embedding failed (the second phase tries again)
    state: Literal["skipped", "dirty", "indexed"]
    reason: str


class RepoStatus(msgspec.Struct):
    repo: RepoInfo
    skipped: dict[str, int]  # reason → count
    problems: list[Problem]  # most recent first
    lexical_only: dict[str, int] = {}  # kind → files indexed for keyword search only


class MemoryStatus(msgspec.Struct):
    budget_mb: int
    rss_mb: float  # the daemon and its children (the Milvus Lite engine)
    peak_rss_mb: float
    state: Literal["ok", "near", "over", "paused"]
    gc_collections: int
    pauses: int
    paused_s: float
    starved: bool  # the budget is below what the daemon needs at rest


class Latency(msgspec.Struct):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class MetricsStatus(msgspec.Struct):
    uptime_s: float
    cpu_percent: float
    threads: int
    requests: int
    request_errors: int
    queue_depth: int
    search_ms: Latency
    embed_batch_ms: Latency
    commit_ms: Latency
    sync_ms: Latency
    files_per_s: float
    chunks_per_s: float
    files_total: int
    chunks_total: int


class EmbeddingStatus(msgspec.Struct):
    requests: int
    failed_requests: int
    retries: int
    texts_embedded: int
    tokens: int
    cache_hits: int
    cache_misses: int
    cache_hit_rate: float | None
    truncated: int
    embed_seconds: float
    last_error: str
    tokens_today: int  # spend guard: tokens sent to a cloud provider today (UTC)
    spend_limit: int  # the daily limit (0: off)
    spend_paused: bool  # indexing is paused until 00:00 UTC by the limit


class DaemonStatus(msgspec.Struct):
    version: str
    protocol: int
    pid: int
    socket: str
    data_dir: str
    store: str
    provider: str
    model: str
    dimension: int
    watching: str
    watch_error: str | None
    memory: MemoryStatus
    metrics: MetricsStatus
    embedding: EmbeddingStatus
    subscribers: int
    settings: dict[str, dict[str, Any]]  # every setting; secrets only as "set" or ""
    store_error: str | None = None  # why the store is not open (its last open failed)


class StatusResult(msgspec.Struct):
    daemon: DaemonStatus
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


# --- events (after a `subscribe` reply) ------------------------------------------------------


class ProgressData(msgspec.Struct):
    repo: str
    phase: str
    files_done: int
    files_total: int
    chunks_done: int
    errors: int


class EmbeddingData(msgspec.Struct):
    """The second phase went on: `chunks_embedded` of `chunks_total` (at most ~1/s)."""

    repo: str
    chunks_embedded: int
    chunks_total: int
    chunks_per_s: float
    eta_s: float | None


class StateData(msgspec.Struct):
    repo: str
    state: str  # a RepoState, or "removed"
    collection: str | None = None  # after a model switch: the collection now searched


class SyncedData(msgspec.Struct):
    repo: str
    indexed: int
    removed: int
    skipped: int
    failed: int
    seconds: float
    state: RepoState
    embedded: float = 1.0


class FileErrorData(msgspec.Struct):
    repo: str
    path: str
    message: str


class RepoErrorData(msgspec.Struct):
    repo: str
    message: str


class _Event(msgspec.Struct, tag_field="event"):
    """Base of the event frames: `{id, event, data}`; `id` is the subscribe request's."""


class ProgressEvent(_Event, tag="progress"):
    data: ProgressData
    id: int | str | None = None


class EmbeddingEvent(_Event, tag="embedding"):
    data: EmbeddingData
    id: int | str | None = None


class StateEvent(_Event, tag="state"):
    data: StateData
    id: int | str | None = None


class SyncedEvent(_Event, tag="synced"):
    data: SyncedData
    id: int | str | None = None


class FileErrorEvent(_Event, tag="file_error"):
    data: FileErrorData
    id: int | str | None = None


class ErrorEvent(_Event, tag="error"):
    data: RepoErrorData
    id: int | str | None = None


Event = ProgressEvent | EmbeddingEvent | StateEvent | SyncedEvent | FileErrorEvent | ErrorEvent


# --- the method table --------------------------------------------------------------------


class Method(NamedTuple):
    params: type[Params]
    result: type[msgspec.Struct]
    streams: bool = False  # the reply is followed by Event frames


METHODS: dict[str, Method] = {
    "ping": Method(PingParams, PingResult),
    "add": Method(AddParams, AddResult),
    "remove": Method(RemoveParams, RemoveResult),
    "list": Method(ListParams, ListResult),
    "search": Method(SearchParams, SearchResult),
    "symbols": Method(SymbolsParams, SymbolsResult),
    "references": Method(ReferencesParams, ReferencesResult),
    "outline": Method(OutlineParams, OutlineResult),
    "status": Method(StatusParams, StatusResult),
    "reindex": Method(ReindexParams, ReindexResult),
    "clear": Method(ClearParams, ClearResult),
    "subscribe": Method(SubscribeParams, SubscribeResult, streams=True),
    "shutdown": Method(ShutdownParams, ShutdownResult),
}


# --- framing -----------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request, strict=False)
_message_decoder = msgspec.msgpack.Decoder()
_param_decoders = {
    name: msgspec.msgpack.Decoder(method.params, strict=False) for name, method in METHODS.items()
}


def encode(message: Any) -> bytes:
    """One frame: length header + msgpack body."""
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


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
            f"unknown method {method!r} (known: {', '.join(sorted(METHODS))})",
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
    return _message_decoder.decode(body)


def typed_result(method: str, result: Any) -> msgspec.Struct:
    """A decoded (plain data) result converted to the method's result type; raises
    msgspec.ValidationError when it does not match (tests check every reply this way)."""
    return msgspec.convert(result, METHODS[method].result)


def typed_event(message: Any) -> Event:
    """A decoded (plain data) event frame as its Event type (raises when it does not match)."""
    return msgspec.convert(message, Event)  # type: ignore[arg-type]


def request(method: str, params: dict[str, Any] | None = None, id: int | str = 1) -> bytes:
    """Encode a request frame (params as a plain dict)."""
    return encode({"v": PROTOCOL_VERSION, "id": id, "method": method, "params": params or {}})
