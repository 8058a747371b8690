"""The persisted per-file state of every index: what is in the store, and what is not yet.

A file is recorded `indexed` (with size, mtime_ns, content hash) only after its chunks are in the
store; before the store is touched for a file it is recorded `dirty`. After a crash, anything
`dirty` (or changed on disk) is re-processed: delete-by-path then insert, which is idempotent.
Every path that has rows in the store therefore has a row here.

SQLite in WAL mode: each state change is one small transaction, never a rewrite of the whole
snapshot (that would make indexing quadratic).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codectxd.errors import StoreError
from codectxd.sqlite import open_database

INDEXED, DIRTY, SKIPPED = "indexed", "dirty", "skipped"
#: The stat stored with a scan skip: never equal to a real file's, so it is decided afresh.
NO_STAT = -1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    coll TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT -1,
    mtime_ns INTEGER NOT NULL DEFAULT -1,
    hash TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (coll, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    coll TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (coll, key)
) WITHOUT ROWID;
"""


@dataclass(slots=True, frozen=True)
class FileState:
    path: str
    size: int
    mtime_ns: int
    hash: str
    state: str
    chunks: int
    reason: str


@dataclass(slots=True, frozen=True)
class IndexedFile:
    path: str
    size: int
    mtime_ns: int
    hash: str
    chunks: int


class Snapshot:
    """Per-collection file states in one SQLite database (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, "index state database")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"index state database error: {exc}") from None

    def load(self, coll: str) -> dict[str, FileState]:
        """Every recorded path of a collection (a full sync plans against all of them)."""
        return self._select("coll=?", (coll,))

    def states(self, coll: str, paths: Iterable[str]) -> dict[str, FileState]:
        """The records of these paths (those that have one)."""
        wanted = list(paths)
        out: dict[str, FileState] = {}
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ", ".join("?" * len(batch))
            out.update(self._select(f"coll=? AND path IN ({marks})", (coll, *batch)))
        return out

    def states_under(self, coll: str, directory: str) -> dict[str, FileState]:
        """The records of every path under a directory ('' is the whole repository), read as
        a range of the primary key: a one-directory change never loads the whole snapshot."""
        if not directory:
            return self.load(coll)
        low = directory + "/"
        high = directory + "0"  # "0" sorts right after "/": the range covers "dir/..." only
        return self._select("coll=? AND path >= ? AND path < ?", (coll, low, high))

    def _select(self, where: str, args: tuple[object, ...]) -> dict[str, FileState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, hash, state, chunks, reason FROM files "
                f"WHERE {where}",
                args,
            ).fetchall()
        return {row[0]: FileState(*row) for row in rows}

    def mark_dirty(self, coll: str, paths: Iterable[str], reason: str = "") -> None:
        """Record that the store is about to change (or must change) for these paths."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO files (coll, path, state, reason, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (coll, path) DO UPDATE SET state=excluded.state, "
                "reason=excluded.reason, updated=excluded.updated",
                [(coll, p, DIRTY, reason, now) for p in paths],
            )

    def mark_indexed(self, coll: str, files: Iterable[IndexedFile]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files (coll, path, size, mtime_ns, hash, state, chunks, "
                "reason, updated) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?)",
                [(coll, f.path, f.size, f.mtime_ns, f.hash, INDEXED, f.chunks, now) for f in files],
            )

    def mark_skipped(self, coll: str, items: Iterable[tuple[str, int, int, str]]) -> None:
        """(path, size, mtime_ns, reason): files that are not indexed and why, kept so `status`
        reports them across restarts. A content skip (binary, minified) keeps the file's stat,
        so an unchanged file is not read again; a scan skip (secret, too large, symlink...)
        stores -1 and is decided afresh by every scan."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files (coll, path, size, mtime_ns, hash, state, chunks, "
                "reason, updated) VALUES (?, ?, ?, ?, '', ?, 0, ?, ?)",
                [(coll, p, size, mtime, SKIPPED, reason, now) for p, size, mtime, reason in items],
            )

    def remove(self, coll: str, paths: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM files WHERE coll=? AND path=?", [(coll, p) for p in paths])

    def clear(self, coll: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE coll=?", (coll,))
            db.execute("DELETE FROM meta WHERE coll=?", (coll,))

    def counts(self, coll: str) -> dict[str, int]:
        """Files per state, plus "chunks" (of indexed files) and "failed" (dirty with an
        error: left pending after a provider or store failure)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*), SUM(chunks), SUM(reason != '') FROM files "
                "WHERE coll=? GROUP BY state",
                (coll,),
            ).fetchall()
        out = {state: count for state, count, _, _ in rows}
        out["chunks"] = sum(chunks or 0 for state, _, chunks, _ in rows if state == INDEXED)
        out["failed"] = sum(errs or 0 for state, _, _, errs in rows if state == DIRTY)
        return out

    def skip_counts(self, coll: str) -> dict[str, int]:
        """Skipped files per reason code (the part of `reason` before any ': detail')."""
        with self._lock:
            rows = self._db.execute(
                "SELECT substr(reason, 1, instr(reason || ':', ':') - 1) AS code, COUNT(*) "
                "FROM files WHERE coll=? AND state=? GROUP BY code",
                (coll, SKIPPED),
            ).fetchall()
        return {code: count for code, count in rows}

    def problems(self, coll: str, limit: int = 50) -> list[FileState]:
        """Files skipped with a reason or left dirty with an error, newest first. Files of an
        unsupported type are counted (`skip_counts`), not listed: there can be thousands."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, hash, state, chunks, reason FROM files "
                "WHERE coll=? AND reason != '' AND reason != 'unsupported' "
                "ORDER BY updated DESC, path LIMIT ?",
                (coll, limit),
            ).fetchall()
        return [FileState(*row) for row in rows]

    def get_meta(self, coll: str, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM meta WHERE coll=? AND key=?", (coll, key)
            ).fetchone()
        return row[0] if row else None

    def set_meta(self, coll: str, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (coll, key, value) VALUES (?, ?, ?)",
                (coll, key, value),
            )
