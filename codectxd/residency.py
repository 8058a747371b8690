"""Which collections are in use, and which have rested long enough to leave the engine's memory.

Milvus Lite holds every loaded collection in its process: ~60 MB for a small one, hundreds for a
large one, whether or not anyone searches it (docs/decisions.md §12.2). A collection nobody used
for a while is released and loaded again by its next search or write. How long "a while" is
follows what the reload costs: a collection that loads quickly goes after the minimum idle time
(`daemon.release_idle_s`), one that takes k times longer stays k times longer — with the
default minute, a repository of 117k chunks (~10 s to load) stays ~40 minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: A load this quick (a small repository: ~0.1 s) earns the minimum idle time; a slower one
#: stays proportionally longer.
QUICK_LOAD_S = 0.25


#: How long a drop waits for the calls reading the collection to end before it drops anyway
#: (their Milvus calls then fail: a search that hangs this long has failed already).
DRAIN_TIMEOUT_S = 60.0


@dataclass(slots=True)
class _Use:
    users: dict[int, int] = field(default_factory=dict)  # thread → its calls in progress
    last_used: float = field(default_factory=time.monotonic)
    load_s: float = 0.0  # how long the collection's last load took
    dropping: bool = False  # a drop waits for the calls in progress; new ones wait for it


class Residency:
    """Thread-safe bookkeeping of collection use; the store acts on it."""

    def __init__(self) -> None:
        self._uses: dict[str, _Use] = {}
        self._guard = threading.Condition(threading.Lock())

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Around every call that needs `name` loaded: while any is in progress the collection
        is neither released nor dropped, and its end restarts the idle clock. Enter it before
        checking whether the collection is loaded. A call that starts while `name` is being
        dropped waits for the drop (and then finds no collection); one nested in a call of the
        same thread does not wait (the drop waits for the outer one)."""
        me = threading.get_ident()
        with self._guard:
            while True:
                use = self._uses.setdefault(name, _Use())
                if not use.dropping or me in use.users:
                    break
                self._guard.wait()
            use.users[me] = use.users.get(me, 0) + 1
        try:
            yield
        finally:
            with self._guard:
                if use.users[me] == 1:
                    del use.users[me]
                else:
                    use.users[me] -= 1
                use.last_used = time.monotonic()
                self._guard.notify_all()

    @contextmanager
    def dropping(self, name: str, timeout_s: float = DRAIN_TIMEOUT_S) -> Iterator[None]:
        """Around dropping `name`: waits until no call uses it (new calls wait meanwhile, and
        for the drop); afterwards its bookkeeping is gone. Not from inside a call that uses
        `name` (it would wait for itself)."""
        deadline = time.monotonic() + timeout_s
        with self._guard:
            while (use := self._uses.setdefault(name, _Use())).dropping:
                self._guard.wait()  # another drop of the same name: after it
            use.dropping = True
            while use.users and (left := deadline - time.monotonic()) > 0:
                self._guard.wait(left)
        try:
            yield
        finally:
            with self._guard:
                use.dropping = False
                if self._uses.get(name) is use:
                    del self._uses[name]
                self._guard.notify_all()

    def wait_dropping(self, name: str, timeout_s: float) -> bool:
        """Wait until a drop of `name` has begun (for tests: an observable event)."""
        with self._guard:
            return self._guard.wait_for(
                lambda: (use := self._uses.get(name)) is not None and use.dropping, timeout_s
            )

    def loaded(self, name: str, seconds: float) -> None:
        with self._guard:
            use = self._uses.setdefault(name, _Use())
            use.load_s = seconds
            use.last_used = time.monotonic()

    def idle_after(self, name: str, min_idle_s: float) -> float:
        """Seconds without use after which `name` is released."""
        with self._guard:
            use = self._uses.get(name)
            return _idle_after(use, min_idle_s)

    def take_idle(self, name: str, min_idle_s: float, forget: Callable[[], object]) -> bool:
        """When `name` is unused and has rested long enough, call `forget` (which makes every
        later call load it again) while no call can start using it, and return True."""
        now = time.monotonic()
        with self._guard:
            use = self._uses.get(name)
            if use is None or use.users or use.dropping:
                return False
            if now - use.last_used < _idle_after(use, min_idle_s):
                return False
            forget()
            return True


def _idle_after(use: _Use | None, min_idle_s: float) -> float:
    return min_idle_s * max(1.0, (use.load_s if use else 0.0) / QUICK_LOAD_S)
