"""The Unix-socket server: framing, peer checks, dispatch with a per-request error barrier.

One bad frame or request gets an error reply (or, when the stream cannot be trusted any more,
a closed connection); it never reaches the listener, so other clients are not affected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from codectx_client import protocol as p
from codectxd.app import Daemon
from codectxd.errors import CodectxError

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 512
#: Once a frame has started, the rest must arrive within this time (slow-loris guard).
FRAME_TIMEOUT_S = 30.0
#: Frames above this size are read one or two at a time, so memory stays bounded.
_LARGE_FRAME_BYTES = 1 << 20
# Methods answered while the daemon is still loading its model and registry.
_BEFORE_READY = frozenset({"ping", "shutdown"})


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if unknown)."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    if sys.platform == "darwin":  # LOCAL_PEERCRED → struct xucred {u_int version; uid_t uid...}
        creds = sock.getsockopt(0, 0x001, 76)
        return int(struct.unpack_from("Ii", creds)[1])
    return None


def error_reply(
    request_id: Any, code: str, message: str, data: dict[str, Any] | None = None
) -> p.Reply:
    return p.Reply(
        id=request_id, ok=False, error=p.ErrorInfo(code=code, message=message, data=data)
    )


class Server:
    def __init__(self, daemon: Daemon, path: Path, *, request_timeout_s: float) -> None:
        self.daemon = daemon
        self.path = path
        self.request_timeout_s = request_timeout_s
        self.connections = 0
        self._large_frames = anyio.Semaphore(2)
        self._uid = os.getuid()

    async def listen(self) -> anyio.abc.SocketListener:
        """Bind the socket (0600). The caller holds the single-instance lock already:
        anyio removes an existing socket file even if another daemon still serves it."""
        listener = await anyio.create_unix_listener(self.path, mode=0o600)
        self.daemon.socket_path = self.path
        return listener

    async def serve(self, listener: anyio.abc.SocketListener) -> None:
        async with listener:
            await listener.serve(self._guarded)

    async def _guarded(self, stream: SocketStream) -> None:
        # Nothing may escape a connection handler: anyio would tear down every connection.
        try:
            await self._connection(stream)
        except Exception:  # noqa: BLE001
            log.exception("connection handler failed")
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _connection(self, stream: SocketStream) -> None:
        self.connections += 1
        try:
            if self.connections > MAX_CONNECTIONS:
                await self._send(
                    stream, error_reply(None, p.ErrorCode.BUSY, "too many connections")
                )
                return
            raw = stream.extra(SocketAttribute.raw_socket)
            uid = peer_uid(raw)
            if uid is not None and uid != self._uid:
                log.warning("refused a connection from uid %d", uid)
                await self._send(
                    stream,
                    error_reply(
                        None, p.ErrorCode.BAD_REQUEST, "permission denied: not the daemon's user"
                    ),
                )
                return
            reader = BufferedByteReceiveStream(stream)
            while True:
                body = await self._read_frame(stream, reader)
                if body is None:
                    return
                keep_open = await self._handle_frame(stream, reader, body)
                if not keep_open:
                    return
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            ConnectionError,
        ):
            return
        finally:
            self.connections -= 1

    async def _read_frame(
        self, stream: SocketStream, reader: BufferedByteReceiveStream
    ) -> bytes | None:
        """The next frame body; None when the connection must close (after a reply)."""
        header = await reader.receive_exactly(p.HEADER.size)  # idle connections may wait
        try:
            length = p.frame_length(header)
        except p.FrameError as exc:
            # The stream cannot be resynchronised: answer, then close.
            await self._send(stream, error_reply(None, exc.code, str(exc)))
            return None
        try:
            with anyio.fail_after(FRAME_TIMEOUT_S):
                if length > _LARGE_FRAME_BYTES:
                    async with self._large_frames:
                        return await reader.receive_exactly(length)
                return await reader.receive_exactly(length)
        except TimeoutError:
            log.info("closing a connection that sent a partial frame for %.0fs", FRAME_TIMEOUT_S)
            return None

    async def _handle_frame(
        self, stream: SocketStream, reader: BufferedByteReceiveStream, body: bytes
    ) -> bool:
        try:
            request = p.decode_request(body)
        except p.FrameError as exc:
            await self._send(stream, error_reply(_sniff_id(body), exc.code, str(exc)))
            return True
        if request.method == "subscribe":
            # A subscription turns the connection into an event stream; a refused one leaves
            # it an ordinary request connection.
            return not await self._subscribe(stream, reader, request)
        reply = await self.dispatch(request)
        await self._send(stream, reply)
        return True

    async def dispatch(self, request: p.Request) -> p.Reply:
        """Run one request's handler; every failure becomes an error reply."""
        daemon = self.daemon
        daemon.metrics.requests += 1
        try:
            if request.v != p.PROTOCOL_VERSION:
                return error_reply(
                    request.id,
                    p.ErrorCode.VERSION_MISMATCH,
                    f"protocol version {request.v} is not supported (the daemon "
                    f"speaks {p.PROTOCOL_VERSION}); upgrade the older side",
                    {"protocol": p.PROTOCOL_VERSION},
                )
            handler = daemon.handlers.get(request.method)
            params = p.decode_params(request.method, request.params)
            if handler is None:
                raise p.FrameError(
                    p.ErrorCode.UNKNOWN_METHOD, f"method {request.method!r} is not served here"
                )
            if daemon.should_exit.is_set() and request.method != "ping":
                return error_reply(
                    request.id, p.ErrorCode.SHUTTING_DOWN, "the daemon is shutting down"
                )
            timeout = self.request_timeout_s + float(getattr(params, "wait_s", 0.0) or 0.0)
            with anyio.fail_after(timeout):
                if request.method not in _BEFORE_READY:
                    # Until the registry is loaded, repo lookups would wrongly say "unknown".
                    await daemon.ready.wait()
                result = await handler(params)
            return p.Reply(id=request.id, ok=True, result=result)
        except p.FrameError as exc:
            daemon.metrics.errors += 1
            return error_reply(request.id, exc.code, str(exc))
        except CodectxError as exc:
            daemon.metrics.errors += 1
            return error_reply(request.id, exc.code, str(exc))
        except TimeoutError:
            daemon.metrics.errors += 1
            return error_reply(
                request.id,
                p.ErrorCode.TIMEOUT,
                f"{request.method} did not finish within its time limit",
            )
        except Exception as exc:  # noqa: BLE001 - the per-request error barrier
            daemon.metrics.errors += 1
            log.exception("%s request failed", request.method)
            return error_reply(
                request.id,
                p.ErrorCode.INTERNAL,
                f"internal error in {request.method}: {type(exc).__name__}: {exc}",
            )

    async def _subscribe(
        self, stream: SocketStream, reader: BufferedByteReceiveStream, request: p.Request
    ) -> bool:
        """Stream events until the client goes away; False (after an error reply) when the
        subscription is refused."""
        try:
            params = p.decode_params("subscribe", request.params)
            assert isinstance(params, p.SubscribeParams)
            with anyio.fail_after(self.request_timeout_s):
                await self.daemon.ready.wait()
            repos = frozenset(self.daemon.find_repo(r).name for r in params.repos)
        except (p.FrameError, CodectxError) as exc:
            code = getattr(exc, "code", p.ErrorCode.BAD_REQUEST)
            await self._send(stream, error_reply(request.id, code, str(exc)))
            return False
        except TimeoutError:
            await self._send(
                stream,
                error_reply(
                    request.id, p.ErrorCode.TIMEOUT, "the daemon is still starting; try again"
                ),
            )
            return False
        sub = self.daemon.events.subscribe(repos)
        try:
            await self._send(
                stream,
                p.Reply(
                    id=request.id,
                    ok=True,
                    result=p.SubscribeResult(subscribed=True, repos=sorted(repos)),
                ),
            )
            async with anyio.create_task_group() as tg:

                async def watch_close() -> None:
                    # Any byte or EOF from the client ends the subscription.
                    with contextlib.suppress(
                        anyio.EndOfStream,
                        anyio.BrokenResourceError,
                        anyio.ClosedResourceError,
                        ConnectionError,
                    ):
                        await reader.receive(1)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_close)
                async for event, data in sub.receive:
                    await self._send(stream, p.Event(id=request.id, event=event, data=data))
        finally:
            self.daemon.events.unsubscribe(sub)
        return True

    @staticmethod
    async def _send(stream: SocketStream, message: Any) -> None:
        await stream.send(p.encode(message))


def _sniff_id(body: bytes) -> Any:
    """The request id of an otherwise invalid request, when it can be read at all."""
    try:
        data = msgspec.msgpack.decode(body)
    except p.UNDECODABLE:
        return None
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, int | str):
            return value
    return None
