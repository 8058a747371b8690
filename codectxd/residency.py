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


@dataclass(slots=True)
class _Use:
    users: int = 0  # calls in progress
    last_used: float = field(default_factory=time.monotonic)
    load_s: float = 0.0  # how long the collection's last load took


class Residency:
    """Thread-safe bookkeeping of collection use; the store acts on it."""

    def __init__(self) -> None:
        self._uses: dict[str, _Use] = {}
        self._guard = threading.Lock()

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Around every call that needs `name` loaded: while any is in progress the collection
        is not released, and its end restarts the idle clock. Enter it before checking whether
        the collection is loaded."""
        with self._guard:
            use = self._uses.setdefault(name, _Use())
            use.users += 1
        try:
            yield
        finally:
            with self._guard:
                use.users -= 1
                use.last_used = time.monotonic()

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
            if use is None or use.users:
                return False
            if now - use.last_used < _idle_after(use, min_idle_s):
                return False
            forget()
            return True

    def drop(self, name: str) -> None:
        with self._guard:
            self._uses.pop(name, None)


def _idle_after(use: _Use | None, min_idle_s: float) -> float:
    return min_idle_s * max(1.0, (use.load_s if use else 0.0) / QUICK_LOAD_S)
