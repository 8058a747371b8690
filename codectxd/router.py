"""One request in, one reply (or a stream) out: version check, params decoding, the handler
from `ROUTES`, a time limit, and the per-request error barrier that turns every failure into
an error reply."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio

from codectx_client import protocol as p
from codectxd.errors import CodectxError
from codectxd.handlers import ROUTES, Context, Stream

log = logging.getLogger(__name__)

# Methods answered while the daemon is still starting (loading its model and registry).
_BEFORE_READY = frozenset({"ping", "shutdown"})


def error_reply(
    request_id: Any, code: str, message: str, data: dict[str, Any] | None = None
) -> p.Reply:
    return p.Reply(
        id=request_id, ok=False, error=p.ErrorInfo(code=code, message=message, data=data)
    )


@dataclass(slots=True)
class Replied:
    """A stream's first reply, and the stream that follows it."""

    reply: p.Reply
    stream: Stream


class Router:
    def __init__(
        self,
        context: Context,
        *,
        ready: anyio.Event,
        exiting: anyio.Event,
        request_timeout_s: float,
    ) -> None:
        self.context = context
        self.ready = ready
        self.exiting = exiting
        self.request_timeout_s = request_timeout_s

    async def dispatch(self, request: p.Request) -> p.Reply | Replied:
        """Run one request's handler; every failure becomes an error reply."""
        reply = await self._dispatch(request)
        ok = reply.reply.ok if isinstance(reply, Replied) else reply.ok
        self.context.metrics.count_request(ok)
        return reply

    async def _dispatch(self, request: p.Request) -> p.Reply | Replied:
        try:
            if request.v != p.PROTOCOL_VERSION:
                return error_reply(
                    request.id,
                    p.ErrorCode.VERSION_MISMATCH,
                    f"protocol version {request.v} is not supported (the daemon speaks "
                    f"{p.PROTOCOL_VERSION}); upgrade the older side",
                    {"protocol": p.PROTOCOL_VERSION},
                )
            params = p.decode_params(request.method, request.params)
            route = ROUTES[request.method]
            if self.exiting.is_set() and request.method != "ping":
                return error_reply(
                    request.id, p.ErrorCode.SHUTTING_DOWN, "the daemon is shutting down"
                )
            timeout = self.request_timeout_s + float(getattr(params, "wait_s", 0.0) or 0.0)
            with anyio.fail_after(timeout):
                if request.method not in _BEFORE_READY:
                    # Until the registry is loaded, repo lookups would wrongly say "unknown".
                    await self.ready.wait()
                result = await route.handler(self.context, params)
            if isinstance(result, Stream):
                return Replied(p.Reply(id=request.id, ok=True, result=result.result), result)
            return p.Reply(id=request.id, ok=True, result=result)
        except p.FrameError as exc:
            return error_reply(request.id, exc.code, str(exc))
        except CodectxError as exc:
            return error_reply(request.id, exc.code, str(exc))
        except TimeoutError:
            message = f"{request.method} did not finish within its time limit"
            if request.method == "subscribe":
                message = "the daemon is still starting; try again"
            return error_reply(request.id, p.ErrorCode.TIMEOUT, message)
        except Exception as exc:  # noqa: BLE001 - the per-request error barrier
            log.exception("%s request failed", request.method)
            return error_reply(
                request.id,
                p.ErrorCode.INTERNAL,
                f"internal error in {request.method}: {type(exc).__name__}: {exc}",
            )
