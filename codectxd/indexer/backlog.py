"""The second phase: embed the chunks the first phase stored for keyword search only.

Files are taken a group at a time in a useful order (under recently searched directories
first, then the most recently modified), read and split again, embedded, and committed only
if the snapshot still records them as they were read: a file that changed in between is the
first phase's to index again (its path is handed back as stale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from codectxd.indexer.job import JobParts, never
from codectxd.indexer.read import Skip
from codectxd.indexer.rows import Prepared, Unchanged, prepare, records, rows
from codectxd.languages import language_for
from codectxd.scanner import FileEntry
from codectxd.snapshot import INDEXED, WAITING, FileState, Snapshot

#: Records read from the snapshot per group (more than a group's files: some may be stale).
_CANDIDATES = 512


@dataclass(slots=True)
class Pending:
    """A group of files read and split, waiting for their vectors."""

    group: list[Prepared] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # changed since indexed: index them again

    def texts(self) -> list[str]:
        return [text for item in self.group for text in item.texts()]

    @property
    def chunks(self) -> int:
        return sum(len(item.chunks) for item in self.group)


def next_group(
    parts: JobParts,
    snapshot: Snapshot,
    collection: str,
    max_chunks: int,
    under: Sequence[str] = (),
) -> Pending | None:
    """The next files to embed (about `max_chunks` chunks); None when none is waiting."""
    states = snapshot.waiting(collection, _CANDIDATES, under)
    if not states:
        return None
    pending = Pending()
    for state in states:
        item = _read(parts, state)
        if item is None:
            pending.stale.append(state.path)
            continue
        pending.group.append(item)
        if pending.chunks >= max_chunks:
            break
    return pending


def _read(parts: JobParts, state: FileState) -> Prepared | None:
    """The file as the snapshot records it, split again; None when it is not that any more."""
    settings = parts.scanner.settings
    language = language_for(state.path, settings.extensions)
    if language is None:
        return None
    entry = FileEntry(state.path, state.size, state.mtime_ns, language, state.kind)
    try:
        item = prepare(parts.scanner, parts.splitter, entry, None, with_symbols=False)
    except (FileNotFoundError, Skip):
        return None
    if isinstance(item, Unchanged) or item.hash != state.hash:
        return None
    item.kind = state.kind or item.kind  # as recorded (a header decides it once)
    return item


def embed(parts: JobParts, pending: Pending, should_stop: Callable[[], bool] = never) -> np.ndarray:
    """The group's vectors (the cache first). Raises EmbedCancelled / ProviderError."""
    return parts.embedder.embed_texts(pending.texts(), should_stop=should_stop)


def commit(parts: JobParts, snapshot: Snapshot, pending: Pending, vectors: np.ndarray) -> int:
    """Write the group's chunks with their vectors, for the files the snapshot still records
    as read and waiting; the number of chunks written."""
    current = snapshot.states(parts.committer.collection, [i.entry.path for i in pending.group])
    keep: list[Prepared] = []
    kept_vectors: list[np.ndarray] = []
    position = 0
    for item in pending.group:
        n = len(item.chunks)
        state = current.get(item.entry.path)
        still = state is not None and (state.state, state.dense, state.hash) == (
            INDEXED, WAITING, item.hash
        )  # fmt: skip
        if still:
            keep.append(item)
            kept_vectors.append(vectors[position : position + n])
        position += n
    if not keep:
        return 0
    stacked = np.concatenate(kept_vectors) if kept_vectors else vectors[:0]
    real = np.ones(len(stacked), dtype=bool)
    written = rows(parts.key, keep, stacked, real)
    parts.committer.add_vectors(records(keep, real, parts.lexical_only), written)
    return len(written)
