"""A synchronous connection to the daemon (no asyncio: it would add ~70 ms to start-up)."""

from __future__ import annotations

# The C module under `socket`: `socket` builds its IntEnums and imports `selectors` (~2.5 ms
# of each start), and a client needs none of what it adds.
import _socket
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from codectx_client import wire
from codectx_client.paths import socket_path as default_socket_path

TYPE_CHECKING = False  # typing costs ~3 ms of every client start; annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_TIMEOUT_S = 60.0


class ClientError(Exception):
    """Base of the client's errors."""


class DaemonNotRunning(ClientError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"the codectx daemon is not running (no answer on {path}: {reason}).\n"
            "Start it with:  codectxd start --detach   (or install it as a service: "
            "codectxd install-service), or pass --autostart."
        )
        self.path = path


class RemoteError(ClientError):
    """The daemon answered with an error reply."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data or {}


class ConnectionLost(ClientError):
    pass


class Connection:
    """One Unix-socket connection; requests are answered in order."""

    def __init__(self, sock: _socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._ids = itertools.count(1)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            try:
                data = self.sock.recv(min(n, 1 << 20))
            except TimeoutError:
                raise ClientError("timed out waiting for the daemon's answer") from None
            except OSError as exc:
                raise ConnectionLost(f"connection to the daemon failed: {exc}") from None
            if not data:
                raise ConnectionLost("the daemon closed the connection")
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def receive(self) -> dict[str, Any]:
        length = wire.frame_length(self._recv_exact(wire.HEADER.size))
        message = wire.decode_message(self._recv_exact(length))
        if not isinstance(message, dict):
            raise ClientError("the daemon sent a malformed message")
        return message

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = next(self._ids)
        try:
            self.sock.sendall(wire.request(method, params, request_id))
        except OSError as exc:
            raise ConnectionLost(f"cannot send to the daemon: {exc}") from None
        return request_id

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        """Send a request and return its result; raises RemoteError on an error reply."""
        self.sock.settimeout(timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S)
        request_id = self.send(method, params)
        while True:
            message = self.receive()
            if message.get("id") == request_id and "ok" in message:
                return _result(message)

    def subscribe(self, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Yield event messages ({event, data}) until the connection closes."""
        self.sock.settimeout(None)
        request_id = self.send("subscribe", params)
        first = self.receive()
        _result(first)
        while True:
            message = self.receive()
            if message.get("id") == request_id and "event" in message:
                yield message


def _result(message: dict[str, Any]) -> Any:
    if message.get("ok"):
        return message.get("result")
    error = message.get("error") or {}
    raise RemoteError(
        error.get("code", "internal"), error.get("message", "unknown error"), error.get("data")
    )


def connect(
    path: Path | None = None, *, autostart: bool = False, timeout_s: float = 5.0
) -> Connection:
    """Connect to the daemon, starting it first when `autostart` is set and it is down."""
    path = path or default_socket_path()
    try:
        return _connect_once(path)
    except DaemonNotRunning:
        if not autostart:
            raise
    start_daemon()
    deadline = time.monotonic() + max(timeout_s, 30.0)
    last: DaemonNotRunning | None = None
    while time.monotonic() < deadline:
        try:
            return _connect_once(path)
        except DaemonNotRunning as exc:
            last = exc
            time.sleep(0.1)
    assert last is not None
    raise last


def _connect_once(path: Path) -> Connection:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(path, exc.strerror or str(exc)) from None
    except OSError as exc:
        sock.close()
        raise DaemonNotRunning(path, exc.strerror or str(exc)) from None
    return Connection(sock, path)


def start_daemon() -> None:
    """Start `codectxd start --detach` from the same environment as this client."""
    import shutil  # only when starting the daemon: keeps every other command light
    import subprocess

    exe = shutil.which("codectxd")
    command = [exe] if exe else [sys.executable, "-m", "codectxd"]
    result = subprocess.run(
        [*command, "start", "--detach"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    if result.returncode != 0:
        raise ClientError(f"could not start the daemon: {result.stderr.strip() or result.stdout}")
