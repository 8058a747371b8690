"""The per-file commit protocol between the store (chunks) and the snapshot (file records).

A file is recorded `indexed` only after its chunks are in the store; before the store is
touched for a file it is recorded `dirty`. After a crash, whatever is dirty (or changed on
disk) is redone: delete-by-path then insert, which is idempotent. So every path with rows in
the store has a record, and a record says `indexed` only when its rows are complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from codectxd.snapshot import (
    DIRTY,
    INDEXED,
    ChunkSpan,
    FileState,
    FileSymbols,
    IndexedFile,
    Snapshot,
    group_spans,
)
from codectxd.store import Row, Store

#: (path, size, mtime_ns, reason) of a file that is not indexed.
SkipRecord = tuple[str, int, int, str]


class Committer:
    """Applies file-level changes to one collection and its snapshot, in protocol order.

    Every method raises `StoreError` when the store or the snapshot fails; the files it was
    given are then left as the protocol says (dirty: redone later).
    """

    def __init__(self, store: Store, snapshot: Snapshot, collection: str) -> None:
        self.store = store
        self.snapshot = snapshot
        self.collection = collection

    def replace(
        self,
        files: Sequence[IndexedFile],
        rows: Sequence[Row],
        symbols: Mapping[str, FileSymbols],
    ) -> None:
        """Make the store hold exactly `rows` for these files, then record them indexed,
        with their symbols (definitions and occurrences), in one snapshot transaction."""
        paths = [f.path for f in files]
        self.snapshot.mark_dirty(self.collection, paths)
        self.store.replace_files(self.collection, paths, rows)
        self.snapshot.mark_indexed(self.collection, files, symbols, _spans(paths, rows))

    def add_vectors(self, files: Sequence[IndexedFile], rows: Sequence[Row]) -> None:
        """The second phase: files recorded indexed get their chunks with vectors. The file
        is not marked dirty: its rows are complete at every moment (the embedded rows are
        written before the keyword-only ones go), and a crash in between leaves the file
        waiting, so the second phase redoes it."""
        paths = [f.path for f in files]
        self.store.replace_files(self.collection, paths, rows)
        self.snapshot.mark_indexed(self.collection, files, chunks=_spans(paths, rows))

    def touch(self, files: Sequence[IndexedFile]) -> None:
        """Files whose content did not change (a new mtime only): their stat is updated."""
        self.snapshot.mark_indexed(self.collection, files)

    def remove(self, paths: Sequence[str], known: Mapping[str, FileState]) -> None:
        """Forget paths that are gone: their chunks first, then their records."""
        self._clear_stored(paths, known)
        self.snapshot.remove(self.collection, paths)

    def skip(self, items: Sequence[SkipRecord], known: Mapping[str, FileState]) -> None:
        """Record files that are not indexed (with why); chunks they had are deleted first."""
        self._clear_stored([item[0] for item in items], known)
        self.snapshot.mark_skipped(self.collection, items)

    def fail(self, paths: Sequence[str], message: str) -> None:
        """Leave files pending with an error (shown in status, retried by the next sync)."""
        self.snapshot.mark_dirty(self.collection, paths, reason=message[:500])

    def _clear_stored(self, paths: Sequence[str], known: Mapping[str, FileState]) -> None:
        stored = [p for p in paths if (old := known.get(p)) and old.state in (INDEXED, DIRTY)]
        if stored:
            self.snapshot.mark_dirty(self.collection, stored)
            self.store.delete_paths(self.collection, stored)


def _spans(paths: Sequence[str], rows: Sequence[Row]) -> dict[str, list[ChunkSpan]]:
    """Each file's chunk spans and ids (search reads a definition's chunk by id: Milvus finds
    rows by primary key far faster than by path)."""
    return group_spans(((r.path, r.start_line, r.end_line, r.id) for r in rows), paths)
