"""`codectx-client`: the thin command-line client of the codectx daemon.

Imports only the standard library and the client's own `wire`, `connection` and `paths` (not
msgspec, whose import alone took longer than the rest of a start), so it starts in a few tens
of milliseconds. `main(argv) -> int` is the testable entry point; exit codes are fixed:
0 ok, 1 the daemon answered with an error, 2 usage error, 3 the daemon is not running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from codectx_client import __version__
from codectx_client.connection import (
    ClientError,
    Connection,
    DaemonNotRunning,
    RemoteError,
    connect,
)

TYPE_CHECKING = False  # typing costs ~3 ms of every client start; annotations only
if TYPE_CHECKING:
    from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
#: The commands, as `build_parser` defines them (a test keeps the two equal).
COMMANDS = ("search", "symbol", "refs", "outline", "add", "remove", "list", "status", "reindex",
            "clear", "stop", "ping")  # fmt: skip


def _json(value: Any) -> str:
    """One JSON document (imported here: most commands print text)."""
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _abs(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def _display_path(repo: str, rel: str) -> str:
    """A result path as the user can open it: relative to the cwd when inside it."""
    full = os.path.join(repo, rel)
    try:
        cwd = os.getcwd()
    except OSError:
        return full
    if full.startswith(cwd + os.sep):
        return full[len(cwd) + 1 :]
    return full


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


# --- commands ----------------------------------------------------------------------------


#: What `search --json` prints of each hit.
_HIT_FIELDS = (
    "repo", "path", "start_line", "end_line", "symbol", "language", "score", "content",
    "file_kind",
)  # fmt: skip


def _repos(conn: Connection, args: argparse.Namespace) -> list[str]:
    """--repo paths; else the registered repository the working directory is in; else all."""
    repos = [_abs(r) for r in args.repo or []]
    if not repos and not getattr(args, "all", False):
        cwd = os.getcwd()
        registered = [r["root"] for r in conn.call("list")["repos"]]
        inside = [r for r in registered if cwd == r or cwd.startswith(r + os.sep)]
        repos = inside[-1:] if inside else []
    return repos


_SYMBOL_FIELDS = ("repo", "path", "name", "qualified_name", "kind", "language", "start_line",
                  "end_line", "def_line", "signature")  # fmt: skip


def cmd_symbol(conn: Connection, args: argparse.Namespace) -> int:
    match = "prefix" if args.prefix else "insensitive" if args.ignore_case else "exact"
    match = "fuzzy" if args.fuzzy else match
    params: dict[str, Any] = {"name": args.name, "repos": _repos(conn, args), "match": match,
                              "kinds": args.kind or [], "languages": args.lang or [],
                              "paths": args.path or [], "limit": args.k}  # fmt: skip
    if args.wait is not None:
        params["wait_s"] = args.wait
    result = conn.call("symbols", params, timeout_s=60 + (args.wait or 0))
    return _print_symbols(result, args, with_path=True)


_REFERENCE_FIELDS = ("repo", "path", "line", "column", "text", "enclosing", "is_definition")


def stale_note(pending: int) -> str:
    """What a reply that is not fresh says: paths queued, or (none queued) a scan running
    (e.g. the one that finds what changed while the daemon was down)."""
    if pending:
        return f"index not fully up to date: {pending} paths pending"
    return "index not fully up to date: a scan for changed files is running"


def cmd_refs(conn: Connection, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"name": args.name, "repos": _repos(conn, args),
                              "paths": args.path or [], "limit": args.k}  # fmt: skip
    if args.wait is not None:
        params["wait_s"] = args.wait
    result = conn.call("references", params, timeout_s=60 + (args.wait or 0))
    refs = result["references"]
    if args.json:
        print(_json({"references": [{k: r.get(k) for k in _REFERENCE_FIELDS} for r in refs],
                     "fresh": result["fresh"], "pending": result["pending"]}))  # fmt: skip
        return EXIT_OK
    current = None
    for ref in refs:
        where = _display_path(ref["repo"], ref["path"])
        if where != current:
            print(where)
            current = where
        mark = "def " if ref["is_definition"] else "    "
        owner = f"  [{ref['enclosing']}]" if ref["enclosing"] else ""
        print(f"  {ref['line']:>5}:{ref['column']:<3} {mark}{ref['text']}{owner}")
    if not refs:
        print("no references found")
    if result.get("truncated"):
        print(f"note: only the first {len(refs)} shown (-k)", file=sys.stderr)
    if not result["fresh"]:
        print(f"note: {stale_note(result['pending'])}", file=sys.stderr)
    return EXIT_OK


def cmd_outline(conn: Connection, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"path": _abs(args.file)}
    if args.wait is not None:
        params["wait_s"] = args.wait
    result = conn.call("outline", params, timeout_s=60 + (args.wait or 0))
    return _print_symbols(result, args, with_path=False)


def _print_symbols(result: dict[str, Any], args: argparse.Namespace, *, with_path: bool) -> int:
    symbols = result["symbols"]
    if args.json:
        doc: dict[str, Any] = {"symbols": [{k: s.get(k) for k in _SYMBOL_FIELDS} for s in symbols]}
        if with_path:
            doc.update(fresh=result["fresh"], pending=result["pending"])
        print(_json(doc))
        return EXIT_OK
    for sym in symbols:
        where = f"{_display_path(sym['repo'], sym['path'])}:{sym['def_line']}  " if with_path else (
            f"{sym['def_line']:>5}  " + "  " * sym["qualified_name"].count(".")
        )  # fmt: skip
        print(f"{where}{sym['kind'] or '?'} {sym['qualified_name']}  {sym['signature']}")
    if not symbols:
        print("no definitions found")
    if not result["fresh"]:
        print(f"note: {stale_note(result['pending'])}", file=sys.stderr)
    return EXIT_OK


def cmd_search(conn: Connection, args: argparse.Namespace) -> int:
    repos = _repos(conn, args)
    params: dict[str, Any] = {
        "query": args.query,
        "repos": repos,
        "paths": args.path or [],
        "languages": args.lang or [],
        "extensions": args.ext or [],
        "limit": args.k,
        "mode": args.mode,
        "group": "file" if args.files else "chunk",
    }
    if args.wait is not None:
        params["wait_s"] = args.wait
        params["wait_paths"] = [_abs(p) for p in args.wait_path or []]
    result = conn.call("search", params, timeout_s=60 + (args.wait or 0))
    if args.json:
        hits = [{k: hit.get(k) for k in _HIT_FIELDS} for hit in result["results"]]
        doc: dict[str, Any] = {"results": hits, "fresh": result["fresh"],
                               "pending": result["pending"],
                               "embedded": result.get("embedded", {})}  # fmt: skip
        if args.files:
            doc["files"] = [
                {"repo": f["repo"], "path": f["path"], "score": f["score"],
                 "file_kind": f["file_kind"],
                 "lines": [[h["start_line"], h["end_line"]] for h in f["hits"]]}
                for f in result.get("files", [])
            ]  # fmt: skip
        print(_json(doc))
        return EXIT_OK
    if args.files:
        for item in result.get("files", []):
            ranges = ", ".join(f"{h['start_line']}-{h['end_line']}" for h in item["hits"])
            print(f"{_display_path(item['repo'], item['path'])}  ({ranges})")
    for hit in [] if args.files else result["results"]:
        symbol = f"  {hit['symbol']}" if hit["symbol"] else ""
        where = _display_path(hit["repo"], hit["path"])
        print(f"{where}:{hit['start_line']}-{hit['end_line']}{symbol}")
        lines = hit["content"].strip("\n").split("\n")
        for line in lines[: args.lines]:
            print(f"    {line}")
        if len(lines) > args.lines > 0:
            print(f"    … {len(lines) - args.lines} more lines")
    if not result["results"]:
        print("no results")
    notes = list(result.get("warnings", []))
    if not result["fresh"]:
        notes.append(stale_note(result["pending"]))
    if result["indexing"]:
        notes.append("still building the first index of: " + ", ".join(result["indexing"]))
    for root, fraction in result.get("embedded", {}).items():
        if fraction < 1:
            notes.append(f"{root}: every file is keyword-searchable; {fraction:.0%} of it is "
                         f"embedded so far (semantic matches fill in as it goes)")  # fmt: skip
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_add(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.call(
        "add",
        {
            "path": _abs(args.path),
            "force": args.force,
            "ignore": args.ignore or [],
            "extensions": args.ext or [],
            **_kind_options(args),
        },
    )
    repo = result["repo"]
    wait = args.wait if args.wait is not None else sys.stdout.isatty() and not args.json
    until = EMBEDDED if args.wait_embedded else KEYWORD
    if args.json and not (wait or args.wait_embedded):
        print(_json(result))
        return EXIT_OK
    verb = "added" if result["added"] else "already registered:"
    if not args.json:
        print(f"{verb} {repo['root']}")
    if wait or args.wait_embedded:
        return _follow(conn, [repo["root"]], json_out=args.json, until=until)
    if not args.json:
        print("indexing in the background; follow it with: codectx-client status --watch")
    return EXIT_OK


def _kind_options(args: argparse.Namespace) -> dict[str, list[str]]:
    """`--lexical-only` / `--skip-kind` (comma-separated or repeated; `none` for none)."""
    out: dict[str, list[str]] = {}
    for key, values in (("lexical_only", args.lexical_only), ("skip_kinds", args.skip_kind)):
        if values is not None:
            kinds = [k for v in values for k in v.split(",") if k.strip()]
            out[key] = [] if kinds == ["none"] else kinds
    return out


def cmd_remove(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.call("remove", {"path": _abs(args.path)})
    if args.json:
        print(_json(result))
    else:
        for root in result["removed"]:
            print(f"removed {root} (index deleted)")
    return EXIT_OK


def cmd_list(conn: Connection, args: argparse.Namespace) -> int:
    repos = conn.call("list")["repos"]
    if args.json:
        print(_json({"repos": repos}))
        return EXIT_OK
    if not repos:
        print("no repositories registered; add one with: codectx-client add PATH")
    for repo in repos:
        print(_repo_line(repo))
    return EXIT_OK


def _repo_line(repo: dict[str, Any]) -> str:
    progress = repo.get("progress")
    state = repo["state"]
    if progress and progress["files_total"]:
        state += (
            " "
            + _bar(progress["files_done"], progress["files_total"], 16)
            + (f" {progress['files_done']}/{progress['files_total']}")
        )
    parts = [f"{repo['files_indexed']} files", f"{repo['chunks']} chunks"]
    embedding = repo.get("embedding")
    if embedding:
        parts.append(f"embedded {_embedding_text(embedding)}")
    if repo["files_pending"]:
        parts.append(f"{repo['files_pending']} pending")
    if repo["files_skipped"]:
        parts.append(f"{repo['files_skipped']} skipped")
    if repo["files_failed"]:
        parts.append(f"{repo['files_failed']} failed")
    line = f"{repo['root']}  {state}  {', '.join(parts)}, last sync {_ago(repo['last_sync'])}"
    if not repo.get("loaded", True):
        line += (" (loading; its search image answers meanwhile)" if repo.get("image")
                 else " (not in memory: its next search loads it)")  # fmt: skip
    if repo.get("error"):
        line += f"\n    error: {repo['error']}"
    if repo.get("watch_error"):
        line += f"\n    not watched: {repo['watch_error']}"
    return line


def cmd_status(conn: Connection, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"errors": max(0, args.errors)}
    if args.repo:
        params["repo"] = _abs(args.repo)
    if args.watch:
        roots = [r["repo"]["root"] for r in conn.call("status", params)["repos"]]
        return _follow(conn, roots, json_out=args.json, until=EMBEDDED)
    result = conn.call("status", params)
    if args.json:
        print(_json(result))
        return EXIT_OK
    d = result["daemon"]
    m, mem = d["metrics"], d["memory"]
    print(
        f"codectxd {d['version']} (pid {d['pid']}), up {m['uptime_s']:.0f}s, socket {d['socket']}"
    )
    print(
        f"embedding: {d['provider']} {d['model']} ({d['dimension']} dims)   "
        f"store: {d['store']}   watching: {d['watching']}"
    )
    if d.get("watch_error"):
        print(f"  {d['watch_error']} (periodic scans instead)")
    if d.get("store_error"):
        print(f"  {d['store_error']} (tried again when next needed, at most every 5 s)")
    print(
        f"memory: {mem['rss_mb']:.0f} / {mem['budget_mb']} MB ({mem['state']}), "
        f"gc {mem['gc_collections']}, paused {mem['paused_s']}s"
    )
    s = m["search_ms"]
    if s["count"]:
        print(
            f"search: {s['count']} queries, p50 {s['p50']} ms, p95 {s['p95']} ms, p99 {s['p99']} ms"
        )
    e = d["embedding"]
    print(
        f"indexing: {m['files_per_s']} files/s, {m['chunks_per_s']} chunks/s, "
        f"queue {m['queue_depth']}; embedded {e['texts_embedded']} texts in "
        f"{e['requests']} requests, cache hit rate {e['cache_hit_rate']}"
    )
    if e.get("last_error"):
        print(f"  last provider error: {e['last_error']}")
    for item in result["repos"]:
        print()
        print(_repo_line(item["repo"]))
        if item["skipped"]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(item["skipped"].items()))
            print(f"    skipped: {reasons}")
        for problem in item["problems"]:
            print(f"    {problem['state']}: {problem['path']}: {problem['reason']}")
    if not result["repos"]:
        print("\nno repositories registered; add one with: codectx-client add PATH")
    return EXIT_OK


#: How far `_follow` waits: every file keyword-searchable, or everything embedded too.
KEYWORD, EMBEDDED = "keyword", "embedded"
_DONE = {KEYWORD: ("keyword_ready", "ready", "error"), EMBEDDED: ("ready", "error")}


def _follow(conn: Connection, roots: list[str], *, json_out: bool, until: str) -> int:
    """Show live progress until every repo in `roots` is keyword-searchable (`until`
    KEYWORD) or fully embedded (EMBEDDED); both phases are shown."""
    tty = sys.stderr.isatty()
    status_conn = connect(conn.path)
    started = time.monotonic()
    announced: set[str] = set()
    try:
        last_draw = 0.0
        while True:
            repos = {r["root"]: r for r in status_conn.call("list")["repos"] if r["root"] in roots}
            busy = [r for r in repos.values() if r["state"] not in _DONE[until]]
            now = time.monotonic()
            for root, repo in repos.items():
                if root not in announced and repo["state"] in _DONE[KEYWORD]:
                    announced.add(root)  # the first phase is done: say so once, with its time
                    if repo["state"] != "error" and not json_out:
                        if tty:
                            sys.stderr.write("\r\x1b[K")
                        print(f"{root}: every file keyword-searchable after "
                              f"{now - started:.1f} s", file=sys.stderr)  # fmt: skip
            if tty and (now - last_draw > 0.2 or not busy):
                lines = [_progress_line(r) for r in repos.values()]
                sys.stderr.write("\r\x1b[K" + " | ".join(lines))
                sys.stderr.flush()
                last_draw = now
            if not busy:
                break
            time.sleep(0.25)
        if tty:
            sys.stderr.write("\n")
        if json_out:
            print(_json({"repos": list(repos.values())}))
        else:
            for repo in repos.values():
                print(_repo_line(repo))
        return EXIT_ERROR if any(r["state"] == "error" for r in repos.values()) else EXIT_OK
    finally:
        status_conn.close()


def _progress_line(repo: dict[str, Any]) -> str:
    progress = repo.get("progress")
    embedding = repo.get("embedding")
    name = os.path.basename(repo["root"]) or repo["root"]
    if progress and progress["files_total"]:
        bar = _bar(progress["files_done"], progress["files_total"])
        return (
            f"{name} {progress['phase']} {bar}"
            f" {progress['files_done']}/{progress['files_total']} files,"
            f" {progress['chunks_done']} chunks"
        )
    if embedding:
        bar = _bar(embedding["chunks_embedded"], embedding["chunks_total"])
        return f"{name} keyword-ready, embedding {bar} {_embedding_text(embedding)}"
    return f"{name} {repo['state']} ({repo['files_indexed']} files, {repo['chunks']} chunks)"


def _embedding_text(embedding: dict[str, Any]) -> str:
    """`1200/2660 chunks, 14.2/s, ETA 1m43s` (the second phase)."""
    text = f"{embedding['chunks_embedded']}/{embedding['chunks_total']} chunks"
    if embedding["chunks_per_s"]:
        text += f", {embedding['chunks_per_s']:.1f}/s"
    if embedding["eta_s"] is not None:
        minutes, seconds = divmod(int(embedding["eta_s"]), 60)
        text += f", ETA {minutes}m{seconds:02d}s" if minutes else f", ETA {seconds}s"
    if embedding.get("error"):
        text += f" (retrying: {embedding['error']})"
    return text


def cmd_reindex(conn: Connection, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"force": args.force}
    if args.repo:
        params["repo"] = _abs(args.repo)
    result = conn.call("reindex", params)
    if args.json:
        print(_json(result))
    else:
        for root in result["started"]:
            print(f"reindexing {root}{' (forced)' if args.force else ''}")
    return EXIT_OK


def cmd_clear(conn: Connection, args: argparse.Namespace) -> int:
    if not args.repo and not args.all:
        print("codectx-client: clear needs --repo PATH or --all", file=sys.stderr)
        return EXIT_USAGE
    params: dict[str, Any] = {"all": bool(args.all)}
    if args.repo:
        params["repo"] = _abs(args.repo)
    result = conn.call("clear", params)
    if args.json:
        print(_json(result))
    else:
        for root in result["cleared"]:
            print(f"cleared {root} (index deleted, no longer watched)")
    return EXIT_OK


def cmd_stop(conn: Connection, args: argparse.Namespace) -> int:
    pid = conn.call("ping")["pid"]
    conn.call("shutdown")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        time.sleep(0.05)
    print(_json({"stopped": True, "pid": pid}) if args.json else f"stopped (pid {pid})")
    return EXIT_OK


def cmd_ping(conn: Connection, args: argparse.Namespace) -> int:
    result = conn.call("ping")
    print(
        _json(result)
        if args.json
        else f"codectxd {result['version']} (pid {result['pid']}, protocol {result['protocol']})"
    )
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, the width read without `shutil` (argparse builds a formatter
    for every argument it adds; importing shutil for the first one cost ~2 ms of each start)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=max(columns - 2, 40))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `command`, only that command's arguments (a start parses one
    command: building all twelve cost more than the search it sends)."""
    parser = argparse.ArgumentParser(
        prog="codectx-client",
        description="Search your code through the codectx daemon (codectxd).",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"codectx-client {__version__}")
    parser.add_argument(
        "--socket", help="daemon socket (default: $CODECTX_SOCKET or the runtime dir)"
    )
    parser.add_argument(
        "--autostart", action="store_true", help="start the daemon if it is not running"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser | None:
        if command is not None and name != command:
            return None
        cmd = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Formatter
        )
        cmd.add_argument("--json", action="store_true", help="print one JSON document")
        cmd.set_defaults(func=func)
        return cmd

    def repos(cmd: argparse.ArgumentParser, verb: str) -> None:
        cmd.add_argument("--repo", action="append", metavar="PATH",
                         help=f"{verb} this repository (repeatable)")  # fmt: skip
        cmd.add_argument("--all", action="store_true", help=f"{verb} every registered repository")

    def wait(cmd: argparse.ArgumentParser, what: str) -> None:
        cmd.add_argument("--wait", type=float, nargs="?", const=5.0, metavar="SECONDS",
                         help=f"wait (default 5 s) for {what} first")  # fmt: skip

    if (
        search := add(
            "search", "search indexed code (default: the repo you are in, else all)", cmd_search
        )
    ) is not None:
        search.add_argument("query", help="what to look for, in words or identifiers")
        repos(search, "search")
        search.add_argument(
            "--path",
            action="append",
            metavar="GLOB",
            help="only paths under this prefix or matching this glob (repeatable)",
        )
        search.add_argument("--lang", action="append", metavar="L", help="only this language")
        search.add_argument("--ext", action="append", metavar="E", help="only this extension")
        search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
        search.add_argument("--mode", choices=("hybrid", "dense", "lexical"), default="hybrid")
        search.add_argument(
            "--files",
            action="store_true",
            help="rank files instead of chunks (-k files), each with the line ranges of its best "
            "chunks: which files to look at first",
        )
        wait(search, "pending changes to be indexed")
        search.add_argument(
            "--wait-path",
            action="append",
            metavar="PATH",
            help="with --wait: the files you just changed (read-your-writes)",
        )
        search.add_argument("--lines", type=int, default=8, help="snippet lines per result")

    if (
        symbol := add("symbol", "where is NAME defined (from the parsed definitions)", cmd_symbol)
    ) is not None:
        symbol.add_argument("name", help="a name or a qualified name (Class.method)")
        repos(symbol, "look in")
        symbol.add_argument(
            "--kind",
            action="append",
            metavar="K",
            help="only this kind: function, method, class, type, module",
        )
        symbol.add_argument("--lang", action="append", metavar="L", help="only this language")
        symbol.add_argument("--path", action="append", metavar="GLOB", help="only these paths")
        how = symbol.add_mutually_exclusive_group()
        how.add_argument("--prefix", action="store_true", help="names starting with NAME")
        how.add_argument("-i", "--ignore-case", action="store_true", help="ignore case")
        how.add_argument(
            "--fuzzy", action="store_true", help="names containing NAME, any case, closest first"
        )
        symbol.add_argument("-k", type=int, default=100, help="at most this many (default 100)")
        wait(symbol, "pending changes")

    if (
        refs := add("refs", "where NAME occurs (identifiers, not comments or strings)", cmd_refs)
    ) is not None:
        refs.add_argument("name", help="an identifier (of Class.method, the method)")
        repos(refs, "look in")
        refs.add_argument("--path", action="append", metavar="GLOB", help="only these paths")
        refs.add_argument("-k", type=int, default=1000, help="at most this many (default 1000)")
        wait(refs, "pending changes")

    if (
        outline := add("outline", "the definitions in FILE, in file order", cmd_outline)
    ) is not None:
        outline.add_argument("file", help="a file inside a registered repository")
        wait(outline, "the file's pending change")

    if (
        add_cmd := add("add", "register a repository, index it and keep it fresh", cmd_add)
    ) is not None:
        add_cmd.add_argument("path")
        add_cmd.add_argument(
            "--force", action="store_true", help="allow system or home directories"
        )
        add_cmd.add_argument(
            "--ignore",
            action="append",
            metavar="PATTERN",
            help="extra gitignore-style pattern for this repository (repeatable)",
        )
        add_cmd.add_argument(
            "--ext",
            action="append",
            metavar="EXT",
            help="extra file extension to index here, e.g. .tpl (repeatable)",
        )
        add_cmd.add_argument(
            "--wait",
            dest="wait",
            action="store_true",
            default=None,
            help="show progress until every file is keyword-searchable (the first phase; default "
            "when run in a terminal); embedding goes on in the background",
        )
        add_cmd.add_argument(
            "--lexical-only",
            action="append",
            metavar="KIND",
            help="kinds of file (code, test, doc, data, generated) indexed for keyword search only "
            "in this repository, or none (default: the daemon's scan.lexical_only, data,generated)",
        )
        add_cmd.add_argument(
            "--skip-kind",
            action="append",
            metavar="KIND",
            help="kinds of file not indexed at all in this repository (default: scan.skip_kinds)",
        )
        add_cmd.add_argument(
            "--wait-embedded",
            action="store_true",
            help="show progress until every file is embedded too (both phases)",
        )
        add_cmd.add_argument("--no-wait", dest="wait", action="store_false", help="return at once")

    if (
        remove := add("remove", "stop watching a repository and delete its index", cmd_remove)
    ) is not None:
        remove.add_argument("path")
    add("list", "list registered repositories", cmd_list)
    if (status := add("status", "daemon and indexing status", cmd_status)) is not None:
        status.add_argument(
            "--watch", action="store_true", help="live progress until indexing is done"
        )
        status.add_argument("--repo", metavar="PATH", help="only this repository")
        status.add_argument("--errors", type=int, default=10, help="problems to list per repo")
    if (
        reindex := add("reindex", "re-check every file now (changed files only)", cmd_reindex)
    ) is not None:
        reindex.add_argument("--repo", metavar="PATH", help="only this repository (default: all)")
        reindex.add_argument(
            "--force",
            action="store_true",
            help="re-read and re-split every file (the embedding cache still avoids paying twice)",
        )
    if (
        clear := add(
            "clear", "delete the index of a repository (or all) and stop watching it", cmd_clear
        )
    ) is not None:
        clear.add_argument("--repo", metavar="PATH")
        clear.add_argument("--all", action="store_true", help="every registered repository")
    add("stop", "stop the daemon", cmd_stop)
    add("ping", "check that the daemon answers", cmd_ping)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command `argv` runs, past the global options; None when unsure (help, a typo):
    then the whole parser is built and argparse says what is wrong."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--socket":
            i += 2
        elif word == "--autostart" or word.startswith("--socket="):
            i += 1
        else:
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # editor plugins ask at load: no parser of twelve commands
        print(f"codectx-client {__version__}")
        return 0
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        with connect(Path(args.socket) if args.socket else None, autostart=args.autostart) as conn:
            return int(args.func(conn, args))
    except DaemonNotRunning as exc:
        print(f"codectx-client: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except RemoteError as exc:
        if getattr(args, "json", False):
            print(_json({"error": {"code": exc.code, "message": str(exc)}}))
        print(f"codectx-client: error ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ClientError as exc:
        print(f"codectx-client: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
