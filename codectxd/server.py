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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from codectx_client import protocol as p
from codectxd.router import Replied, error_reply

log = logging.getLogger(__name__)

#: The one call the server makes into the daemon: a request in, a reply (or a stream) out.
Dispatch = Callable[[p.Request], Awaitable[p.Reply | Replied]]

MAX_CONNECTIONS = 512
#: Once a frame has started, the rest must arrive within this time (slow-loris guard).
FRAME_TIMEOUT_S = 30.0
#: Frames above this size are read one or two at a time, so memory stays bounded.
_LARGE_FRAME_BYTES = 1 << 20


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if unknown)."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    if sys.platform == "darwin":  # LOCAL_PEERCRED → struct xucred {u_int version; uid_t uid...}
        creds = sock.getsockopt(0, 0x001, 76)
        return int(struct.unpack_from("Ii", creds)[1])
    return None


class Server:
    def __init__(self, dispatch: Dispatch, path: Path) -> None:
        self.dispatch = dispatch
        self.path = path
        self.connections = 0
        self._large_frames = anyio.Semaphore(2)
        self._uid = os.getuid()

    async def listen(self) -> anyio.abc.SocketListener:
        """Bind the socket (0600). The caller holds the single-instance lock already:
        anyio removes an existing socket file even if another daemon still serves it."""
        return await anyio.create_unix_listener(self.path, mode=0o600)

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
        reply = await self.dispatch(request)
        if isinstance(reply, Replied):
            await self._send(stream, reply.reply)
            await self._stream_events(stream, reader, reply, request.id)
            return False  # an event stream ends with its connection
        await self._send(stream, reply)
        return True

    async def _stream_events(
        self,
        stream: SocketStream,
        reader: BufferedByteReceiveStream,
        replied: Replied,
        request_id: int | str | None,
    ) -> None:
        """Send events until the client goes away (any byte or EOF from it ends the stream)."""
        try:
            async with anyio.create_task_group() as tg:

                async def watch_close() -> None:
                    with contextlib.suppress(
                        anyio.EndOfStream,
                        anyio.BrokenResourceError,
                        anyio.ClosedResourceError,
                        ConnectionError,
                    ):
                        await reader.receive(1)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_close)
                async for event in replied.stream.events:
                    # Events are shared by every subscriber: each gets its own copy with its id.
                    await self._send(stream, msgspec.structs.replace(event, id=request_id))
        finally:
            replied.stream.close()

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
