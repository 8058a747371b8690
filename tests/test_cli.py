"""The client's command line: a start builds only the command it runs, and that changes
nothing a user can see (the arguments parsed, the help listed)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codectx_client import cli
from codectxd.bytecode import compile_packages
from tests.daemon_harness import DaemonProcess


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_the_command_table_is_the_parser_s() -> None:
    assert _commands(cli.build_parser()) == list(cli.COMMANDS)
    assert _commands(cli.build_parser("search")) == ["search"]


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "parse retry", "--repo", "/r", "-k", "3", "--files", "--path", "src/"],
        ["symbol", "Parser.parse", "--prefix", "--kind", "method"],
        ["refs", "parse", "--all", "--json"],
        ["add", ".", "--no-wait", "--lexical-only", "data"],
        ["status", "--watch"],
        ["ping"],
    ],
)
def test_one_command_parses_as_the_whole_parser_does(argv: list[str]) -> None:
    whole = vars(cli.build_parser().parse_args(argv))
    alone = vars(cli.build_parser(argv[0]).parse_args(argv))
    assert alone == whole


def test_help_lists_every_command_and_global_options_still_come_first() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "codectx_client", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    for command in cli.COMMANDS:
        assert command in shown.stdout
    args = cli.build_parser().parse_args(["--socket", "/tmp/s", "ping"])
    assert args.socket == "/tmp/s" and args.command == "ping"
    assert cli._command_in(["--socket", "/tmp/s", "--autostart", "search", "q"]) == "search"
    assert cli._command_in(["--socket=/s", "refs", "x"]) == "refs"
    assert cli._command_in(["--version"]) is None and cli._command_in(["serch", "q"]) is None
    refused = subprocess.run(
        [sys.executable, "-m", "codectx_client", "search"], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "query" in refused.stderr  # usage error, as before
    version = [sys.executable, "-m", "codectx_client", "--version"]
    alone = subprocess.run(version, capture_output=True, text=True)
    with_socket = subprocess.run(version[:3] + ["--socket", "/s"] + version[3:],
                                 capture_output=True, text=True)  # fmt: skip
    assert alone.returncode == with_socket.returncode == 0
    assert alone.stdout == with_socket.stdout == f"codectx-client {cli.__version__}\n"


def test_the_daemon_writes_its_bytecode_and_the_client_s_when_python_would_not(
    short_tmp: Path,
) -> None:
    compiled = Path(importlib.util.cache_from_source(cli.__file__))
    compiled.unlink(missing_ok=True)
    daemon = DaemonProcess(short_tmp, PYTHONDONTWRITEBYTECODE="1").start()
    try:
        deadline = time.monotonic() + 60
        while not compiled.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert compiled.exists(), daemon.log_text()[-2000:]
    finally:
        daemon.stop()
    compiled.unlink()
    assert compile_packages() and compiled.exists()  # and on its own, stale files only
    stamp = compiled.stat().st_mtime_ns
    assert compile_packages() and compiled.stat().st_mtime_ns == stamp


def test_a_reply_that_is_not_fresh_says_why_even_with_nothing_queued() -> None:
    """A full scan (a restart's, a periodic reconcile) queues no paths: its note says a scan
    runs instead of "0 paths pending"."""
    assert cli.stale_note(3) == "index not fully up to date: 3 paths pending"
    assert "scan" in cli.stale_note(0) and "0 paths" not in cli.stale_note(0)
