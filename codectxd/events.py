"""Fan-out of daemon events (progress, state changes, file errors) to subscribed clients.

Publishing never blocks: a subscriber that does not keep up loses events (counted) rather than
slowing the daemon down. Use from the event loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from codectx_client import protocol as p

BUFFER_EVENTS = 512


@dataclass(eq=False)
class Subscription:
    repos: frozenset[str]  # empty: every repo
    send: MemoryObjectSendStream[p.Event]
    receive: MemoryObjectReceiveStream[p.Event]
    dropped: int = field(default=0)


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, repos: frozenset[str]) -> Subscription:
        send, receive = anyio.create_memory_object_stream[p.Event](BUFFER_EVENTS)
        sub = Subscription(repos, send, receive)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.send.close()

    def publish(self, event: p.Event) -> None:
        repo = event.data.repo
        for sub in list(self._subs):
            if sub.repos and repo not in sub.repos:
                continue
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                sub.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


class RepoEvents:
    """Builds and publishes one repository's events."""

    def __init__(self, bus: EventBus, repo: str) -> None:
        self.bus = bus
        self.repo = repo
        self._embedding_at = 0.0

    def state(self, state: str, collection: str | None = None) -> None:
        self.bus.publish(
            p.StateEvent(data=p.StateData(repo=self.repo, state=state, collection=collection))
        )

    def embedding(self, progress: p.EmbeddingProgress, every_s: float = 1.0) -> None:
        """The second phase went on (at most one event every `every_s`)."""
        now = time.monotonic()
        if now - self._embedding_at < every_s:
            return
        self._embedding_at = now
        data = p.EmbeddingData(
            repo=self.repo,
            chunks_embedded=progress.chunks_embedded,
            chunks_total=progress.chunks_total,
            chunks_per_s=progress.chunks_per_s,
            eta_s=progress.eta_s,
        )
        self.bus.publish(p.EmbeddingEvent(data=data))

    def error(self, message: str) -> None:
        self.bus.publish(p.ErrorEvent(data=p.RepoErrorData(repo=self.repo, message=message)))

    def synced(
        self,
        summary: p.SyncSummary,
        errors: list[tuple[str, str]],
        state: str,
        embedded: float,
    ) -> None:
        """A sync finished: the files it left pending (first 20), then its counts."""
        for path, message in errors[:20]:
            data = p.FileErrorData(repo=self.repo, path=path, message=message)
            self.bus.publish(p.FileErrorEvent(data=data))
        synced = p.SyncedData(
            repo=self.repo,
            indexed=summary.indexed,
            removed=summary.removed,
            skipped=summary.skipped,
            failed=summary.failed,
            seconds=summary.seconds,
            state=state,  # type: ignore[arg-type]
            embedded=embedded,
        )
        self.bus.publish(p.SyncedEvent(data=synced))

    async def follow(self, progress: Callable[[], p.Progress], interval_s: float = 0.25) -> None:
        """Publish `progress()` whenever it changed, at most every `interval_s`, until
        cancelled (a running sync's progress bar)."""
        last: p.Progress | None = None
        while True:
            current = progress()
            if current != last:
                last = current
                data = p.ProgressData(repo=self.repo, **msgspec.structs.asdict(current))
                self.bus.publish(p.ProgressEvent(data=data))
            await anyio.sleep(interval_s)
