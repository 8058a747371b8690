"""The `codectxd` command: run the daemon, and index / search directly (developer tools)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codectxd import __version__
from codectxd.errors import CodectxError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _settings() -> Any:
    from codectxd.config import load_settings

    return load_settings()


def _progress_printer(enabled: bool) -> Callable[[Any], None]:
    last = [0.0]

    def show(progress: Any) -> None:
        now = time.monotonic()
        if not enabled or (now - last[0] < 0.2 and progress.phase == "indexing"):
            return
        last[0] = now
        total = progress.files_total or 0
        done = progress.files_done
        width = 30
        filled = int(width * done / total) if total else 0
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r{progress.phase:<9} [{bar}] {done}/{total} files, "
            f"{progress.chunks_done} chunks, {progress.errors} errors\x1b[K"
        )
        sys.stderr.flush()

    return show


def cmd_index(args: argparse.Namespace) -> int:
    from codectxd.engine import Engine

    root = _repo_root(args.path)
    engine = Engine(_settings())
    try:
        show = _progress_printer(not args.json and sys.stderr.isatty())
        indexer = engine.indexer_for(root)
        job = indexer.begin_full(force=args.force)
        while job.step():
            show(job.progress)
        report = job.finish()
        show(job.progress)
        if not args.json and sys.stderr.isatty():
            sys.stderr.write("\n")
        counts = engine.snapshot.counts(indexer.collection)
        chunks = engine.store.count(indexer.collection)
        summary = {
            "repo": str(root),
            "collection": indexer.collection,
            "scanned": report.scanned,
            "unchanged": report.unchanged,
            "files_read": report.files_read,
            "indexed": report.indexed,
            "removed": report.removed,
            "skipped": report.skipped,
            "failed": report.failed,
            "chunks_written": report.chunks_written,
            "chunks_total": chunks,
            "files_indexed": counts.get("indexed", 0),
            "seconds": round(report.seconds, 2),
            "time_split_s": {
                "scan": round(report.scan_s, 3),
                "parse": round(report.parse_s, 3),
                "embed": round(report.embed_s, 3),
                "store": round(report.store_s, 3),
            },
            "skipped_by_reason": engine.snapshot.skip_counts(indexer.collection),
            "errors": report.errors,
        }
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(
                f"{root}: {summary['files_indexed']} files indexed ({report.indexed} updated, "
                f"{report.unchanged} unchanged, {report.removed} removed, "
                f"{report.skipped} skipped, {report.failed} failed), {chunks} chunks "
                f"in {report.seconds:.1f}s"
            )
            for path, message in report.errors[:10]:
                print(f"  error: {path}: {message}")
        return EXIT_ERROR if report.failed else EXIT_OK
    finally:
        engine.close()


def cmd_search(args: argparse.Namespace) -> int:
    from codectxd.engine import Engine
    from codectxd.search import Filters

    root = _repo_root(args.path)
    engine = Engine(_settings())
    try:
        filters = Filters(
            paths=tuple(args.glob or ()),
            languages=tuple(args.lang or ()),
            extensions=tuple(args.ext or ()),
        )
        started = time.perf_counter()
        results = engine.search([root], args.query, limit=args.k, filters=filters, mode=args.mode)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if args.json:
            print(
                json.dumps(
                    {
                        "results": [
                            {
                                "repo": r.repo,
                                "path": r.path,
                                "start_line": r.start_line,
                                "end_line": r.end_line,
                                "symbol": r.symbol,
                                "language": r.language,
                                "score": r.score,
                                "content": r.content,
                            }
                            for r in results
                        ]
                    },
                    indent=2,
                )
            )
            return EXIT_OK
        if not results:
            print("no results")
        for result in results:
            symbol = f" {result.symbol}" if result.symbol else ""
            print(
                f"{result.path}:{result.start_line}-{result.end_line}{symbol}  [{result.score:.4f}]"
            )
            for line in result.content.strip("\n").split("\n")[: args.lines]:
                print(f"    {line}")
        print(f"({len(results)} results in {elapsed_ms:.0f} ms)", file=sys.stderr)
        return EXIT_OK
    finally:
        engine.close()


def cmd_start(args: argparse.Namespace) -> int:
    from codectxd.lifecycle import detach, run_foreground

    settings = _settings()
    if args.detach:
        pid, log_file = detach(settings, ["-v"] if args.verbose else [])
        print(f"codectxd started (pid {pid}); logs: {log_file}")
        print("stop it with: codectxd stop")
        return EXIT_OK
    if args.verbose:
        import dataclasses

        settings = dataclasses.replace(
            settings, daemon=dataclasses.replace(settings.daemon, log_level="debug")
        )
    return run_foreground(settings, Path(args.log_file) if args.log_file else None)


def _client_main(argv: list[str]) -> int:
    from codectx_client.cli import main as client_main

    return client_main(argv)


def cmd_stop(args: argparse.Namespace) -> int:
    return _client_main(["stop", *(["--json"] if args.json else [])])


def cmd_status(args: argparse.Namespace) -> int:
    return _client_main(["status", *(["--json"] if args.json else [])])


def cmd_install_service(args: argparse.Namespace) -> int:
    from codectxd.service import install_service

    settings = _settings()
    path, instructions = install_service(settings, dry_run=args.print)
    if args.print:
        print(path.read_text() if path.exists() else instructions)
        return EXIT_OK
    print(f"wrote {path}")
    print(instructions)
    return EXIT_OK


def _repo_root(path: str) -> Path:
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise CodectxError(f"{path} is not a directory")
    return root


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codectxd",
        description="codectx daemon: keeps a semantic + lexical index of your repositories "
        "fresh and answers searches over a Unix socket.",
    )
    parser.add_argument("--version", action="version", version=f"codectxd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    start = sub.add_parser("start", help="run the daemon (foreground; --detach for background)")
    start.add_argument(
        "--detach", action="store_true", help="start in the background and return once it answers"
    )
    start.add_argument("--log-file", help="log to this file instead of stderr")
    start.set_defaults(func=cmd_start)

    stop = sub.add_parser("stop", help="stop the running daemon")
    stop.add_argument("--json", action="store_true")
    stop.set_defaults(func=cmd_stop)

    status = sub.add_parser("status", help="show the running daemon's status")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    service = sub.add_parser(
        "install-service", help="install the systemd user unit (Linux) or launchd agent (macOS)"
    )
    service.add_argument(
        "--print", action="store_true", help="print the unit file instead of writing it"
    )
    service.set_defaults(func=cmd_install_service)

    index = sub.add_parser("index", help="index a repository directly (no daemon)")
    index.add_argument("path", help="repository root")
    index.add_argument("--force", action="store_true", help="re-read and re-split every file")
    index.add_argument("--json", action="store_true", help="print a JSON summary")
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="search an indexed repository directly (no daemon)")
    search.add_argument("path", help="repository root")
    search.add_argument("query", help="what to look for, in words or identifiers")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument(
        "--path",
        dest="glob",
        action="append",
        help="only paths under this prefix or matching this glob (repeatable)",
    )
    search.add_argument("--lang", action="append", help="only this language (repeatable)")
    search.add_argument("--ext", action="append", help="only this extension (repeatable)")
    search.add_argument("--mode", choices=("hybrid", "dense", "lexical"), default="hybrid")
    search.add_argument("--lines", type=int, default=6, help="snippet lines to show")
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.set_defaults(func=cmd_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core (under pymilvus) prints keep-alive chatter ("too_many_pings") to stderr.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except CodectxError as exc:
        print(f"codectxd: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
