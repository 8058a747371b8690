"""Concurrent calls answered together: one batch for whoever is waiting, never a timer.

Embedding 16 queries costs little more than embedding one, and a Milvus search of 4–8 query
vectors (or BM25 texts) at once costs each of them about half of searching it alone
(docs/decisions.md §12.1). When many clients search at once, a call that arrives while a
batch runs waits for it and then goes with every other waiting call as the next batch; a call
that arrives alone runs at once, so a single client never waits.

Leadership passes along the queue: the thread that finds nobody running a batch runs one
holding its own item, then hands over to the oldest item still waiting (whose thread runs the
next batch, its own included) — no thread serves other threads' calls after its own is done.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Batcher"]


@dataclass(slots=True)
class _Slot(Generic[T]):
    item: T
    ready: threading.Event = field(default_factory=threading.Event)
    result: object = None
    done: bool = False
    error: BaseException | None = None
    lead: bool = False  # woken to run the next batch, not with a result


class Batcher(Generic[T, R]):
    """Runs `run(items) -> one result per item, in order` for the waiting items, at most
    `max_batch` at once."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 16) -> None:
        self._run = run
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T]] = []
        self._busy = False  # a batch is running
        self.batches = 0  # counters for tests and status
        self.items = 0

    @property
    def waiting(self) -> int:
        """Items waiting for a batch (the running one's not counted)."""
        with self._lock:
            return len(self._waiting)

    @property
    def idle(self) -> bool:
        """No batch running and none waiting."""
        with self._lock:
            return not self._busy and not self._waiting

    def submit(self, item: T) -> R:
        """The result for `item` (raises what its batch raised)."""
        slot: _Slot[T] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            leading = not self._busy
            self._busy = True
        if not leading:
            slot.ready.wait()
            if not slot.lead:
                return self._result(slot)
        self._run_batch()
        return self._result(slot)

    def _run_batch(self) -> None:
        with self._lock:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
        try:
            results = self._run([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
            for slot, result in zip(batch, results, strict=True):
                slot.result, slot.done = result, True
        except BaseException as exc:  # noqa: BLE001 - every item of the batch hears of it
            for slot in batch:
                slot.error = exc
        with self._lock:
            self.batches += 1
            self.items += len(batch)
            if self._waiting:
                successor = self._waiting[0]
                successor.lead = True
                successor.ready.set()
            else:
                self._busy = False
        for slot in batch:
            slot.lead = False
            slot.ready.set()

    @staticmethod
    def _result(slot: _Slot[T]) -> R:
        if slot.error is not None:
            # Each caller raises its own copy: one exception raised in many threads at once
            # would gather all their tracebacks (and keep their frames alive).
            try:
                own = copy.copy(slot.error)
            except Exception:  # noqa: BLE001 - an exception that cannot be copied: the original
                raise slot.error from None
            raise own.with_traceback(None) from slot.error
        assert slot.done
        return cast(R, slot.result)
