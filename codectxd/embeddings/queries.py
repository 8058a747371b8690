"""Search queries: recent vectors kept, concurrent queries embedded together.

A local model embeds 16 short queries in ~27 ms and one in ~5 ms (2 cores, bge-small int8:
1.7 ms a query instead of 4.9). When many clients search at once, each query that arrives while
another is being embedded waits for it and then goes with every other waiting query as one
batch; a query that arrives alone runs at once, so a single client never waits
(`codectxd.batching`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from codectxd.batching import Batcher

__all__ = ["QueryBatcher", "RecentQueries"]


class QueryBatcher(Batcher[str, np.ndarray]):
    """Runs `embed(texts) -> (len(texts), dimension)` for waiting queries, at most
    `max_batch` at once."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], max_batch: int = 16):
        super().__init__(lambda texts: list(embed(texts)), max_batch)

    def embed(self, text: str) -> np.ndarray:
        """The vector of `text` (raises what the embedding raised)."""
        return self.submit(text)

    @property
    def queries(self) -> int:
        return self.items


class RecentQueries:
    """The vectors of the last `size` distinct queries (an agent repeats its searches)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        with self._lock:
            self._vectors[text] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
