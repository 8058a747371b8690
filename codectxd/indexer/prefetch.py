"""Files read and split one group ahead, in a helper thread.

A group's store write is mostly the engine's work, in its own process (Milvus Lite), while
reading and splitting the next group is ours: side by side they overlap instead of taking
turns (a first index of this repository: 0.9 s of splitting beside 1.9 s of writes). The
helper only computes (`work` must not write anything): every outcome is handed back, in the
plan's order, to the job's thread, which records it as it would have without the helper.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Prefetch(Generic[T, R]):
    """`work(item)` for each item, at most `ahead` (by `size`) beyond what was taken."""

    def __init__(
        self,
        items: Iterable[T],
        work: Callable[[T], R],
        size: Callable[[R], int],
        ahead: int,
    ) -> None:
        self.ahead = ahead  # may change between takes (a memory budget asks for less)
        self._items = iter(items)
        self._work = work
        self._size = size
        self._cond = threading.Condition()
        self._ready: deque[tuple[T, R, int]] = deque()
        self._buffered = 0
        self._ended = False
        self._closed = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="codectx-prefetch", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Results computed and not taken yet."""
        with self._cond:
            return len(self._ready)

    def take(self) -> tuple[T, R] | None:
        """The next item and its result, in order; None when there are no more."""
        with self._cond:
            while not self._ready and not self._ended:
                self._cond.wait()
            if self._ready:
                item, result, size = self._ready.popleft()
                self._buffered -= size
                self._cond.notify_all()
                return item, result
            if self._failure is not None:
                raise self._failure
            return None

    def close(self) -> None:
        """Stop after the item in hand (the helper ends on its own; nothing waits for it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            for item in self._items:
                with self._cond:
                    while self._buffered >= max(1, self.ahead) and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                result = self._work(item)
                size = self._size(result)
                with self._cond:
                    self._ready.append((item, result, size))
                    self._buffered += size
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - raised again on the taking thread
            self._failure = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
