"""Fan-out of daemon events (progress, state changes, file errors) to subscribed clients.

Publishing never blocks: a subscriber that does not keep up loses events (counted) rather than
slowing the daemon down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

log = logging.getLogger(__name__)

BUFFER_EVENTS = 512


@dataclass(eq=False)
class Subscription:
    repos: frozenset[str]  # empty: every repo
    send: ObjectSendStream[tuple[str, dict[str, Any]]]
    receive: ObjectReceiveStream[tuple[str, dict[str, Any]]]
    dropped: int = field(default=0)


class EventBus:
    """Must be used from the event loop thread (threads go through anyio.from_thread)."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, repos: frozenset[str]) -> Subscription:
        send, receive = anyio.create_memory_object_stream[tuple[str, dict[str, Any]]](BUFFER_EVENTS)
        sub = Subscription(repos, send, receive)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.send.close()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        repo = data.get("repo")
        for sub in list(self._subs):
            if sub.repos and repo not in sub.repos:
                continue
            try:
                sub.send.send_nowait((event, data))
            except anyio.WouldBlock:
                sub.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
