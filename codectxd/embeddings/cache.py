"""A persistent embedding cache shared by all repositories: (model identity, text hash) → vector.

A branch switch, a revert, or re-indexing after `clear` finds its vectors here and never pays
the provider twice for the same text. The same database keeps the tokens sent per UTC day and
provider identity, which the spend guard (EMBEDDING_MAX_TOKENS_PER_DAY) reads after a restart.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codectxd.errors import StoreError
from codectxd.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, identity TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, identity)
) WITHOUT ROWID;
"""


def text_key(text: str) -> bytes:
    """16-byte blake2b of the exact text that is sent to the model."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EmbeddingCache:
    """SQLite-backed, thread-safe; vectors stored as raw float32 bytes."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, "embedding cache")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_many(
        self, model: str, keys: Sequence[bytes], dimension: int
    ) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = list(keys[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE model=? AND key IN ({marks})",
                    [model, *batch],
                ).fetchall()
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape[0] == dimension:
                        found[key] = vector
        return found

    def put_many(self, model: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        if not items:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                    [
                        (model, key, np.asarray(vec, dtype=np.float32).tobytes())
                        for key, vec in items
                    ],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"embedding cache write failed: {exc}") from None

    def add_usage(self, day: str, identity: str, tokens: int, requests: int = 1) -> int:
        """Add `tokens` sent to `identity` on UTC `day` (YYYY-MM-DD); returns the day's total."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO usage (day, identity, tokens, requests) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (day, identity) DO UPDATE SET "
                    "tokens = tokens + excluded.tokens, requests = requests + excluded.requests",
                    (day, identity, int(tokens), int(requests)),
                )
                row = self._db.execute(
                    "SELECT tokens FROM usage WHERE day=? AND identity=?", (day, identity)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"embedding usage write failed: {exc}") from None
        return int(row[0]) if row else 0

    def usage(self, day: str, identity: str) -> int:
        """Tokens sent to `identity` on UTC `day` (0 when none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT tokens FROM usage WHERE day=? AND identity=?", (day, identity)
            ).fetchone()
        return int(row[0]) if row else 0
