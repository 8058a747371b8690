"""The request handlers: one small function per protocol method, over a narrow `Context`.

`@handles(method)` puts a function in `ROUTES`, checking that its params and result types are
the ones `client/protocol.py`'s `METHODS` table names; `codectxd.router` dispatches by it.
"""

from __future__ import annotations

import os
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from codectx_client import protocol as p
from codectxd import __version__
from codectxd.config import Settings, describe
from codectxd.describe import repo_info, repo_status
from codectxd.engine import Engine
from codectxd.errors import NotFoundError, ProtocolError
from codectxd.events import EventBus
from codectxd.filters import Filters, PathFilter
from codectxd.ignore import compile_patterns
from codectxd.kinds import parse_kinds
from codectxd.memory import MemoryManager
from codectxd.metrics import Metrics
from codectxd.registry import RepoOptions
from codectxd.repos import RepoSet
from codectxd.search import search_async
from codectxd.snapshot import Definition
from codectxd.supervisor import Supervisor
from codectxd.symbols import lookup, outline, references
from codectxd.watcher import Watcher

#: Directories nobody means to index; `add` refuses them without force=True.
SYSTEM_DIRS = frozenset(
    {"/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var", "/boot", "/dev", "/proc",
     "/sys", "/opt", "/root", "/System", "/Library"}
)  # fmt: skip
_MAX_WAIT_S = 60.0
_WAIT_GRACE_S = 0.15  # let the watcher report a just-saved file before judging freshness


@dataclass(frozen=True, slots=True)
class Context:
    """What handlers may use: the daemon's components, by their public interfaces."""

    settings: Settings
    repos: RepoSet
    engine: Engine
    memory: MemoryManager
    metrics: Metrics
    events: EventBus
    watcher: Watcher
    socket_path: Path
    search_limiter: anyio.CapacityLimiter
    request_exit: Callable[[], None]


@dataclass(slots=True)
class Stream:
    """A reply followed by events (subscribe); `close` ends the subscription."""

    result: p.SubscribeResult
    events: MemoryObjectReceiveStream[p.Event]
    close: Callable[[], None]


Handler = Callable[[Context, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    params: type[p.Params]
    result: type
    handler: Handler


ROUTES: dict[str, Route] = {}


def handles(method: str) -> Callable[[Handler], Handler]:
    """Register the handler of `method`; its annotations must match the protocol table."""
    spec = p.METHODS[method]

    def register(fn: Handler) -> Handler:
        params: type[p.Params] = spec.params
        expected = Stream if spec.streams else spec.result
        hints = typing.get_type_hints(fn)
        if hints.get("params") is not params or hints.get("return") is not expected:
            raise TypeError(f"handler of {method} must take {params.__name__} and "
                            f"return {expected.__name__}")  # fmt: skip
        ROUTES[method] = Route(params, spec.result, fn)
        return fn

    return register


# --- the handlers --------------------------------------------------------------------------


@handles("ping")
async def ping(ctx: Context, params: p.PingParams) -> p.PingResult:
    uptime = round(time.time() - ctx.metrics.started, 3)
    return p.PingResult(
        version=__version__, protocol=p.PROTOCOL_VERSION, pid=os.getpid(), uptime_s=uptime
    )


@handles("add")
async def add(ctx: Context, params: p.AddParams) -> p.AddResult:
    root = await anyio.to_thread.run_sync(_validate_new_root, params.path, params.force)
    try:  # before anything is persisted: a bad option must not break every later start
        compile_patterns(params.ignore)
    except ValueError as exc:
        raise ProtocolError(f"invalid ignore pattern: {exc}") from None
    try:
        options = RepoOptions(
            ignore=tuple(params.ignore),
            extensions=tuple(params.extensions),
            lexical_only=_kinds(params.lexical_only, "lexical_only"),
            skip_kinds=_kinds(params.skip_kinds, "skip_kinds"),
        )
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    supervisor, added = await ctx.repos.add(root, options)
    return p.AddResult(repo=await repo_info(supervisor, ctx.engine.snapshot), added=added)


@handles("remove")
async def remove(ctx: Context, params: p.RemoveParams) -> p.RemoveResult:
    supervisor = ctx.repos.get(await resolve_path(params.path))
    if supervisor is None:
        raise NotFoundError(f"{params.path} is not a registered repository")
    await ctx.repos.remove(supervisor)
    return p.RemoveResult(removed=[supervisor.name])


@handles("list")
async def list_repos(ctx: Context, params: p.ListParams) -> p.ListResult:
    return p.ListResult(repos=[await repo_info(s, ctx.engine.snapshot) for s in ctx.repos])


@handles("search")
async def search(ctx: Context, params: p.SearchParams) -> p.SearchResult:
    started = time.perf_counter()
    if not params.query.strip():
        raise ProtocolError("query is empty")
    supervisors, waited = await _scope(ctx, params)
    filters = Filters(
        paths=tuple(params.paths),
        languages=tuple(params.languages),
        extensions=tuple(params.extensions),
    )
    # A collection that is missing, being created or never written answers nothing
    # (Store.search); the reply's `fresh` / `indexing` say the index is not complete.
    warnings: list[str] = []
    hits, files = await search_async(
        ctx.engine.store,
        ctx.engine.embedder,
        [await s.target() for s in supervisors],
        params.query,
        snapshot=ctx.engine.snapshot,
        limit=params.limit,
        filters=filters,
        mode=params.mode,
        group=params.group,
        limiter=ctx.search_limiter,
        warnings=warnings,
    )
    took = (time.perf_counter() - started) * 1000
    ctx.metrics.search_ms.add(took - waited * 1000)
    _note_interest(supervisors, params.paths, hits)
    return p.SearchResult(
        results=hits,
        fresh=all(s.fresh() for s in supervisors),
        pending=sum(s.pending() for s in supervisors),
        indexing=[s.name for s in supervisors if not s.complete],
        took_ms=round(took, 3),
        waited_ms=round(waited * 1000, 3),
        embedded={s.name: s.embedded() for s in supervisors},
        warnings=warnings,
        files=files,
    )


@handles("symbols")
async def symbols(ctx: Context, params: p.SymbolsParams) -> p.SymbolsResult:
    started = time.perf_counter()
    path_filter, supervisors, waited = await _name_query(ctx, params)
    targets = [await s.target() for s in supervisors]

    def find() -> list[p.SymbolHit]:
        found: list[p.SymbolHit] = []
        for supervisor, target in zip(supervisors, targets, strict=True):
            defs = lookup(ctx.engine.snapshot, target.collection, params.name,
                          match=params.match, kinds=params.kinds, languages=params.languages,
                          paths=path_filter or None, limit=params.limit)  # fmt: skip
            found += [_symbol_hit(supervisor.name, d) for d in defs]
        return found[: params.limit]

    hits = await anyio.to_thread.run_sync(find, limiter=ctx.search_limiter)
    return p.SymbolsResult(symbols=hits, **_answered(supervisors, started, waited))


@handles("references")
async def references_of(ctx: Context, params: p.ReferencesParams) -> p.ReferencesResult:
    started = time.perf_counter()
    path_filter, supervisors, waited = await _name_query(ctx, params)
    supervisors = sorted(supervisors, key=lambda s: s.name)
    targets = [await s.target() for s in supervisors]

    def find() -> tuple[list[p.ReferenceHit], bool]:
        found: list[p.ReferenceHit] = []
        for supervisor, target in zip(supervisors, targets, strict=True):
            refs, cut = references(ctx.engine.snapshot, target.collection,
                                   Path(supervisor.name), params.name, paths=path_filter or None,
                                   limit=params.limit - len(found))  # fmt: skip
            found += [p.ReferenceHit(repo=supervisor.name, path=r.path, line=r.line,
                                     column=r.column, text=r.text, enclosing=r.enclosing,
                                     is_definition=r.is_definition) for r in refs]  # fmt: skip
            if cut or len(found) >= params.limit:
                return found, True
        return found, False

    hits, truncated = await anyio.to_thread.run_sync(find, limiter=ctx.search_limiter)
    return p.ReferencesResult(
        references=hits, truncated=truncated, **_answered(supervisors, started, waited)
    )


def _answered(supervisors: Sequence[Supervisor], started: float, waited: float) -> dict[str, Any]:
    """The fields a name query replies with besides its hits: whether what it read was fresh,
    what is still pending, how long it took and waited."""
    return {
        "fresh": all(s.fresh() for s in supervisors),
        "pending": sum(s.pending() for s in supervisors),
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "waited_ms": round(waited * 1000, 3),
    }


@handles("outline")
async def outline_file(ctx: Context, params: p.OutlineParams) -> p.OutlineResult:
    started = time.perf_counter()
    resolved = await resolve_path(params.path)
    supervisor = ctx.repos.find(resolved)
    rel = resolved[len(supervisor.name) + 1 :].replace(os.sep, "/")
    if not rel:
        raise ProtocolError(f"{params.path} is a repository, not a file in it")
    waited = 0.0
    if params.wait_s > 0:
        waited = await _wait_fresh(ctx, [supervisor], [resolved], params.wait_s)
    coll = (await supervisor.target()).collection
    defs = await anyio.to_thread.run_sync(outline, ctx.engine.snapshot, coll, rel)
    return p.OutlineResult(
        symbols=[_symbol_hit(supervisor.name, d) for d in defs],
        fresh=supervisor.fresh(),
        pending=supervisor.pending(),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        waited_ms=round(waited * 1000, 3),
    )


async def _name_query(
    ctx: Context, params: p.SymbolsParams | p.ReferencesParams
) -> tuple[PathFilter, list[Supervisor], float]:
    """What `symbols` and `references` share: the name check and the scope."""
    if not params.name.strip(" ./:"):
        raise ProtocolError("name is empty")
    supervisors, waited = await _scope(ctx, params)
    return PathFilter(tuple(params.paths)), supervisors, waited


async def _scope(
    ctx: Context, params: p.SearchParams | p.SymbolsParams | p.ReferencesParams
) -> tuple[list[Supervisor], float]:
    """The path globs checked, the repositories asked for, and the read-your-writes wait
    done (its seconds)."""
    try:
        compile_patterns(params.paths)
    except ValueError as exc:
        raise ProtocolError(f"invalid path glob: {exc}") from None
    supervisors = await _targets(ctx, params.repos)
    waited = 0.0
    if params.wait_s > 0:
        waited = await _wait_fresh(ctx, supervisors, params.wait_paths, params.wait_s)
    return supervisors, waited


def _symbol_hit(repo: str, d: Definition) -> p.SymbolHit:
    return p.SymbolHit(repo=repo, path=d.path, name=d.name, qualified_name=d.qualified,
                       kind=d.kind, language=d.language, start_line=d.start_line,
                       end_line=d.end_line, def_line=d.def_line or d.start_line,
                       signature=d.signature)  # fmt: skip


@handles("status")
async def status(ctx: Context, params: p.StatusParams) -> p.StatusResult:
    supervisors = await _targets(ctx, [params.repo] if params.repo else [])
    repos = [await repo_status(s, ctx.engine.snapshot, params.errors) for s in supervisors]
    embedder = ctx.engine.embedder
    daemon = p.DaemonStatus(
        version=__version__,
        protocol=p.PROTOCOL_VERSION,
        pid=os.getpid(),
        socket=str(ctx.socket_path),
        data_dir=str(ctx.settings.paths.data_dir),
        store=ctx.settings.store.address or "milvus-lite",
        provider=embedder.provider.name,
        model=embedder.provider.model,
        dimension=embedder.dimension,
        watching=ctx.watcher.mode,
        watch_error=ctx.watcher.error,
        memory=ctx.memory.message(),
        metrics=ctx.metrics.message(sum(s.pending() for s in ctx.repos)),
        embedding=embedder.stats.message(),
        subscribers=ctx.events.subscribers,
        settings=describe(ctx.settings),
        store_error=ctx.engine.store.open_error,
    )
    return p.StatusResult(daemon=daemon, repos=repos)


@handles("reindex")
async def reindex(ctx: Context, params: p.ReindexParams) -> p.ReindexResult:
    supervisors = await _targets(ctx, [params.repo] if params.repo else [])
    for supervisor in supervisors:
        supervisor.request_full(force=params.force)
    return p.ReindexResult(started=[s.name for s in supervisors])


@handles("clear")
async def clear(ctx: Context, params: p.ClearParams) -> p.ClearResult:
    if params.repo is None and not params.all:
        raise ProtocolError("clear needs a repository path, or all=true to clear every one")
    supervisors = await _targets(ctx, [params.repo] if params.repo else [])
    for supervisor in supervisors:
        await ctx.repos.remove(supervisor)
    return p.ClearResult(cleared=[s.name for s in supervisors])


@handles("subscribe")
async def subscribe(ctx: Context, params: p.SubscribeParams) -> Stream:
    repos = frozenset([(await _targets(ctx, [r]))[0].name for r in params.repos])
    sub = ctx.events.subscribe(repos)
    result = p.SubscribeResult(subscribed=True, repos=sorted(repos))
    return Stream(result, sub.receive, lambda: ctx.events.unsubscribe(sub))


@handles("shutdown")
async def shutdown(ctx: Context, params: p.ShutdownParams) -> p.ShutdownResult:
    ctx.request_exit()
    return p.ShutdownResult(stopping=True)


# --- helpers -------------------------------------------------------------------------------


def _kinds(values: list[str] | None, what: str) -> tuple[str, ...] | None:
    return None if values is None else parse_kinds(values, what)


def _note_interest(
    supervisors: list[Supervisor], paths: list[str], hits: list[p.SearchHit]
) -> None:
    """Where a search looked (its path filters, the directories of its best hits): while a
    repository is still embedding, files there are embedded first."""
    prefixes = [path.split("*", 1)[0].rstrip("/") for path in paths]
    for supervisor in supervisors:
        if supervisor.lane.idle:
            continue
        dirs = [d for d in prefixes if d]
        dirs += [h.path.rpartition("/")[0] for h in hits[:3] if h.repo == supervisor.name]
        supervisor.lane.interest([d for d in dict.fromkeys(dirs) if d])


async def _targets(ctx: Context, paths: list[str]) -> list[Supervisor]:
    """The repositories named by `paths` (roots or paths inside them); all when empty."""
    if not paths:
        return list(ctx.repos)
    found: dict[str, Supervisor] = {}
    for path in paths:
        supervisor = ctx.repos.find(await resolve_path(path))
        found[supervisor.name] = supervisor
    return list(found.values())


async def _wait_fresh(
    ctx: Context, supervisors: list[Supervisor], wait_paths: list[str], wait_s: float
) -> float:
    """Read-your-writes: queue `wait_paths` that changed on disk, then wait (bounded) until
    they, or everything pending in `supervisors` when no paths are given, are indexed."""
    started = time.perf_counter()
    timeout_s = min(wait_s, _MAX_WAIT_S)
    watched: list[tuple[Supervisor, list[str]]] = []
    if wait_paths:
        by_repo: dict[str, tuple[Supervisor, list[str]]] = {}
        for path in wait_paths:
            resolved = await resolve_path(path)
            supervisor = ctx.repos.find(resolved)
            rel = resolved[len(supervisor.name) + 1 :].replace(os.sep, "/")
            by_repo.setdefault(supervisor.name, (supervisor, []))[1].append(rel)
        for supervisor, rels in by_repo.values():
            supervisor.submit_paths(set(rels))  # do not wait for the watcher to notice
            watched.append((supervisor, rels))
    else:
        await anyio.sleep(min(_WAIT_GRACE_S, timeout_s))
        watched = [(s, []) for s in supervisors]
    with anyio.move_on_after(max(0.0, timeout_s - (time.perf_counter() - started))):
        while True:
            busy = [s for s, rels in watched if (s.waiting_on(rels) if rels else not s.fresh())]
            if not busy:
                break
            with anyio.move_on_after(0.5):
                await busy[0].synced.wait()
    return time.perf_counter() - started


def _resolve(path: str, strict: bool = False) -> Path:
    """`path` with ~ expanded and symlinks resolved; a client error when that is impossible."""
    try:
        return Path(path).expanduser().resolve(strict=strict)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"{path} does not exist") from None
    except RuntimeError as exc:  # ~user of an unknown user, or a symlink loop
        raise NotFoundError(f"{path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"invalid path {path!r}: {exc}") from None


async def resolve_path(path: str) -> str:
    """Absolute, symlink-free form of a client-supplied path (off the event loop)."""
    return str(await anyio.to_thread.run_sync(_resolve, path))


def _validate_new_root(path: str, force: bool) -> Path:
    root = _resolve(path, strict=True)
    if not root.is_dir():
        raise ProtocolError(f"{path} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ProtocolError(f"{path} is not readable by you")
    if not force and (str(root) in SYSTEM_DIRS or root == Path.home()):
        raise ProtocolError(
            f"refusing to index {root}: it is a system or home directory, not a repository "
            f"(pass force to index it anyway)"
        )
    return root
