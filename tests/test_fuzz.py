"""Protocol fuzzing and security checks against the real daemon socket (no mocks).

Hypothesis generates frame bodies, mutated requests and requests with wrong types; every reply
to a well-framed request must be a valid reply map whose error `code` is one of the stable codes
of docs/protocol.md, the connection must stay usable, and the daemon must stay alive, responsive
and bounded in memory. Socket timeouts everywhere: a silent hang fails the test, never the run.

CI runs a bounded, derandomized number of examples; CODECTX_SLOW=1 runs many more (random) plus
the 30 s slow-loris wait. The bugs fuzzing found have regression tests at the end of the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codectx_client import protocol as p
from codectx_client.connection import RemoteError
from tests import hostile_tree as ht
from tests.daemon_harness import DaemonProcess

SLOW_MODE = os.environ.get("CODECTX_SLOW") == "1"
SLOW = pytest.mark.skipif(not SLOW_MODE, reason="long-running; set CODECTX_SLOW=1 to run")
ROOT_ONLY = pytest.mark.skipif(not ht.is_root(), reason="needs root (to act as another uid)")

#: Stable error codes of docs/protocol.md.
ERROR_CODES = frozenset(
    {
        "bad_request",
        "unknown_method",
        "version_mismatch",
        "frame_too_large",
        "not_found",
        "busy",
        "timeout",
        "bad_config",
        "provider_error",
        "store_error",
        "shutting_down",
        "internal",
    }
)


def _examples(ci: int, slow: int) -> int:
    override = os.environ.get("CODECTX_FUZZ_EXAMPLES")
    return int(override) if override else (slow if SLOW_MODE else ci)


def fuzz_settings(ci: int, slow: int) -> settings:
    return settings(
        max_examples=_examples(ci, slow),
        deadline=None,
        derandomize=not SLOW_MODE,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# --- a raw client with timeouts ------------------------------------------------------------


class Closed(Exception):
    """The daemon closed the connection."""


class Raw:
    """One raw connection: frames in, frames out, always with a timeout."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(str(path))

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        self.send(struct.pack(">I", len(body)) + body)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(min(n - len(data), 1 << 20))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(f"closed after {len(data)}/{n} bytes")
            data += chunk
        return data

    def recv(self) -> Any:
        (length,) = struct.unpack(">I", self._exact(4))
        assert length <= p.MAX_FRAME_BYTES, length
        return msgspec.msgpack.decode(self._exact(length))

    def reply(self) -> dict[str, Any]:
        """The next reply frame (skipping nothing: replies come in order)."""
        message = self.recv()
        assert isinstance(message, dict), message
        return message

    def at_eof(self, timeout_s: float = 10.0) -> bool:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def ping(self, request_id: int = 4242) -> dict[str, Any]:
        self.send(p.request("ping", id=request_id))
        return self.reply()


def check_reply(reply: Any, sent_id: Any = None) -> dict[str, Any]:
    """A valid reply map; an error carries a stable code, never `internal` or `store_error`
    (no request of this file may break the daemon or reach the store malformed)."""
    assert isinstance(reply, dict), reply
    assert {"id", "ok", "result", "error"} <= set(reply), reply
    assert isinstance(reply["ok"], bool), reply
    if type(sent_id) in (int, str) and reply["id"] is not None:
        assert reply["id"] == sent_id, (reply["id"], sent_id)
    if reply["ok"]:
        assert reply["error"] is None, reply
        return reply
    error = reply["error"]
    assert isinstance(error, dict) and isinstance(error.get("message"), str), reply
    assert error.get("code") in ERROR_CODES, reply
    assert error["code"] not in ("internal", "store_error"), f"unexpected reply: {reply}"
    return reply


# --- the daemon under fuzz -----------------------------------------------------------------


def _tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class Fuzzed:
    """The daemon, its repository, and the invariants checked after every batch."""

    def __init__(self, daemon: DaemonProcess, repo: Path, cwd: Path) -> None:
        self.daemon = daemon
        self.repo = repo
        self.cwd = cwd  # the daemon's working directory: relative paths resolve in here
        self.base_rss = 0
        self.peak_rss = 0
        self.base_fds = 0

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def baseline(self) -> None:
        self.base_rss = self.peak_rss = _tree_rss(self.pid)
        self.base_fds = psutil.Process(self.pid).num_fds()

    def check(self, max_fd_growth: int = 64) -> None:
        """Alive, answers ping on a fresh connection, RSS and fds bounded."""
        assert self.daemon.proc.poll() is None, self.daemon.log_text()
        started = time.perf_counter()
        with Raw(self.daemon.socket, timeout_s=10) as raw:
            pong = raw.ping()
        assert pong["ok"] and pong["result"]["pid"] == self.pid, pong
        assert time.perf_counter() - started < 2.0
        rss = _tree_rss(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        grown = (rss - self.base_rss) / 2**20
        # The tree includes the Milvus child, which caches the segments of the repositories
        # the fuzz run indexes (a few repos of hundreds of files: ~100 MB); leaks from 200
        # connections or huge frames would show far above that.
        assert grown < 250, f"RSS grew by {grown:.0f} MB during the fuzz run"
        deadline = time.monotonic() + 10
        fds = psutil.Process(self.pid).num_fds()
        while fds > self.base_fds + max_fd_growth and time.monotonic() < deadline:
            time.sleep(0.2)  # closing connections is asynchronous
            fds = psutil.Process(self.pid).num_fds()
        assert fds <= self.base_fds + max_fd_growth, (fds, self.base_fds)

    def touches_something(self, value: Any) -> bool:
        """Whether a path string could name an existing directory or our repository (so a
        fuzzed add/remove/clear might index or drop something real)."""
        if not isinstance(value, str):
            return False
        try:
            expanded = os.path.expanduser(value)
            path = Path(self.cwd, expanded).resolve()
        except (ValueError, RuntimeError, OSError):
            return False
        base = str(self.daemon.base)
        return path.exists() or str(path).startswith(base) or value.startswith(base)


@pytest.fixture(scope="module")
def fz() -> Iterator[Fuzzed]:
    base = Path(tempfile.mkdtemp(prefix="cxf", dir="/tmp"))
    cwd = base / "cwd"  # the daemon runs here: fuzzed relative paths resolve in an empty dir
    cwd.mkdir()
    repo = base / "repo"
    for i in range(12):
        ht._write(
            repo / f"src/mod{i}.py",
            f'def handler_{i}(event):\n    """Handle event {i}."""\n    return event.value * {i}\n',
        )
    ht._write(repo / "README.md", "# Fuzz target\n\nA tiny repository.\n")
    daemon = DaemonProcess(base)
    with contextlib.chdir(cwd):
        daemon.start()
    try:
        daemon.call("add", {"path": str(repo)})
        daemon.wait_fresh(repo)
        fuzzed = Fuzzed(daemon, repo, cwd)
        for query in ("warm up", "handler event"):  # first searches allocate; not a leak
            daemon.call("search", {"query": query})
        daemon.call("status")
        fuzzed.baseline()
        yield fuzzed
        fuzzed.check()
        print(
            f"\nfuzz daemon RSS: base {fuzzed.base_rss / 2**20:.0f} MB, "
            f"peak {fuzzed.peak_rss / 2**20:.0f} MB"
        )
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- strategies --------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
HUGE_INTS = st.sampled_from(
    [2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63), 0, -1]
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 10.0]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    HUGE_INTS,
    FLOATS,
    TEXT,
    st.binary(max_size=32),
    st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=8)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(TEXT, INTS), inner, max_size=4)
    ),
    max_leaves=12,
)
PARAM_KEYS = (
    "path",
    "force",
    "ignore",
    "extensions",
    "query",
    "repos",
    "paths",
    "languages",
    "limit",
    "mode",
    "wait_s",
    "wait_paths",
    "repo",
    "errors",
    "all",
)
REAL_METHODS = (
    "ping",
    "list",
    "search",
    "status",
    "reindex",
    "subscribe",
    "add",
    "remove",
    "clear",
)
ODD_METHODS = (
    "frobnicate",
    "",
    "PING",
    "search ",
    "__init__",
    "handlers",
    "shutdown\x00",
    "sub\u0073cribe",
    "s\u0435arch",
)


@st.composite
def plausible_params(draw: st.DrawFn, repo: str) -> dict[str, Any]:
    """Params that are mostly well typed, so requests get past decoding into the handlers."""
    path_like = st.one_of(
        st.just(repo),
        st.just(repo + "/src"),
        st.just(repo + "/src/mod1.py"),
        st.just(repo + "/../../etc/passwd"),
        st.just("/etc"),
        st.just("/etc/shadow"),
        st.just("/nonexistent/cx"),
        st.just("relative/path"),
        st.just(""),
        TEXT,
        st.just("/tmp/\x00nul"),
        st.just("~no_such_user_cx/x"),
    )
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(PARAM_KEYS), max_size=6, unique=True)):
        if key in ("path", "repo"):
            out[key] = draw(path_like)
        elif key in ("repos", "wait_paths"):
            out[key] = draw(st.lists(path_like, max_size=3))
        elif key in ("paths", "languages", "extensions", "ignore"):
            out[key] = draw(
                st.lists(
                    st.one_of(
                        TEXT,
                        st.sampled_from(
                            [
                                "src",
                                "src/",
                                "**/*.py",
                                "src/**/mod?.py",
                                "../..",
                                "/etc",
                                "*",
                                "[",
                                "python",
                                ".py",
                                "py",
                            ]
                        ),
                    ),
                    max_size=3,
                )
            )
        elif key == "query":
            out[key] = draw(st.one_of(TEXT, st.just("handler event"), st.just(" ")))
        elif key in ("limit", "errors"):
            out[key] = draw(st.one_of(st.integers(-5, 300), HUGE_INTS, FLOATS))
        elif key == "wait_s":
            out[key] = draw(
                st.one_of(
                    st.floats(0, 2),
                    FLOATS.filter(
                        lambda x: not (isinstance(x, float) and math.isfinite(x) and x > 2)
                    ),
                )
            )
        elif key == "mode":
            out[key] = draw(st.one_of(st.sampled_from(["hybrid", "dense", "lexical"]), TEXT))
        else:  # force, all
            out[key] = draw(st.one_of(st.booleans(), SCALARS))
    return out


@st.composite
def requests(draw: st.DrawFn, repo: str) -> dict[Any, Any]:
    """A request map: mostly a real method with plausible params (to reach the handlers), often
    with wrong types, sometimes garbage in every envelope field."""

    def pick(*weighted: tuple[int, st.SearchStrategy[Any]]) -> Any:
        roll = draw(st.integers(0, sum(w for w, _ in weighted) - 1))
        for weight, strategy in weighted:
            if roll < weight:
                return draw(strategy)
            roll -= weight
        raise AssertionError

    method = pick(
        (6, st.sampled_from(REAL_METHODS)),
        (1, st.sampled_from(ODD_METHODS)),
        (1, TEXT),
        (1, SCALARS),
    )
    params = pick(
        (6, plausible_params(repo)),
        (2, st.dictionaries(st.sampled_from(PARAM_KEYS), VALUES, max_size=5)),
        (1, VALUES),
        (1, st.none()),
    )
    request: dict[Any, Any] = {"method": method}
    if params is not None:
        request["params"] = params
    request_id = pick(
        (6, st.integers(-(2**63), 2**63 - 1)), (1, TEXT), (2, st.none()), (1, SCALARS)
    )
    if request_id is not None:
        request["id"] = request_id
    version = pick((7, st.none()), (1, st.sampled_from([1, 1.0])), (1, SCALARS))
    if version is not None:
        request["v"] = version
    if draw(st.integers(0, 7)) == 0:
        request[draw(TEXT)] = draw(VALUES)  # an unknown envelope key
    return request


def is_safe(fz: Fuzzed, request: Any) -> bool:
    """False for requests that could stop the daemon, drop its repository or index a real
    directory (a fuzzer that does `add /` with force=true indexes the whole machine)."""
    if not isinstance(request, dict):
        return True
    method = request.get("method")
    if not isinstance(method, str):
        return True
    if method == "shutdown":
        return False
    if method in ("add", "remove", "clear"):
        params = request.get("params")
        if isinstance(params, dict):
            if method == "clear" and "all" in params:
                return False
            if any(fz.touches_something(params.get(key)) for key in ("path", "repo")):
                return False
    return True


def decoded_or_none(body: bytes) -> Any:
    try:
        return msgspec.msgpack.decode(body)
    except Exception:  # noqa: BLE001 - DecodeError, but also UnicodeDecodeError, RecursionError
        return None


def exchange_and_check(fz: Fuzzed, body: bytes, sent_id: Any = None) -> dict[str, Any] | None:
    """Send one well-framed body; check the reply; check the connection is still usable."""
    with Raw(fz.daemon.socket, timeout_s=90) as raw:
        raw.send_body(body)
        reply = check_reply(raw.reply(), sent_id)
        decoded = decoded_or_none(body)
        # A subscription turns the connection into an event stream; a refused one does not.
        subscribed = (
            reply["ok"] and isinstance(decoded, dict) and decoded.get("method") == "subscribe"
        )
        if not subscribed:
            pong = raw.ping()
            assert pong["ok"] and pong["id"] == 4242, pong
    return reply


# --- 1. random bodies, mutated requests, structured requests -------------------------------------


@fuzz_settings(ci=150, slow=3000)
@given(body=st.binary(min_size=0, max_size=2048))
def test_random_bytes_as_frame_body(fz: Fuzzed, body: bytes) -> None:
    assume(is_safe(fz, decoded_or_none(body)))
    exchange_and_check(fz, body)


BASE_REQUESTS = (
    {"v": 1, "id": 1, "method": "ping", "params": {}},
    {"v": 1, "id": "abc", "method": "list"},
    {"v": 1, "id": 3, "method": "status", "params": {"errors": 5}},
    {
        "v": 1,
        "id": 4,
        "method": "search",
        "params": {"query": "handle event", "limit": 5, "mode": "lexical"},
    },
    {
        "v": 1,
        "id": 5,
        "method": "search",
        "params": {
            "query": "event value",
            "paths": ["src/**/*.py"],
            "languages": ["python"],
            "extensions": [".py"],
            "mode": "hybrid",
            "wait_s": 0.5,
        },
    },
    {"v": 1, "id": None, "method": "reindex", "params": {"force": False}},
)


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, position, value in ops:
        if not buf and kind != 1:
            continue
        i = position % (len(buf) + (1 if kind == 1 else 0))
        if kind == 0:
            buf[i] ^= 1 << (value % 8)  # flip a bit
        elif kind == 1:
            buf.insert(i, value)  # insert a byte
        elif kind == 2:
            del buf[i]  # delete a byte
        else:
            buf[i] = value  # overwrite a byte
    return bytes(buf)


@fuzz_settings(ci=200, slow=4000)
@given(
    base=st.sampled_from(BASE_REQUESTS),
    ops=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
)
def test_mutated_valid_requests(
    fz: Fuzzed, base: dict[str, Any], ops: list[tuple[int, int, int]]
) -> None:
    body = _mutate(msgspec.msgpack.encode(base), ops)
    decoded = decoded_or_none(body)
    assume(is_safe(fz, decoded))
    sent_id = decoded.get("id") if isinstance(decoded, dict) else None
    exchange_and_check(fz, body, sent_id)


@fuzz_settings(ci=250, slow=5000)
@given(data=st.data())
def test_structured_requests_with_wrong_types(fz: Fuzzed, data: st.DataObject) -> None:
    request = data.draw(requests(str(fz.repo)))
    assume(is_safe(fz, request))
    body = msgspec.msgpack.encode(request)
    started = time.perf_counter()
    try:
        reply = exchange_and_check(fz, body, request.get("id"))
    except Exception:
        if os.environ.get("CODECTX_FUZZ_TRACE"):
            print(f"FAILED ON {request!r}")
        raise
    if os.environ.get("CODECTX_FUZZ_TRACE"):
        print(
            f"{time.perf_counter() - started:6.3f}s {str(request)[:150]!r} -> {str(reply)[:150]!r}"
        )
    if reply is not None and not reply["ok"] and reply["error"]["code"] == "version_mismatch":
        assert reply["error"]["data"] == {"protocol": p.PROTOCOL_VERSION}


def test_fuzz_batch_invariants(fz: Fuzzed) -> None:
    """After the hypothesis batches: alive, responsive, memory and fds bounded, repo fresh."""
    fz.check()
    fz.daemon.wait_fresh(fz.repo, timeout_s=120)
    hits = fz.daemon.call("search", {"query": "handler_3", "mode": "lexical"})["results"]
    assert hits and hits[0]["path"] == "src/mod3.py"


# --- 2. framing abuse ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [p.MAX_FRAME_BYTES + 1, 2**31, 2**32 - 1])
def test_length_prefix_over_the_limit(fz: Fuzzed, length: int) -> None:
    with Raw(fz.daemon.socket, timeout_s=10) as raw:
        raw.send(struct.pack(">I", length) + b"\x80" * 16)
        reply = check_reply(raw.reply())
        assert reply["error"]["code"] == "frame_too_large" and reply["id"] is None
        assert raw.at_eof(), "the connection must be closed after frame_too_large"
    fz.check()


def test_frame_at_the_limit_is_served(fz: Fuzzed) -> None:
    pad = "x" * (p.MAX_FRAME_BYTES - 100)
    body = msgspec.msgpack.encode({"v": 1, "id": 77, "method": "ping", "params": {"pad": pad}})
    assert len(body) <= p.MAX_FRAME_BYTES
    started = time.perf_counter()
    reply = exchange_and_check(fz, body, 77)
    assert reply is not None and reply["ok"] and time.perf_counter() - started < 10
    fz.check()


@fuzz_settings(ci=40, slow=500)
@given(
    length=st.integers(1, p.MAX_FRAME_BYTES), sent=st.integers(0, 4096), split_header=st.booleans()
)
def test_length_larger_than_body_then_close(
    fz: Fuzzed, length: int, sent: int, split_header: bool
) -> None:
    sent = min(sent, length - 1)
    with Raw(fz.daemon.socket, timeout_s=10) as raw:
        header = struct.pack(">I", length)
        if split_header:
            raw.send(header[:2])
            raw.send(header[2:])
        else:
            raw.send(header)
        raw.send(b"\x80" * sent)
    # No reply is possible; the daemon must just drop the connection.
    with Raw(fz.daemon.socket, timeout_s=10) as raw:
        assert raw.ping()["ok"]


@pytest.mark.parametrize(
    "partial",
    [b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x10", b"\x00\x00\x00\x10\x84\xa1v\x01"],
)
def test_partial_frames_then_hang_up(fz: Fuzzed, partial: bytes) -> None:
    for _ in range(20):
        with Raw(fz.daemon.socket, timeout_s=10) as raw:
            raw.send(partial)
    # Also a reset (RST) instead of an orderly close.
    raw = Raw(fz.daemon.socket, timeout_s=10)
    raw.send(partial)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    fz.check()


def test_pipelined_requests_answered_in_order(fz: Fuzzed) -> None:
    frames = b"".join(
        p.request(m, prm, id=i)
        for i, (m, prm) in enumerate(
            [
                ("ping", {}),
                ("frobnicate", {}),
                ("search", {"query": 5}),
                ("list", {}),
                ("search", {"query": "handler", "limit": 2}),
                ("ping", {}),
            ]
        )
    )
    with Raw(fz.daemon.socket, timeout_s=30) as raw:
        raw.send(frames + struct.pack(">I", 3) + b"\xc1\xc1\xc1" + p.request("ping", id=99))
        replies = [check_reply(raw.reply()) for _ in range(8)]
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4, 5, None, 99]
    assert [r["ok"] for r in replies] == [True, False, False, True, True, True, False, True]
    assert replies[1]["error"]["code"] == "unknown_method"
    assert replies[6]["error"]["code"] == "bad_request"


def _ping_probe(
    fz: Fuzzed, stop: threading.Event, latencies: list[float], errors: list[BaseException]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with Raw(fz.daemon.socket, timeout_s=10) as raw:
                assert raw.ping()["ok"]
            latencies.append(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        stop.wait(0.1)


@contextlib.contextmanager
def pinging(fz: Fuzzed) -> Iterator[tuple[list[float], list[BaseException]]]:
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[BaseException] = []
    thread = threading.Thread(target=_ping_probe, args=(fz, stop, latencies, errors), daemon=True)
    thread.start()
    try:
        yield latencies, errors
    finally:
        stop.set()
        thread.join(20)


def test_slow_client_one_byte_per_second_does_not_block_others(fz: Fuzzed) -> None:
    """A frame trickling in at 1 byte/s (finished well within the 30 s frame timeout) is
    served, and other clients see no delay meanwhile."""
    body = msgspec.msgpack.encode({"v": 1, "id": 5, "method": "ping"})
    frame = struct.pack(">I", len(body)) + body
    with pinging(fz) as (latencies, errors), Raw(fz.daemon.socket, timeout_s=30) as slow:
        for i in range(6):
            slow.send(frame[i : i + 1])
            time.sleep(1.0)
        slow.send(frame[6:])
        reply = check_reply(slow.reply())
    assert reply["ok"] and reply["id"] == 5
    assert not errors, errors[:3]
    assert len(latencies) >= 20 and max(latencies) < 0.5, (len(latencies), max(latencies))


@pytest.mark.slow
@SLOW
def test_slow_loris_is_closed_after_the_frame_timeout(fz: Fuzzed) -> None:
    """One byte per second never finishes a 100-byte body: the daemon closes the connection
    30 s after the header arrived; other clients are unaffected all along."""
    body = msgspec.msgpack.encode({"v": 1, "id": 6, "method": "ping", "params": {"pad": "p" * 80}})
    frame = struct.pack(">I", len(body)) + body
    closed_after: float | None = None
    with pinging(fz) as (latencies, errors), Raw(fz.daemon.socket, timeout_s=5) as slow:
        slow.send(frame[:4])
        header_at = time.monotonic()
        for i in range(4, len(frame)):
            try:
                slow.send(frame[i : i + 1])
                slow.sock.settimeout(1.0)
                if slow.sock.recv(1) == b"":
                    closed_after = time.monotonic() - header_at
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - header_at
                break
    print(
        f"\nslow loris closed after {closed_after}s; {len(latencies)} pings, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    assert closed_after is not None and 29 <= closed_after <= 40, closed_after
    assert not errors and max(latencies) < 0.5
    fz.check()


# --- 3. concurrency and subscriptions ------------------------------------------------------------


def test_200_concurrent_connections_each_searching(fz: Fuzzed) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 512:
        pytest.skip(f"open-file limit {soft} too low for 200 connections")
    n = 200
    barrier = threading.Barrier(n)
    results: list[tuple[float, dict[str, Any]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            with Raw(fz.daemon.socket, timeout_s=120) as raw:
                barrier.wait(60)
                started = time.perf_counter()
                raw.send(p.request("search", {"query": f"handle event {i % 12}", "limit": 3}, id=i))
                reply = raw.reply()
                with lock:
                    results.append((time.perf_counter() - started, reply))
        except BaseException as exc:  # noqa: BLE001
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:3]
    assert len(results) == n
    for _, reply in results:
        check_reply(reply)
        assert reply["ok"] and reply["result"]["results"], reply
    latencies = sorted(r[0] for r in results)
    print(
        f"\n200 concurrent searches: p50 {latencies[n // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(n * 0.99)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    fz.check()


def test_too_many_connections_get_busy_then_recover(fz: Fuzzed) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    daemon_soft = psutil.Process(fz.pid).rlimit(psutil.RLIMIT_NOFILE)[0]
    if min(soft, daemon_soft) < 1200:
        pytest.skip(f"open-file limits {soft}/{daemon_soft} too low for 530 connections")
    idle: list[Raw] = []
    try:
        for _ in range(530):
            idle.append(Raw(fz.daemon.socket, timeout_s=10))
        time.sleep(0.5)
        with Raw(fz.daemon.socket, timeout_s=10) as extra:
            reply = check_reply(extra.reply())
            assert reply["error"]["code"] == "busy", reply
    finally:
        for raw in idle:
            raw.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Raw(fz.daemon.socket, timeout_s=10) as raw:
            raw.send(p.request("ping", id=1))
            if raw.reply()["ok"]:
                break
        time.sleep(0.2)
    fz.check()


def drain_to_eof(raw: Raw, timeout_s: float) -> bool:
    """Read (and drop) whatever comes until the daemon closes; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if raw.sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def test_subscribers_disconnecting_mid_stream(fz: Fuzzed) -> None:
    """Subscribers that vanish (close, reset, send a byte, never read) while indexing and churn
    produce events: the daemon keeps indexing, answering, and forgets them."""
    root = fz.daemon.base / "subrepo"
    for i in range(120):
        ht._write(root / f"pkg/m{i}.py", f"def sub_{i}(x):\n    return x + {i}\n")

    def subscribe(params: dict[str, Any]) -> Raw:
        raw = Raw(fz.daemon.socket, timeout_s=30)
        raw.send(p.request("subscribe", params, id=7))
        first = check_reply(raw.reply(), 7)
        assert first["ok"] and first["result"]["subscribed"] is True
        return raw

    before = fz.daemon.call("status")["daemon"]["subscribers"]
    never_reads = [subscribe({}) for _ in range(3)]
    for raw in never_reads:
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader = subscribe({})
    with pinging(fz) as (latencies, errors):
        fz.daemon.call("add", {"path": str(root)})
        with ht.churning(root, n_files=20):
            seen = 0
            for round_ in range(9):
                sub = subscribe({"repos": [str(root)]} if round_ % 2 else {})
                try:
                    sub.sock.settimeout(1.5)
                    with contextlib.suppress(TimeoutError, Closed):
                        for _ in range(3):
                            message = sub.recv()
                            assert message["id"] == 7 and "event" in message, message
                            seen += 1
                finally:
                    how = round_ % 3
                    if how == 0:
                        sub.close()
                    elif how == 1:  # reset instead of an orderly close
                        sub.sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        sub.close()
                    else:  # any byte ends the subscription
                        sub.send(b"x")
                        assert drain_to_eof(sub, 10), "a byte must end the subscription"
                        sub.close()
                with contextlib.suppress(TimeoutError, OSError):
                    reader.sock.settimeout(0.5)
                    reader.sock.recv(65536)  # drain (frames may be cut: raw bytes)
            assert seen > 0
    for raw in never_reads:
        raw.close()
    reader.close()
    assert not errors, errors[:3]
    assert max(latencies) < 2.0, max(latencies)
    fz.daemon.wait_fresh(root, timeout_s=120)
    deadline = time.monotonic() + 10
    count = -1
    while time.monotonic() < deadline:
        count = fz.daemon.call("status")["daemon"]["subscribers"]
        if count == before:
            break
        time.sleep(0.2)
    assert count == before, f"{count} subscribers left (was {before})"
    fz.daemon.call("remove", {"path": str(root)})
    fz.check()


# --- 4. security ---------------------------------------------------------------------------------


def _as_nobody(sock_path: Path) -> dict[str, Any]:
    """Fork a child that becomes uid/gid 65534, connects and sends a ping; its observations."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest, no threads; report through the pipe and _exit
        out: dict[str, Any] = {}
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out["uid"] = os.getuid()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(str(sock_path))
            except OSError as exc:
                out["connect_errno"] = exc.errno
            else:
                with contextlib.suppress(OSError):
                    s.sendall(p.request("ping", id=1))
                data = b""
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            out["eof"] = True
                            break
                        data += chunk
                except ConnectionResetError:  # closed with our ping unread: also a close
                    out["eof"] = True
                except OSError as exc:
                    out["recv_errno"] = exc.errno
                if len(data) >= 4:
                    (n,) = struct.unpack(">I", data[:4])
                    out["reply"] = msgspec.msgpack.decode(data[4 : 4 + n])
                    out["extra_frames"] = len(data) > 4 + n
            os.write(write_fd, json.dumps(out, default=str).encode())
        except BaseException as exc:  # noqa: BLE001
            os.write(write_fd, json.dumps({"child_error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"{}")


@ROOT_ONLY
def test_other_uid_cannot_reach_the_socket(fz: Fuzzed) -> None:
    """The 0700 runtime dir / 0600 socket keep other users out at the file system level."""
    seen = _as_nobody(fz.daemon.socket)
    assert seen.get("uid") == 65534, seen
    assert seen.get("connect_errno") in (13, 1), seen  # EACCES / EPERM
    fz.check()


@ROOT_ONLY
def test_other_uid_is_refused_by_peer_credentials(fz: Fuzzed) -> None:
    """Even with the file permissions opened up, SO_PEERCRED refuses another uid."""
    base, run_dir, sock = fz.daemon.base, fz.daemon.runtime_dir, fz.daemon.socket
    modes = {path: path.stat().st_mode & 0o777 for path in (base, run_dir, sock)}
    try:
        os.chmod(base, 0o711)
        os.chmod(run_dir, 0o711)
        os.chmod(sock, 0o666)
        seen = _as_nobody(sock)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert seen.get("uid") == 65534 and "connect_errno" not in seen, seen
    reply = seen.get("reply")
    assert reply is not None, seen
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert "permission denied" in reply["error"]["message"]
    assert seen.get("eof") and not seen.get("extra_frames"), seen  # no pong, closed
    fz.check()


@ROOT_ONLY
def test_refuses_runtime_dir_owned_by_another_user() -> None:
    base = Path(tempfile.mkdtemp(prefix="cxo", dir="/tmp"))
    try:
        proc = DaemonProcess(base)
        proc.runtime_dir.mkdir(mode=0o700)
        os.chown(proc.runtime_dir, 65534, 65534)
        out = subprocess.run(
            [sys.executable, "-m", "codectxd", "start"],
            env=proc.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "belongs to uid 65534" in out.stderr, out.stderr
        assert not proc.socket.exists()
        assert list(proc.runtime_dir.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


PASSWD_LINE = "root:x:0:0"


def _assert_no_leak(value: Any) -> None:
    text = json.dumps(value, default=str)
    assert PASSWD_LINE not in text and "root:$" not in text and "root:*" not in text, text[:500]


def test_requests_cannot_read_outside_registered_repositories(fz: Fuzzed) -> None:
    repo = str(fz.repo)
    link = fz.repo / "passwd_link.py"
    with contextlib.suppress(FileExistsError):
        os.symlink("/etc/passwd", link)
    refused = [
        ("search", {"query": "root", "repos": ["/etc"]}),
        ("search", {"query": "root", "repos": [repo + "/../../../etc"]}),
        ("search", {"query": "root", "wait_s": 2, "wait_paths": ["/etc/shadow"]}),
        ("search", {"query": "root", "wait_s": 2, "wait_paths": ["/etc/passwd"]}),
        ("search", {"query": "root", "wait_s": 2, "wait_paths": [repo + "/../../../etc/passwd"]}),
        ("search", {"query": "root", "wait_s": 2, "wait_paths": [str(link)]}),
        ("status", {"repo": "/etc"}),
        ("reindex", {"repo": "/etc"}),
        ("subscribe", {"repos": ["/etc"]}),
    ]
    for method, params in refused:
        with Raw(fz.daemon.socket, timeout_s=30) as raw:
            raw.send(p.request(method, params, id=1))
            reply = check_reply(raw.reply(), 1)
        assert not reply["ok"] and reply["error"]["code"] == "not_found", (method, params, reply)
        _assert_no_leak(reply)
    # Filters are relative to the repository: traversal finds nothing outside.
    for paths in (["../../etc/passwd"], ["/etc/passwd"], ["**/passwd"], ["../*"], ["**"]):
        for mode in ("lexical", "hybrid"):
            result = fz.daemon.call(
                "search",
                {"query": "root x 0 0 bin bash", "mode": mode, "paths": paths, "limit": 50},
            )
            _assert_no_leak(result)
            assert all(
                h["repo"] == repo and not h["path"].startswith(("/", ".."))
                for h in result["results"]
            ), result
    # The symlink to /etc/passwd inside the repo is skipped, never read.
    fz.daemon.call("search", {"query": "x", "wait_s": 10, "wait_paths": [str(fz.repo)]})
    _assert_no_leak(fz.daemon.call("status", {"errors": 1000}))
    _assert_no_leak(fz.daemon.call("search", {"query": "root", "mode": "lexical", "limit": 200}))
    link.unlink()
    fz.check()


def test_add_of_system_directories_is_refused(fz: Fuzzed) -> None:
    link = fz.daemon.base / "etc_link"
    with contextlib.suppress(FileExistsError):
        os.symlink("/etc", link)
    for path in (
        "/",
        "/etc",
        "/etc/",
        "/etc/../etc",
        "//etc",
        str(link),
        "/usr",
        "/root",
        os.path.expanduser("~"),
    ):
        with pytest.raises(RemoteError) as info:
            fz.daemon.call("add", {"path": path})
        assert info.value.code == "bad_request", (path, info.value)
    listed = [r["root"] for r in fz.daemon.call("list")["repos"]]
    assert listed == [str(fz.repo)], listed
    fz.check()


# --- 5. regressions: bugs the fuzzing found ------------------------------------------------


def _one(fz: Fuzzed, method: str, params: Any, request_id: int = 1) -> dict[str, Any]:
    with Raw(fz.daemon.socket, timeout_s=60) as raw:
        raw.send_body(
            msgspec.msgpack.encode({"v": 1, "id": request_id, "method": method, "params": params})
        )
        reply = raw.reply()
        assert raw.ping()["ok"]
    return reply


def _assert_client_error(reply: dict[str, Any], *codes: str) -> None:
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] in (codes or ("bad_request", "not_found")), reply


@pytest.mark.parametrize("where", ["top", "unknown_key", "params", "id"])
def test_deeply_nested_request_gets_bad_request(fz: Fuzzed, where: str) -> None:
    mp = msgspec.msgpack.encode
    deep = b"\x91" * 5000 + b"\xc0"
    body = {
        "top": deep,
        "unknown_key": b"\x83" + mp("method") + mp("ping") + mp("id") + mp(1) + mp("x") + deep,
        "params": b"\x83"
        + mp("method")
        + mp("search")
        + mp("id")
        + mp(1)
        + mp("params")
        + b"\x82"
        + mp("query")
        + mp("q")
        + mp("x")
        + deep,
        "id": b"\x82" + mp("method") + mp("ping") + mp("id") + deep,
    }[where]
    try:
        with Raw(fz.daemon.socket, timeout_s=30) as raw:
            raw.send_body(body)
            reply = check_reply(raw.reply())
            assert raw.ping()["ok"], "the connection must stay usable"
    finally:
        fz.check()
    assert reply["ok"] or reply["error"]["code"] == "bad_request", reply


@pytest.mark.parametrize("where", ["method", "id", "envelope_key_and_bad_method", "params"])
def test_invalid_utf8_string_gets_bad_request(fz: Fuzzed, where: str) -> None:
    mp = msgspec.msgpack.encode
    bad = b"\xa2\xff\xfe"  # fixstr of 2 bytes that are not UTF-8
    body = {
        "method": b"\x82" + mp("method") + bad + mp("id") + mp(1),
        "id": b"\x82" + mp("method") + mp("ping") + mp("id") + bad,
        "envelope_key_and_bad_method": b"\x82" + bad + mp(1) + mp("method") + mp(5),
        "params": b"\x83"
        + mp("method")
        + mp("search")
        + mp("id")
        + mp(1)
        + mp("params")
        + b"\x81"
        + mp("query")
        + bad,
    }[where]
    try:
        with Raw(fz.daemon.socket, timeout_s=30) as raw:
            raw.send_body(body)
            reply = raw.reply()
            assert raw.ping()["ok"], "the connection must stay usable"
    finally:
        fz.check()
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply


@pytest.mark.parametrize("params", [{"repos": ["/etc"]}, {"repos": 5}])
def test_failed_subscribe_keeps_the_connection_open(fz: Fuzzed, params: Any) -> None:
    with Raw(fz.daemon.socket, timeout_s=30) as raw:
        raw.send(p.request("subscribe", params, id=3))
        reply = check_reply(raw.reply(), 3)
        assert reply["ok"] is False
        try:
            pong = raw.ping()
        except (OSError, Closed) as exc:
            pytest.fail(f"connection closed after a failed subscribe: {exc!r}")
    assert pong["ok"]


@pytest.mark.parametrize(
    "method,params",
    [
        ("search", {"query": "x", "repos": ["/tmp/a\x00b"]}),
        ("search", {"query": "x", "wait_s": 1, "wait_paths": ["/tmp/a\x00b"]}),
        ("add", {"path": "/tmp/a\x00b"}),
        ("status", {"repo": "/tmp/a\x00b"}),
        ("reindex", {"repo": "/tmp/a\x00b"}),
    ],
)
def test_nul_byte_in_path_is_a_bad_request(fz: Fuzzed, method: str, params: Any) -> None:
    _assert_client_error(_one(fz, method, params))


@pytest.mark.parametrize(
    "method,params",
    [
        ("search", {"query": "x", "repos": ["~no_such_user_cx/src"]}),
        ("add", {"path": "~no_such_user_cx"}),
        ("status", {"repo": "~no_such_user_cx"}),
    ],
)
def test_unknown_user_tilde_path_is_a_client_error(fz: Fuzzed, method: str, params: Any) -> None:
    _assert_client_error(_one(fz, method, params))


def test_nan_wait_s_is_a_bad_request(fz: Fuzzed) -> None:
    _assert_client_error(_one(fz, "search", {"query": "x", "wait_s": math.nan}), "bad_request")


@pytest.mark.parametrize("errors", [2**63, 2**64 - 1])
def test_huge_status_errors_param(fz: Fuzzed, errors: int) -> None:
    reply = _one(fz, "status", {"errors": errors})
    assert reply["ok"] or reply["error"]["code"] == "bad_request", reply


@pytest.mark.parametrize("glob", ["[z-a]", "src/[9-0].py"])
def test_invalid_glob_is_a_bad_request(fz: Fuzzed, glob: str) -> None:
    _assert_client_error(_one(fz, "search", {"query": "x", "paths": [glob]}), "bad_request")


@pytest.mark.parametrize(
    "params", [{"paths": ["src\n"]}, {"languages": ["python\r"]}, {"extensions": ["\n"]}]
)
def test_newline_in_filter_is_not_a_store_error(fz: Fuzzed, params: dict[str, Any]) -> None:
    reply = _one(fz, "search", {"query": "handler", **params})
    assert reply["ok"] or reply["error"]["code"] == "bad_request", reply


def test_invalid_ignore_pattern_is_refused_and_not_persisted() -> None:
    base = Path(tempfile.mkdtemp(prefix="cxi", dir="/tmp"))
    daemon = DaemonProcess(base)
    root = base / "repo"
    ht._write(root / "a.py", "def kept_after_restart_qz():\n    return 1\n")
    try:
        daemon.start()
        with Raw(daemon.socket, timeout_s=60) as raw:
            raw.send(p.request("add", {"path": str(root), "ignore": ["[z-a]"]}, id=1))
            reply = raw.reply()
        daemon.stop()
        # The daemon must still start after such a request (the severe part of the bug).
        daemon.proc = None
        daemon.start(timeout_s=60)
        assert daemon.call("ping")["pid"] == daemon.proc.pid
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    finally:
        daemon.kill()
        shutil.rmtree(base, ignore_errors=True)
