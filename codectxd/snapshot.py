"""The persisted per-file state of every index: what is in the store, and what is not yet.

A file is recorded `indexed` (with size, mtime_ns, content hash) only after its chunks are in the
store; before the store is touched for a file it is recorded `dirty`. After a crash, anything
`dirty` (or changed on disk) is re-processed: delete-by-path then insert, which is idempotent.
Every path that has rows in the store therefore has a row here.

An indexed file's `dense` says whether its chunks carry vectors yet: the first phase of an
index stores chunks for keyword search only (`WAITING`), the second embeds them (`EMBEDDED`);
files of a kind that is never embedded (data, generated) stay `LEXICAL`.

SQLite in WAL mode: each state change is one small transaction, never a rewrite of the whole
snapshot (that would make indexing quadratic).
"""

from __future__ import annotations

import array
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from codectxd.errors import StoreError
from codectxd.sqlite import open_database

INDEXED, DIRTY, SKIPPED = "indexed", "dirty", "skipped"
#: `dense` of an indexed file: its chunks' vectors are stored / still to come / never wanted.
EMBEDDED, WAITING, LEXICAL = 1, 0, 2
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
    dense INTEGER NOT NULL DEFAULT 1,
    kind TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (coll, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    coll TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (coll, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS definitions (
    coll TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    qualified TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    def_line INTEGER NOT NULL DEFAULT 0,
    signature TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (coll, name, path, start_line, qualified)
) WITHOUT ROWID;
DROP INDEX IF EXISTS definitions_by_path;
CREATE INDEX IF NOT EXISTS definitions_by_file ON definitions (coll, path, start_line);
CREATE TABLE IF NOT EXISTS occurrences (
    coll TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    positions BLOB NOT NULL,
    owners TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (coll, name, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS occurrences_by_path ON occurrences (coll, path);
CREATE TABLE IF NOT EXISTS chunks (
    coll TEXT NOT NULL,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (coll, path, start_line, id)
) WITHOUT ROWID;
"""
#: The state database's `user_version` since definitions come from the whole syntax tree and
#: identifier occurrences are kept; an older database is upgraded on open.
SYMBOLS_VERSION = 3
#: The definitions table's columns added in version 2 (before, it held the chunks' symbols).
_DEFINITION_COLUMNS = {
    "def_line": "INTEGER NOT NULL DEFAULT 0",
    "signature": "TEXT NOT NULL DEFAULT ''",
    "language": "TEXT NOT NULL DEFAULT ''",
}
DEFINITION_FIELDS = (
    "name, path, start_line, end_line, qualified, kind, def_line, signature, language"
)


#: Columns added since the first version, with their definitions (added on open).
_ADDED_COLUMNS = {
    "dense": "INTEGER NOT NULL DEFAULT 1",  # files indexed before two phases were embedded
    "kind": "TEXT NOT NULL DEFAULT ''",
}
_FIELDS = "path, size, mtime_ns, hash, state, chunks, reason, dense, kind"


@dataclass(slots=True, frozen=True)
class FileState:
    path: str
    size: int
    mtime_ns: int
    hash: str
    state: str
    chunks: int
    reason: str
    dense: int = EMBEDDED
    kind: str = ""


@dataclass(slots=True, frozen=True)
class IndexedFile:
    path: str
    size: int
    mtime_ns: int
    hash: str
    chunks: int
    dense: int = EMBEDDED
    kind: str = ""


@dataclass(slots=True, frozen=True)
class Definition:
    """A definition (function, class, method...) in an indexed file; lines 1-based."""

    name: str  # the last part of `qualified`
    path: str
    start_line: int  # decorators and export keywords included
    end_line: int
    qualified: str  # `Class.method`
    kind: str = ""
    def_line: int = 0  # the `def` / `class` line itself
    signature: str = ""  # that line, stripped
    language: str = ""


@dataclass(slots=True, frozen=True)
class FileSymbols:
    """One file's symbols as stored: its definitions, and each identifier's occurrences:
    (line, column, is_definition) triples packed into unsigned 32-bit integers
    (`pack_positions`) and the enclosing definition of each, joined by NUL."""

    definitions: Sequence[Definition] = ()
    occurrences: Mapping[str, tuple[bytes, str]] = field(default_factory=dict)


def pack_positions(flat: Sequence[int]) -> bytes:
    return array.array("I", flat).tobytes()


def unpack_positions(blob: bytes) -> list[tuple[int, int, bool]]:
    flat = array.array("I")
    flat.frombytes(blob)
    return [(flat[i], flat[i + 1], bool(flat[i + 2])) for i in range(0, len(flat) - 2, 3)]


#: (start_line, end_line, id) of a chunk stored for a file.
ChunkSpan = tuple[int, int, str]


def group_spans(
    chunks: Iterable[tuple[str, int, int, str]], paths: Iterable[str] = ()
) -> dict[str, list[ChunkSpan]]:
    """(path, start_line, end_line, id) of chunks → each file's spans; `paths` without a
    chunk get an empty list (their old spans are cleared)."""
    spans: dict[str, list[ChunkSpan]] = {p: [] for p in paths}
    for path, first, last, chunk_id in chunks:
        spans.setdefault(path, []).append((first, last, chunk_id))
    return spans


@dataclass(slots=True, frozen=True)
class ChunkCounts:
    """Chunks of indexed files by their dense side."""

    embedded: int = 0
    waiting: int = 0
    lexical: int = 0  # never embedded (data, generated)

    @property
    def fraction(self) -> float:
        """How much of what should be embedded is (1.0 when nothing should be)."""
        wanted = self.embedded + self.waiting
        return round(self.embedded / wanted, 4) if wanted else 1.0


class SymbolLookups:
    """The symbol table's and chunk spans' read side (search, `symbol`, `references`)."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def chunk_spans(self, coll: str, paths: Iterable[str]) -> dict[str, list[ChunkSpan]]:
        """The stored chunks of these files, in line order (files indexed before the spans
        were recorded have none)."""
        wanted = sorted(set(paths))
        out: dict[str, list[ChunkSpan]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                rows = self._db.execute(
                    f"SELECT path, start_line, end_line, id FROM chunks WHERE coll=? AND path "
                    f"IN ({', '.join('?' * len(part))}) ORDER BY path, start_line",
                    (coll, *part),
                ).fetchall()
                for path, first, last, chunk_id in rows:
                    out.setdefault(path, []).append((first, last, chunk_id))
        return out

    def definitions(
        self, coll: str, names: Iterable[str], per_name: int = 20, limit: int = 200
    ) -> list[Definition]:
        """The definitions with one of these names (exactly; case-sensitive), in the order the
        names are given, at most `per_name` of each (a name defined everywhere, `__init__` or
        `get`, cannot crowd out the rarer names after it) and `limit` in all."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {DEFINITION_FIELDS} FROM (SELECT *, ROW_NUMBER() OVER "
                f"(PARTITION BY name ORDER BY path, start_line) AS nth FROM definitions "
                f"WHERE coll=? AND name IN ({marks})) WHERE nth <= ?",
                (coll, *wanted, per_name),
            ).fetchall()
        order = {name: i for i, name in enumerate(wanted)}
        found = sorted((Definition(*row) for row in rows), key=lambda d: order[d.name])
        return found[:limit]

    def select_definitions(
        self,
        coll: str,
        where: str,
        args: Sequence[object],
        order: str,
        limit: int,
        order_args: Sequence[object] = (),
    ) -> list[Definition]:
        """Definitions of `coll` matching an SQL condition and order over the table's columns
        (built by `codectxd.symbols`; user text only ever comes in as parameters)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {DEFINITION_FIELDS} FROM definitions WHERE coll=? AND ({where}) "
                f"ORDER BY {order} LIMIT ?",
                (coll, *args, *order_args, limit),
            ).fetchall()
        return [Definition(*row) for row in rows]

    def occurrences(self, coll: str, name: str) -> list[tuple[str, bytes, str]]:
        """(path, packed positions, owners) of every file where the identifier `name` occurs."""
        with self._lock:
            return self._db.execute(
                "SELECT path, positions, owners FROM occurrences WHERE coll=? AND name=? "
                "ORDER BY path",
                (coll, name),
            ).fetchall()


class Snapshot(SymbolLookups):
    """Per-collection file states in one SQLite database (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, "index state database")
        try:
            present = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            for column, definition in _ADDED_COLUMNS.items():
                if column not in present:  # a state database from an older version
                    self._db.execute(f"ALTER TABLE files ADD COLUMN {column} {definition}")
            _upgrade_symbols(self._db)
            # The embedding backlog is read in this order, a group at a time.
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS files_backlog ON files (coll, dense, mtime_ns)"
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot upgrade the index state database {path}: {exc}") from None
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
            rows = self._db.execute(f"SELECT {_FIELDS} FROM files WHERE {where}", args).fetchall()
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

    def mark_indexed(
        self,
        coll: str,
        files: Iterable[IndexedFile],
        symbols: Mapping[str, FileSymbols] | None = None,
        chunks: Mapping[str, Sequence[ChunkSpan]] | None = None,
    ) -> None:
        """Record files indexed; with `symbols` ({path: its symbols}), replace those files'
        definitions and occurrences in the same transaction (they always match the chunks
        stored), and with `chunks` the spans and ids of their stored chunks."""
        now = time.time()
        with self._tx() as db:
            if symbols is not None:
                _replace_symbols(db, coll, symbols)
            if chunks is not None:
                _replace_chunks(db, coll, chunks)
            db.executemany(
                "INSERT OR REPLACE INTO files (coll, path, size, mtime_ns, hash, state, chunks, "
                "reason, updated, dense, kind) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
                [
                    (coll, f.path, f.size, f.mtime_ns, f.hash, INDEXED, f.chunks, now, f.dense,
                     f.kind)
                    for f in files
                ],
            )  # fmt: skip

    def record_chunks(self, coll: str, chunks: Mapping[str, Sequence[ChunkSpan]]) -> None:
        """Set these files' chunk spans (a collection indexed before they were recorded)."""
        with self._tx() as db:
            _replace_chunks(db, coll, chunks)

    def mark_skipped(self, coll: str, items: Iterable[tuple[str, int, int, str]]) -> None:
        """(path, size, mtime_ns, reason): files that are not indexed and why, kept so `status`
        reports them across restarts. A content skip (binary, minified) keeps the file's stat,
        so an unchanged file is not read again; a scan skip (secret, too large, symlink...)
        stores -1 and is decided afresh by every scan."""
        now = time.time()
        items = list(items)
        with self._tx() as db:
            _replace_symbols(db, coll, {item[0]: _NO_SYMBOLS for item in items})
            _replace_chunks(db, coll, {item[0]: () for item in items})
            db.executemany(
                "INSERT OR REPLACE INTO files (coll, path, size, mtime_ns, hash, state, chunks, "
                "reason, updated) VALUES (?, ?, ?, ?, '', ?, 0, ?, ?)",
                [(coll, p, size, mtime, SKIPPED, reason, now) for p, size, mtime, reason in items],
            )

    def note_failure(self, coll: str, paths: Iterable[str], reason: str) -> None:
        """Indexed files whose vectors could not be made (shown in status; the second phase
        tries again, and a success clears the reason)."""
        with self._tx() as db:
            db.executemany(
                "UPDATE files SET reason=?, updated=? WHERE coll=? AND path=? AND state=?",
                [(reason[:500], time.time(), coll, p, INDEXED) for p in paths],
            )

    def remove(self, coll: str, paths: Iterable[str]) -> None:
        paths = list(paths)
        with self._tx() as db:
            _replace_symbols(db, coll, {p: _NO_SYMBOLS for p in paths})
            _replace_chunks(db, coll, {p: () for p in paths})
            db.executemany("DELETE FROM files WHERE coll=? AND path=?", [(coll, p) for p in paths])

    def clear(self, coll: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE coll=?", (coll,))
            db.execute("DELETE FROM meta WHERE coll=?", (coll,))
            db.execute("DELETE FROM definitions WHERE coll=?", (coll,))
            db.execute("DELETE FROM occurrences WHERE coll=?", (coll,))
            db.execute("DELETE FROM chunks WHERE coll=?", (coll,))

    def counts(self, coll: str) -> dict[str, int]:
        """Files per state, plus "chunks" (of indexed files) and "failed" (files with an
        error: left dirty after a provider or store failure, or indexed for keyword search
        whose embedding failed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*), SUM(chunks), SUM(reason != '') FROM files "
                "WHERE coll=? GROUP BY state",
                (coll,),
            ).fetchall()
        out = {state: count for state, count, _, _ in rows}
        out["chunks"] = sum(chunks or 0 for state, _, chunks, _ in rows if state == INDEXED)
        out["failed"] = sum(errs or 0 for state, _, _, errs in rows if state in (DIRTY, INDEXED))
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
                f"SELECT {_FIELDS} FROM files "
                "WHERE coll=? AND reason != '' AND reason != 'unsupported' "
                "ORDER BY updated DESC, path LIMIT ?",
                (coll, limit),
            ).fetchall()
        return [FileState(*row) for row in rows]

    def retarget(self, coll: str, lexical_only: Iterable[str]) -> None:
        """Files of the `lexical_only` kinds never wait for vectors; files of other kinds that
        were lexical-only (the setting changed) wait for them now."""
        kinds = tuple(lexical_only)
        marks = ", ".join("?" * len(kinds)) or "''"
        with self._tx() as db:
            db.execute(
                f"UPDATE files SET dense=? WHERE coll=? AND state=? AND dense=? "
                f"AND kind IN ({marks})",
                (LEXICAL, coll, INDEXED, WAITING, *kinds),
            )
            db.execute(
                f"UPDATE files SET dense=? WHERE coll=? AND state=? AND dense=? "
                f"AND kind NOT IN ({marks})",
                (WAITING, coll, INDEXED, LEXICAL, *kinds),
            )

    def chunk_counts(self, coll: str) -> ChunkCounts:
        with self._lock:
            rows = self._db.execute(
                "SELECT dense, SUM(chunks) FROM files WHERE coll=? AND state=? GROUP BY dense",
                (coll, INDEXED),
            ).fetchall()
        by = {dense: int(chunks or 0) for dense, chunks in rows}
        return ChunkCounts(by.get(EMBEDDED, 0), by.get(WAITING, 0), by.get(LEXICAL, 0))

    def kind_counts(self, coll: str, dense: int) -> dict[str, int]:
        """Indexed files per kind, of those whose dense side is `dense`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, COUNT(*) FROM files WHERE coll=? AND state=? AND dense=? "
                "GROUP BY kind",
                (coll, INDEXED, dense),
            ).fetchall()
        return {kind: count for kind, count in rows}

    def waiting(self, coll: str, limit: int, under: Iterable[str] = ()) -> list[FileState]:
        """Indexed files whose chunks wait for their vectors, in the order to embed them:
        those under the directories `under` first, then the most recently modified."""
        found: dict[str, FileState] = {}
        with self._lock:
            for directory in under:
                rows = self._db.execute(
                    f"SELECT {_FIELDS} FROM files WHERE coll=? AND path >= ? AND path < ? "
                    "AND state=? AND dense=? ORDER BY mtime_ns DESC LIMIT ?",
                    (coll, directory + "/", directory + "0", INDEXED, WAITING, limit),
                ).fetchall()
                found.update((row[0], FileState(*row)) for row in rows)
                if len(found) >= limit:
                    return list(found.values())[:limit]
            rows = self._db.execute(
                f"SELECT {_FIELDS} FROM files WHERE coll=? AND state=? AND dense=? "
                "ORDER BY mtime_ns DESC LIMIT ?",
                (coll, INDEXED, WAITING, limit),
            ).fetchall()
        for row in rows:
            if len(found) >= limit:
                break
            found.setdefault(row[0], FileState(*row))
        return list(found.values())

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


def _replace_symbols(db: sqlite3.Connection, coll: str, symbols: Mapping[str, FileSymbols]) -> None:
    """Inside a transaction: the definitions and occurrences of these paths become exactly the
    given ones."""
    paths = [(coll, p) for p in symbols]
    db.executemany("DELETE FROM definitions WHERE coll=? AND path=?", paths)
    db.executemany("DELETE FROM occurrences WHERE coll=? AND path=?", paths)
    db.executemany(
        "INSERT INTO occurrences (coll, name, path, positions, owners) VALUES (?, ?, ?, ?, ?)",
        [
            (coll, name, path, blob, owners)
            for path, file in symbols.items()
            for name, (blob, owners) in file.occurrences.items()
        ],
    )
    db.executemany(
        f"INSERT OR REPLACE INTO definitions (coll, {DEFINITION_FIELDS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                coll,
                d.name,
                d.path,
                d.start_line,
                d.end_line,
                d.qualified,
                d.kind,
                d.def_line,
                d.signature,
                d.language,
            )
            for file in symbols.values()
            for d in file.definitions
        ],
    )


def _replace_chunks(
    db: sqlite3.Connection, coll: str, chunks: Mapping[str, Sequence[ChunkSpan]]
) -> None:
    """Inside a transaction: these paths' chunk spans become exactly the given ones."""
    db.executemany("DELETE FROM chunks WHERE coll=? AND path=?", [(coll, p) for p in chunks])
    db.executemany(
        "INSERT OR REPLACE INTO chunks (coll, path, start_line, end_line, id) "
        "VALUES (?, ?, ?, ?, ?)",
        [(coll, path, a, b, i) for path, spans in chunks.items() for a, b, i in spans],
    )


def _upgrade_symbols(db: sqlite3.Connection) -> None:
    """A database from before `SYMBOLS_VERSION` (definitions from chunk symbols, no
    occurrences): add the columns, forget those symbols and the indexed files' stats, so the
    next sync reads every file once again (its rows stay: their ids do not change) and records
    its symbols."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SYMBOLS_VERSION:
        return
    present = {row[1] for row in db.execute("PRAGMA table_info(definitions)")}
    db.execute("BEGIN IMMEDIATE")  # all of it or nothing: a crash here upgrades again
    try:
        for column, definition in _DEFINITION_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE definitions ADD COLUMN {column} {definition}")
        db.execute("DELETE FROM definitions")
        if "owners" not in {row[1] for row in db.execute("PRAGMA table_info(occurrences)")}:
            db.execute("ALTER TABLE occurrences ADD COLUMN owners TEXT NOT NULL DEFAULT ''")
        db.execute("DELETE FROM occurrences")
        db.execute("UPDATE files SET mtime_ns=?, hash='' WHERE state=?", (NO_STAT, INDEXED))
        db.execute(f"PRAGMA user_version={SYMBOLS_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_NO_SYMBOLS = FileSymbols()
