"""`codectx-mcp`: an MCP server (stdio) for coding agents, backed by the shared codectx daemon.

It is a client of the daemon like `codectx-client`: every agent session that starts one talks
to the same daemon and the same always-fresh index, so nothing is indexed twice. The tool names
and parameters follow claude-context's, so prompts written for it keep working.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio.to_thread

from codectx_client.connection import ClientError, RemoteError, connect

log = logging.getLogger("codectx.mcp")

INSTRUCTIONS = """\
codectx keeps a semantic + keyword index of local code repositories, updated within about a
second of every file save, and shared by every agent session on this machine. Use search_code
to find code by describing behaviour in words ("where is the retry policy for HTTP calls") or
by identifiers; results give file, line range, symbol and the code itself. find_symbol says
exactly where a name is defined, find_referencing_symbols where it is used, and
get_symbols_overview lists a file's definitions. A repository is
indexed the first time you search or index it; later searches are instant and always current.
"""


def _call(method: str, params: dict[str, Any], timeout_s: float = 60.0) -> Any:
    """One request to the daemon, starting it if needed (a clear error when that fails)."""
    try:
        with connect(autostart=True) as conn:
            return conn.call(method, params, timeout_s=timeout_s)
    except RemoteError:
        raise
    except ClientError as exc:
        raise RuntimeError(f"codectx daemon unavailable: {exc}") from None


def _resolve(path: str) -> str:
    if not path:
        raise ValueError("path is required: give the absolute path of the codebase")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        raise ValueError(f"path must be absolute, got {path!r}")
    return str(resolved.resolve())


def _repo_for(path: str) -> dict[str, Any] | None:
    """The registered repository containing `path`, if any."""
    best: dict[str, Any] | None = None
    for repo in _call("list", {})["repos"]:
        root = repo["root"]
        if (path == root or path.startswith(root + os.sep)) and (
            best is None or len(root) > len(best["root"])
        ):
            best = repo
    return best


def _progress_text(repo: dict[str, Any]) -> str:
    progress = repo.get("progress")
    if progress and progress.get("files_total"):
        pct = 100.0 * progress["files_done"] / max(progress["files_total"], 1)
        return (
            f"indexing: {pct:.0f}% ({progress['files_done']}/{progress['files_total']} "
            f"files, {progress['chunks_done']} chunks)"
        )
    text = f"{repo['state']}: {repo['files_indexed']} files, {repo['chunks']} chunks indexed"
    embedding = repo.get("embedding")
    if embedding:
        eta = f", about {embedding['eta_s']:.0f}s left" if embedding.get("eta_s") else ""
        text += (
            f"; every file is keyword-searchable, {repo['embedded']:.0%} embedded "
            f"({embedding['chunks_embedded']}/{embedding['chunks_total']} chunks{eta})"
        )
    return text


def index_codebase(
    path: str,
    force: bool = False,
    splitter: str = "ast",
    customExtensions: list[str] | None = None,  # noqa: N803 - claude-context name
    ignorePatterns: list[str] | None = None,
) -> str:  # noqa: N803
    root = _resolve(path)
    if splitter not in ("ast", "langchain", "line"):
        raise ValueError("splitter must be 'ast', 'langchain' or 'line'")
    result = _call(
        "add",
        {
            "path": root,
            "ignore": list(ignorePatterns or []),
            "extensions": list(customExtensions or []),
        },
    )
    repo = result["repo"]
    notes = []
    if splitter != "ast":
        notes.append(
            "note: the splitter is a daemon-wide setting (SPLITTER_TYPE); "
            "this daemon splits code along its syntax tree."
        )
    if result["added"]:
        head = f"Started indexing {repo['root']} in the background."
    elif force:
        _call("reindex", {"repo": repo["root"], "force": True})
        head = (
            f"Re-indexing {repo['root']} (forced). The current index keeps answering "
            f"searches until each file is replaced."
        )
    else:
        head = f"{repo['root']} is already indexed and kept up to date automatically."
    return "\n".join(
        [
            head,
            f"Status: {_progress_text(repo)}.",
            "Use get_indexing_status to follow progress; search_code works meanwhile "
            "on what is indexed so far.",
            *notes,
        ]
    )


def _format_hits(query: str, result: dict[str, Any], repo: dict[str, Any] | None) -> str:
    hits = result["results"]
    lines = []
    if not hits:
        lines.append(f"No results for: {query}")
    else:
        lines.append(f"Found {len(hits)} results for: {query}")
    for i, hit in enumerate(hits, start=1):
        location = f"{hit['path']}:{hit['start_line']}-{hit['end_line']}"
        symbol = f" — {hit['symbol']}" if hit["symbol"] else ""
        lines.append("")
        lines.append(f"{i}. {location}{symbol} ({hit['language']}, score {hit['score']:.4f})")
        lines.append(f"   repository: {hit['repo']}")
        lines.append(f"```{hit['language']}")
        lines.append(hit["content"].strip("\n"))
        lines.append("```")
    lines.append("")
    for warning in result.get("warnings", []):
        lines.append(f"Note: {warning}.")
    partial = {r: f for r, f in result.get("embedded", {}).items() if f < 1}
    if result["fresh"] and partial:
        share = ", ".join(f"{f:.0%}" for f in partial.values())
        lines.append(
            f"Every file is keyword-searchable; {share} is embedded so far, so semantic "
            "matches are still filling in."
        )
    elif result["fresh"]:
        lines.append("Index is up to date.")
    else:
        state = f" ({_progress_text(repo)})" if repo else ""
        pending = result["pending"]
        what = f"{pending} files pending" if pending else "a scan for changed files is running"
        lines.append(
            f"Index not complete yet: {what}{state}; results cover what is indexed so far."
        )
    return "\n".join(lines)


def search_code(
    path: str,
    query: str,
    limit: int = 10,
    extensionFilter: list[str] | None = None,  # noqa: N803 - claude-context's names
    groupByFile: bool = False,  # noqa: N803
) -> str:
    target = _resolve(path)
    if not query.strip():
        raise ValueError("query must not be empty")
    repo = _repo_for(target)
    if repo is None:
        # First contact with this codebase: register it and answer with what exists so far.
        if not os.path.isdir(target):
            raise ValueError(f"{target} is not a directory")
        repo = _call("add", {"path": target})["repo"]
    params: dict[str, Any] = {
        "query": query,
        "repos": [repo["root"]],
        "limit": max(1, min(int(limit), 50)),
        "extensions": list(extensionFilter or []),
        "group": "file" if groupByFile else "chunk",
    }
    if target != repo["root"]:  # a subdirectory narrows the results to it
        params["paths"] = [target[len(repo["root"]) + 1 :].replace(os.sep, "/")]
    # Give a just-saved file a moment to land (bounded: never more than 2 s).
    params["wait_s"] = 2.0
    result = _call("search", params, timeout_s=90)
    if groupByFile:
        return _format_files(query, result)
    return _format_hits(query, result, repo if not result["fresh"] else None)


def _format_files(query: str, result: dict[str, Any]) -> str:
    files = result.get("files", [])
    lines = [f"Found {len(files)} files for: {query}" if files else f"No files for: {query}"]
    for i, item in enumerate(files, start=1):
        ranges = ", ".join(f"{h['start_line']}-{h['end_line']}" for h in item["hits"])
        symbols = ", ".join(dict.fromkeys(h["symbol"] for h in item["hits"] if h["symbol"]))
        lines.append(f"{i}. {item['path']} (lines {ranges}){' — ' + symbols if symbols else ''}")
    if not result["fresh"]:
        lines.append("Index not complete yet: results cover what is indexed so far.")
    return "\n".join(lines)


def _registered(target: str) -> dict[str, Any]:
    repo = _repo_for(target)
    if repo is None:
        raise ValueError(f"{target} is not indexed: call index_codebase with its repository first")
    return repo


def find_symbol(
    path: str,
    name_path: str,
    substring_matching: bool = False,
    include_kinds: list[str] | None = None,
) -> str:
    target = _resolve(path)
    repo = _registered(target)
    params: dict[str, Any] = {
        "name": name_path,
        "repos": [repo["root"]],
        "match": "fuzzy" if substring_matching else "exact",
        "kinds": list(include_kinds or []),
        "limit": 100,
        "wait_s": 2.0,
    }
    if target != repo["root"]:
        params["paths"] = [target[len(repo["root"]) + 1 :].replace(os.sep, "/")]
    result = _call("symbols", params, timeout_s=90)
    symbols = result["symbols"]
    lines = [f"{len(symbols)} definitions of {name_path}" if symbols
             else f"No definition of {name_path}"]  # fmt: skip
    for s in symbols:
        lines.append(f"{s['path']}:{s['def_line']}-{s['end_line']} {s['kind']} "
                     f"{s['qualified_name']}: {s['signature']}")  # fmt: skip
    if not result["fresh"]:
        lines.append("Index not complete yet: results cover what is indexed so far.")
    return "\n".join(lines)


def find_referencing_symbols(path: str, name_path: str, relative_path: str = "") -> str:
    target = _resolve(path)
    repo = _registered(target)
    params: dict[str, Any] = {"name": name_path, "repos": [repo["root"]], "limit": 500,
                              "wait_s": 2.0}  # fmt: skip
    if target != repo["root"]:
        params["paths"] = [target[len(repo["root"]) + 1 :].replace(os.sep, "/")]
    result = _call("references", params, timeout_s=90)
    refs = [r for r in result["references"] if not r["is_definition"]]
    defined = [r for r in result["references"] if r["is_definition"]]
    if relative_path and not any(r["path"] == relative_path for r in defined):
        return f"{name_path} is not defined in {relative_path}."
    lines = [f"{len(refs)} references to {name_path}" if refs
             else f"No references to {name_path}"]  # fmt: skip
    for r in refs:
        owner = f" (in {r['enclosing']})" if r["enclosing"] else ""
        lines.append(f"{r['path']}:{r['line']}{owner}: {r['text']}")
    if result.get("truncated"):
        lines.append("More references exist: narrow path to a directory.")
    if not result["fresh"]:
        lines.append("Index not complete yet: results cover what is indexed so far.")
    return "\n".join(lines)


def get_symbols_overview(path: str, relative_path: str) -> str:
    root = _registered(_resolve(path))["root"]
    file = os.path.join(root, relative_path)
    result = _call("outline", {"path": file, "wait_s": 2.0}, timeout_s=90)
    symbols = result["symbols"]
    lines = [f"{relative_path}: {len(symbols)} definitions" if symbols
             else f"{relative_path}: no definitions"]  # fmt: skip
    for s in symbols:
        indent = "  " * s["qualified_name"].count(".")
        lines.append(f"{s['def_line']:>5} {indent}{s['kind']} {s['name']}: {s['signature']}")
    return "\n".join(lines)


def clear_index(path: str) -> str:
    target = _resolve(path)
    repo = _repo_for(target)
    if repo is None:
        return f"{target} is not indexed; nothing to clear."
    _call("clear", {"repo": repo["root"]})
    return f"Cleared the index of {repo['root']} and stopped watching it."


def get_indexing_status(path: str) -> str:
    target = _resolve(path)
    repo = _repo_for(target)
    if repo is None:
        return (
            f"{target} is not indexed. Call index_codebase (or just search_code) with "
            "this path to start."
        )
    status = _call("status", {"repo": repo["root"], "errors": 5})
    item = status["repos"][0]
    info = item["repo"]
    lines = [f"{info['root']}: {_progress_text(info)}"]
    watched = info.get("watching") == "inotify"
    if info["state"] == "ready" and info["files_pending"]:
        lines.append(f"{info['files_pending']} files pending.")
    elif info["state"] == "ready":
        lines.append(
            "Fully indexed and watching for changes."
            if watched
            else "Fully indexed; changes are picked up by periodic scans."
        )
    elif info["state"] == "keyword_ready":
        lines.append(
            "Every file is searchable by keywords now; semantic matches fill in as the "
            "embedding goes on (search_code works meanwhile)."
        )
    why = info.get("watch_error") or (status["daemon"].get("watch_error") if not watched else None)
    if why:
        lines.append(f"Not watched: {why}.")
    if item.get("lexical_only"):
        kinds = sorted(item["lexical_only"].items())
        lines.append(
            "Keyword search only (not embedded): " + ", ".join(f"{k} {v}" for k, v in kinds)
        )
    if item["skipped"]:
        reasons = sorted(item["skipped"].items())
        lines.append("Skipped: " + ", ".join(f"{k} {v}" for k, v in reasons))
    if info.get("error"):
        lines.append(f"Last error: {info['error']}")
    daemon = status["daemon"]
    lines.append(f"Embedding model: {daemon['provider']} {daemon['model']}.")
    return "\n".join(lines)


DESCRIPTIONS = {
    "index_codebase": (
        "Index a code repository so it can be searched with search_code. Indexing runs in the "
        "background and the index then stays up to date by itself (file changes are picked up "
        "within about a second), so you only need this once per repository — search_code also "
        "indexes on first use. Arguments: path (absolute path of the repository root); force "
        "(re-read and re-split every file; the existing index keeps answering until each file "
        "is replaced); splitter ('ast' default); customExtensions (extra file extensions to "
        "index, e.g. ['.vue']); ignorePatterns (extra gitignore-style patterns to skip, e.g. "
        "['fixtures/', '*.gen.go'])."
    ),
    "search_code": (
        "Search indexed code by meaning or by identifiers. Describe the behaviour you are "
        'looking for in plain words ("where are JWT tokens validated") or name symbols '
        '("parseConfig"); hybrid semantic + keyword ranking finds both. Arguments: path '
        "(absolute path of the repository, or of a subdirectory to search only there; an "
        "unindexed repository is indexed on first use and results cover what is indexed so "
        "far); query (words, identifiers, or a whole issue with its traceback); limit (default "
        "10, max 50); extensionFilter (e.g. ['.ts', '.py']); groupByFile (true: rank files, "
        "each with the line ranges of its best chunks — which files to read first). "
        "Returns file paths with line ranges, the enclosing symbol, a score and the code, plus "
        "whether the index is up to date."
    ),
    "find_symbol": (
        "Find where a symbol is defined, exactly, from the parsed definitions of the "
        "repository (kept current with every save). Arguments: path (absolute path of the "
        "repository, or of a directory in it to look only there); name_path (a name, or a "
        "qualified name: 'Class/method' or 'Class.method'); substring_matching (true: any "
        "name containing it, ignoring case, closest first); include_kinds (e.g. ['class', "
        "'function', 'method', 'type', 'module']). Returns each definition's file, lines, "
        "kind, qualified name and signature line."
    ),
    "find_referencing_symbols": (
        "Find where a symbol is used: every occurrence of its name in code (not in comments "
        "or strings), with the line and the definition it occurs in, kept current with every "
        "save. Names are matched as identifiers (of 'Class/method', the method), so "
        "same-named symbols elsewhere count too. Arguments: path (absolute path of the "
        "repository, or of a directory to look only there); name_path; relative_path "
        "(optional: the file defining the symbol; answered 'not defined' when it does not)."
    ),
    "get_symbols_overview": (
        "List the definitions in one file, in file order, nested ones indented under their "
        "owner. Arguments: path (absolute path of the repository); relative_path (the file, "
        "relative to the repository root)."
    ),
    "clear_index": (
        "Delete the index of a repository and stop watching it. Only needed to free space or "
        "start over; the index never needs clearing to stay current. Argument: path (absolute "
        "path of the repository)."
    ),
    "get_indexing_status": (
        "Report indexing progress and state for a repository: percentage while the first "
        "index is built, files and chunks indexed, skipped files by reason, last error. "
        "Argument: path (absolute path of the repository)."
    ),
}


async def _run(fn: Any, *args: Any) -> str:
    """Run a blocking tool body off the event loop. Expected failures (bad arguments, daemon
    errors) reach the agent with their message; anything else is a crash the SDK hides."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        return str(await anyio.to_thread.run_sync(fn, *args))
    except RemoteError as exc:
        raise ToolError(f"{exc} ({exc.code})") from None
    except (ValueError, RuntimeError) as exc:
        raise ToolError(str(exc)) from None


def build_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="codectx", instructions=INSTRUCTIONS)

    @server.tool(name="index_codebase", description=DESCRIPTIONS["index_codebase"])
    async def index_codebase_tool(
        path: str,
        force: bool = False,
        splitter: str = "ast",
        customExtensions: list[str] | None = None,  # noqa: N803
        ignorePatterns: list[str] | None = None,
    ) -> str:  # noqa: N803
        return await _run(index_codebase, path, force, splitter, customExtensions, ignorePatterns)

    @server.tool(name="search_code", description=DESCRIPTIONS["search_code"])
    async def search_code_tool(
        path: str,
        query: str,
        limit: int = 10,
        extensionFilter: list[str] | None = None,  # noqa: N803
        groupByFile: bool = False,  # noqa: N803
    ) -> str:
        return await _run(search_code, path, query, limit, extensionFilter, groupByFile)

    @server.tool(name="find_symbol", description=DESCRIPTIONS["find_symbol"])
    async def find_symbol_tool(
        path: str,
        name_path: str,
        substring_matching: bool = False,
        include_kinds: list[str] | None = None,
    ) -> str:
        return await _run(find_symbol, path, name_path, substring_matching, include_kinds)

    @server.tool(
        name="find_referencing_symbols", description=DESCRIPTIONS["find_referencing_symbols"]
    )
    async def find_referencing_symbols_tool(
        path: str, name_path: str, relative_path: str = ""
    ) -> str:
        return await _run(find_referencing_symbols, path, name_path, relative_path)

    @server.tool(name="get_symbols_overview", description=DESCRIPTIONS["get_symbols_overview"])
    async def get_symbols_overview_tool(path: str, relative_path: str) -> str:
        return await _run(get_symbols_overview, path, relative_path)

    @server.tool(name="clear_index", description=DESCRIPTIONS["clear_index"])
    async def clear_index_tool(path: str) -> str:
        return await _run(clear_index, path)

    @server.tool(name="get_indexing_status", description=DESCRIPTIONS["get_indexing_status"])
    async def get_indexing_status_tool(path: str) -> str:
        return await _run(get_indexing_status, path)

    return server


def main() -> int:
    """Entry point of `codectx-mcp` (speaks MCP over stdin/stdout)."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="codectx-mcp %(levelname)s: %(message)s"
    )
    build_server().run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
