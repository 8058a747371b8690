"""Opening the daemon's small SQLite databases (index state, embedding cache) one way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from codectxd.errors import StoreError


def open_database(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """A connection in WAL mode, usable from several threads (callers hold their own lock),
    in autocommit mode (callers open explicit transactions), with `schema` applied.

    WAL + synchronous=NORMAL survives a killed process; only power loss can drop the last
    transactions, which the per-file commit protocol redoes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the {what} {path}: {exc}") from None
    return db
