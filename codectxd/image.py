"""A large collection's search image: what a search reads from it, on disk, so that searches
are answered at once after a restart, while Milvus Lite loads the collection (~15 s at 117k
rows, and every other request waits behind a load: docs/decisions.md §12.3).

An image holds every row's result fields, dense vector and BM25 term counts, and answers the
two searches and the id / path lookups exactly as the loaded collection would: the dense side
by brute-force inner product over the embedded rows, the lexical side by the BM25 Milvus
computes (k1 1.2, b 0.75, IDF log(1 + (N − n + 0.5) / (n + 0.5)), statistics over the rows,
its `standard` analyzer's tokens, which for our lexical text are its runs of letters and
digits), scores rounded to float32 as Milvus returns them.

It is written when a collection has had no write for a while (`Store.write_images`) and is
valid only until the next write: the store invalidates it before writing (a rename, made
durable before Milvus sees the write), so a crash never leaves an image that differs from
the collection. Layout of one image (a directory, renamed into place when complete):
`rows.db` (result fields, the vocabulary and statistics) and `.npy` arrays (vectors, the
embedded flags, row lengths, postings by term).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sqlite3
import threading
import uuid
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bumped when the layout changes: an image of another version is not read.
VERSION = 1
#: Milvus's BM25 parameters (its defaults; the schema sets none).
K1, B = 1.2, 0.75
#: Milvus's `standard` analyzer splits on what is not a letter or digit (`_` included) and
#: lower-cases; our lexical text is ASCII identifiers and numbers.
_TOKEN = re.compile(r"[a-z0-9]+")
#: The fields an image keeps for results (the store's OUTPUT_FIELDS).
RESULT_FIELDS = (
    "id", "path", "language", "start_line", "end_line", "symbol", "kind", "content", "file_kind"
)  # fmt: skip
_SCHEMA = """
CREATE TABLE rows (
    i INTEGER PRIMARY KEY, id TEXT NOT NULL, path TEXT NOT NULL, language TEXT NOT NULL,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, symbol TEXT NOT NULL,
    kind TEXT NOT NULL, content TEXT NOT NULL, file_kind TEXT NOT NULL
);
CREATE TABLE terms (term TEXT PRIMARY KEY, start INTEGER NOT NULL, n INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_INDEXES = ("CREATE INDEX rows_by_id ON rows (id)", "CREATE INDEX rows_by_path ON rows (path)")
_ARRAYS = ("dense", "embedded", "lengths", "docs", "counts")
Rows = list[dict[str, Any]]


def tokens(lexical: str) -> list[str]:
    """The terms Milvus's analyzer makes of a lexical text (a row's or a query's)."""
    return _TOKEN.findall(lexical.lower())


class Image:
    """One collection's image, opened read-only (arrays memory-mapped); thread-safe."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(
            f"file:{directory / 'rows.db'}?mode=ro", uri=True, check_same_thread=False
        )
        self._lock = threading.Lock()
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("version", 0)) != VERSION:
            self._db.close()
            raise ValueError(f"image version {meta.get('version')} (expected {VERSION})")
        self.collection = meta["collection"]
        self.rows = int(meta["rows"])
        self._avg_length = float(meta["avg_length"])
        arrays = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
        self._dense: np.ndarray = arrays["dense"]
        self._embedded: np.ndarray = arrays["embedded"]
        self._lengths: np.ndarray = arrays["lengths"]
        self._docs: np.ndarray = arrays["docs"]
        self._counts: np.ndarray = arrays["counts"]
        # BM25's length normalisation per row, made once (a query reads it for its terms' rows)
        self._norm = K1 * (1 - B + B * np.asarray(self._lengths, np.float64) / self._avg_length)

    def search_dense(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        """The embedded rows by inner product with `vector`, best first (as Milvus's
        `embedded == true` dense search)."""
        scores = self._dense @ np.asarray(vector, dtype=np.float32)
        scores[~self._embedded] = -np.inf
        return self._best(scores, limit, finite=True)

    def search_lexical(self, lexical: str, limit: int) -> list[dict[str, Any]]:
        """The rows sharing a term with the lexical query text, by BM25, best first."""
        wanted = Counter(tokens(lexical))
        if not wanted:
            return []
        with self._lock:
            marks = ",".join("?" * len(wanted))
            found = self._db.execute(
                f"SELECT term, start, n FROM terms WHERE term IN ({marks})", list(wanted)
            ).fetchall()
        scores = np.zeros(self.rows, dtype=np.float64)
        for term, start, n in found:
            docs = self._docs[start : start + n]
            tf = np.asarray(self._counts[start : start + n], dtype=np.float64)
            idf = math.log(1 + (self.rows - n + 0.5) / (n + 0.5))
            scores[docs] += wanted[term] * idf * tf * (K1 + 1) / (tf + self._norm[docs])
        return self._best(scores, limit, finite=False)

    def rows_in(self, field: str, values: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The rows whose `field` ("id" or "path") is one of `values` (score 0)."""
        if field not in ("id", "path"):
            raise ValueError(f"an image looks rows up by id or path, not {field!r}")
        out: list[dict[str, Any]] = []
        with self._lock:
            for start in range(0, len(values), 500):
                batch = list(values[start : start + 500])
                marks = ",".join("?" * len(batch))
                cursor = self._db.execute(
                    f"SELECT {', '.join(RESULT_FIELDS)} FROM rows WHERE {field} IN ({marks}) "
                    f"LIMIT {max(limit - len(out), 0)}",
                    batch,
                )
                out += [dict(zip(RESULT_FIELDS, r, strict=True)) for r in cursor]
        return out

    def _best(self, scores: np.ndarray, limit: int, *, finite: bool) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        scores32 = scores.astype(np.float32)  # as Milvus returns them (ties as it sees them)
        keep = np.isfinite(scores32) if finite else scores32 > 0
        candidates = np.flatnonzero(keep)
        if candidates.size > limit:  # every row tied with the last kept one is a candidate
            kth = np.partition(scores32[candidates], candidates.size - limit)[
                candidates.size - limit
            ]
            candidates = candidates[scores32[candidates] >= kth]
        entities = self._entities([int(i) for i in candidates])
        chosen = sorted(
            zip(candidates.tolist(), entities, strict=True),
            key=lambda pair: (-float(scores32[pair[0]]), pair[1]["id"]),
        )[:limit]
        return [{**entity, "distance": float(scores32[i])} for i, entity in chosen]

    def _entities(self, indexes: list[int]) -> list[dict[str, Any]]:
        by_index: dict[int, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(indexes), 500):
                batch = indexes[start : start + 500]
                marks = ",".join("?" * len(batch))
                for row in self._db.execute(
                    f"SELECT i, {', '.join(RESULT_FIELDS)} FROM rows WHERE i IN ({marks})",
                    batch,
                ):
                    by_index[row[0]] = dict(zip(RESULT_FIELDS, row[1:], strict=True))
        return [by_index[i] for i in indexes]


class Changed(Exception):
    """The collection's rows changed while its image was written (more or fewer than
    counted): the image is abandoned."""


def write_image(directory: Path, collection: str, rows: int, batches: Iterable[Rows]) -> None:
    """Write the image of a collection's `rows` rows, read in `batches` (each row: the result
    fields, `lexical`, `dense`, `embedded`), to the new `directory`, durably."""
    directory.mkdir(parents=True)
    try:
        _write(directory, collection, rows, batches)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _write(directory: Path, collection: str, rows: int, batches: Iterable[Rows]) -> None:
    db = sqlite3.connect(directory / "rows.db", isolation_level=None)
    dense: Any = None  # a memory map written in place: a large image is never all in memory
    embedded = np.zeros(rows, dtype=bool)
    lengths = np.zeros(rows, dtype=np.float32)
    vocabulary: dict[str, int] = {}
    term_ids, docs, counts = array("i"), array("i"), array("f")
    i = 0
    try:
        db.executescript(_SCHEMA)
        db.execute("BEGIN")
        for batch in batches:
            if i + len(batch) > rows:
                raise Changed(f"{collection} holds more than the {rows} rows counted")
            db.executemany(
                f"INSERT INTO rows (i, {', '.join(RESULT_FIELDS)}) "
                f"VALUES (?{', ?' * len(RESULT_FIELDS)})",
                [(i + k, *(row[f] for f in RESULT_FIELDS)) for k, row in enumerate(batch)],
            )
            if dense is None:
                dimension = len(batch[0]["dense"])
                dense = np.lib.format.open_memmap(
                    directory / "dense.npy", mode="w+", dtype=np.float32, shape=(rows, dimension)
                )
            dense[i : i + len(batch)] = np.asarray([row["dense"] for row in batch], np.float32)
            for row in batch:
                embedded[i] = bool(row["embedded"])
                terms = tokens(row["lexical"])
                lengths[i] = len(terms)
                for term, n in Counter(terms).items():
                    term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
                    docs.append(i)
                    counts.append(n)
                i += 1
        if i != rows or dense is None:
            raise Changed(f"{collection} holds {i} rows, not the {rows} counted")
        dense.flush()
        del dense
        order = np.argsort(np.frombuffer(term_ids, dtype=np.int32), kind="stable")
        starts = np.searchsorted(
            np.frombuffer(term_ids, dtype=np.int32)[order], np.arange(len(vocabulary) + 1)
        )
        db.executemany(
            "INSERT INTO terms (term, start, n) VALUES (?, ?, ?)",
            [(t, int(starts[k]), int(starts[k + 1] - starts[k])) for t, k in vocabulary.items()],
        )
        meta = {"version": VERSION, "collection": collection, "rows": rows,
                "avg_length": float(lengths.sum(dtype=np.float64)) / rows}  # fmt: skip
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                       [(k, str(v)) for k, v in meta.items()])  # fmt: skip
        for index in _INDEXES:  # (executescript would commit first)
            db.execute(index)
        db.execute("COMMIT")
    finally:
        db.close()
    arrays = {
        "embedded": embedded,
        "lengths": lengths,
        "docs": np.frombuffer(docs, dtype=np.int32)[order],
        "counts": np.frombuffer(counts, dtype=np.float32)[order],
    }
    for name, values in arrays.items():
        with open(directory / f"{name}.npy", "wb") as f:
            np.save(f, values)
    for name in _ARRAYS:  # durable before the image is published
        fd = os.open(directory / f"{name}.npy", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Images:
    """The images in one directory (one per collection), opened on first use.

    `invalidate` before every write of a collection; `open` only while the collection is not
    loaded (once it is, `loaded` lets the image's memory go).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[str, Image] = {}
        self._guard = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        for entry in root.iterdir():  # left by an interrupted write or invalidation
            if ".partial-" in entry.name or ".stale-" in entry.name:
                shutil.rmtree(entry, ignore_errors=True)
        self._valid = {entry.name for entry in root.iterdir() if entry.is_dir()}

    def has(self, name: str) -> bool:
        return name in self._valid

    def open(self, name: str) -> Image | None:
        """The collection's image, or None when there is none (or it cannot be read)."""
        with self._guard:
            if name not in self._valid:
                return None
            image = self._open.get(name)
            if image is None:
                try:
                    image = self._open[name] = Image(self.root / name)
                except (OSError, ValueError, KeyError, sqlite3.Error) as exc:
                    log.warning("image of %s not usable (%s): removed", name, exc)
                    self._discard(name)
                    return None
            return image

    def loaded(self, name: str) -> None:
        """The collection is loaded: its image is no longer read (searches in progress keep
        theirs until they end)."""
        with self._guard:
            self._open.pop(name, None)

    def invalidate(self, name: str) -> None:
        """Before a write of `name`: its image no longer describes it. Durable on return."""
        with self._guard:
            if name in self._valid:
                self._discard(name)

    def build(self, name: str, rows: int, batches: Iterable[Rows]) -> Path:
        """Write an image of `name`'s `rows` rows beside the valid ones; `publish` makes it
        valid. Returns its directory."""
        partial = self.root / f"{name}.partial-{uuid.uuid4().hex[:8]}"
        write_image(partial, name, rows, batches)
        return partial

    def publish(self, name: str, partial: Path) -> None:
        """Make a built image `name`'s valid one (the caller knows no write of `name` came
        after its rows were read)."""
        with self._guard:
            self._discard(name)
            os.rename(partial, self.root / name)
            _fsync_dir(self.root)
            self._valid.add(name)

    def abandon(self, partial: Path) -> None:
        shutil.rmtree(partial, ignore_errors=True)

    def _discard(self, name: str) -> None:
        """Caller holds the guard."""
        self._valid.discard(name)
        self._open.pop(name, None)
        target = self.root / name
        if not target.exists():
            return
        stale = target.with_name(f"{name}.stale-{uuid.uuid4().hex[:8]}")
        os.rename(target, stale)
        _fsync_dir(self.root)
        shutil.rmtree(stale, ignore_errors=True)
