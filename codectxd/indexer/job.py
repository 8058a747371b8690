"""A sync in progress: runs a `Plan` one group of files at a time.

Each group is read, hashed and split, then committed for keyword search at once: chunks whose
vector the embedding cache holds get it, the others a zero vector, and their files wait for
the second phase (`codectxd.indexer.backlog`) to embed them. A small group of changed files
(`inline_chunks`) is embedded before it is committed, so a saved file is searchable both ways
at once. `step()` does one group and returns; whoever drives the job (the supervisor, or
`run()`) decides what happens between groups. Progress and the report are written by the
thread that runs the job and only read elsewhere. A sync of many files reads and splits the
next group in a helper thread while this one is written (`codectxd.indexer.prefetch`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codectx_client import protocol as p
from codectxd.embeddings.service import EmbedCancelled, Embedder
from codectxd.errors import CodectxError, StoreError
from codectxd.indexer.commit import Committer
from codectxd.indexer.plan import Plan, same_kind, skip_message
from codectxd.indexer.prefetch import Prefetch
from codectxd.indexer.read import Skip
from codectxd.indexer.rows import Prepared, Unchanged, prepare, records, rows, symbols
from codectxd.scanner import FileEntry, Scanner
from codectxd.snapshot import INDEXED, NO_STAT, IndexedFile
from codectxd.splitter import Splitter

log = logging.getLogger(__name__)

#: Chunks embedded and written together (the memory manager may ask for fewer).
GROUP_CHUNKS = 256
#: A sync of at least this many files to read splits the next group while this one is
#: written; fewer (a saved file) are read on the job's thread, without a helper to start.
PREFETCH_MIN_FILES = 16


@dataclass(slots=True)
class _Read:
    """One file read, checked, hashed and split (or why not), and how long that took."""

    result: Prepared | Unchanged | Skip | FileNotFoundError
    seconds: float
    ahead: bool  # read by the helper thread, ahead of the job's
    stat: tuple[int, int] | None  # then: (size, mtime_ns) just before reading; None: no file

    def chunks(self) -> int:
        return len(self.result.chunks) if isinstance(self.result, Prepared) else 0


@dataclass(slots=True)
class Progress:
    """How far the running sync is (written by its thread, read by status)."""

    phase: str = "idle"  # scanning | indexing | idle
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    errors: int = 0

    def message(self) -> p.Progress:
        return p.Progress(
            phase=self.phase,
            files_done=self.files_done,
            files_total=self.files_total,
            chunks_done=self.chunks_done,
            errors=self.errors,
        )


@dataclass(slots=True)
class SyncReport:
    scanned: int = 0
    unchanged: int = 0
    files_read: int = 0
    indexed: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0  # chunks written with their vector
    embedded: int = 0  # files whose vectors the second phase wrote (whole syncs only)
    seconds: float = 0.0
    cancelled: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Where the time went (seconds): listing files, reading + hashing + splitting, computing
    # embeddings (cache lookups included), writing to the store + snapshot.
    scan_s: float = 0.0
    parse_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0

    def summary(self) -> p.SyncSummary:
        return p.SyncSummary(
            scanned=self.scanned,
            unchanged=self.unchanged,
            files_read=self.files_read,
            indexed=self.indexed,
            removed=self.removed,
            skipped=self.skipped,
            failed=self.failed,
            chunks_written=self.chunks_written,
            seconds=round(self.seconds, 3),
            cancelled=self.cancelled,
            scan_s=round(self.scan_s, 3),
            parse_s=round(self.parse_s, 3),
            embed_s=round(self.embed_s, 3),
            store_s=round(self.store_s, 3),
            finished=time.time(),
        )


@dataclass(slots=True, frozen=True)
class JobParts:
    """What a job works with: one repository's collection and the shared components."""

    root: Path
    key: str  # the repository key chunk ids are derived from
    scanner: Scanner
    splitter: Splitter
    embedder: Embedder
    committer: Committer
    lexical_only: tuple[str, ...]  # kinds of file never embedded


def never() -> bool:
    return False


class Job:
    """One sync: `step()` until it returns False, then `finish()`.

    `should_stop` is polled between files and embedding batches; when it says stop, the
    group in hand is dropped (nothing of it was written) and the job ends as cancelled.
    """

    def __init__(
        self,
        plan: Plan,
        parts: JobParts,
        *,
        inline_chunks: int = 0,
        should_stop: Callable[[], bool] = never,
        on_finish: Callable[[SyncReport], None] | None = None,
    ) -> None:
        self.plan = plan
        self.inline_chunks = inline_chunks
        self.parts = parts
        self.should_stop = should_stop
        self.on_finish = on_finish
        self.started = time.perf_counter()
        self.report = SyncReport(scanned=plan.scanned, unchanged=plan.unchanged, scan_s=plan.scan_s)
        self.progress = Progress(
            phase="indexing", files_total=len(plan.todo) + len(plan.gone) + len(plan.skips)
        )
        self._todo: Iterator[FileEntry] = iter(plan.todo)
        self._prefetch: Prefetch[FileEntry, _Read] | None = None
        self._first = True
        self.done = False

    @property
    def committer(self) -> Committer:
        return self.parts.committer

    def step(self, max_chunks: int = GROUP_CHUNKS) -> bool:
        """Do the next group (about `max_chunks` chunks); False once nothing is left."""
        try:
            return self._step(max_chunks)
        except BaseException:
            self._close_prefetch()  # a job that failed is not stepped again
            raise

    def _step(self, max_chunks: int) -> bool:
        if self.done:
            return False
        if self._first:
            self._first = False
            self._record_plan()
            if len(self.plan.todo) >= PREFETCH_MIN_FILES:
                self._prefetch = Prefetch(self._todo, self._read_ahead, _Read.chunks, max_chunks)
        if self._prefetch is not None:
            self._prefetch.ahead = max_chunks
        group: list[Prepared] = []
        size = 0
        while True:
            if self.should_stop():
                return self._cancel()
            taken = self._next_read()
            if taken is None:
                self.done = True
                self._close_prefetch()
                break
            prepared = self._settle(*taken)
            if prepared is not None:
                group.append(prepared)
                size += len(prepared.chunks)
                if size >= max_chunks:
                    break
        if group:
            try:
                self._commit(group)
            except SyncCancelledError:
                return self._cancel()
        return not self.done

    def run(self, max_chunks: int = GROUP_CHUNKS) -> SyncReport:
        """All steps, then `finish()` (for callers without an event loop)."""
        while self.step(max_chunks):
            pass
        return self.finish()

    def finish(self) -> SyncReport:
        report = self.report
        report.seconds = time.perf_counter() - self.started
        self.progress.phase = "idle"
        log.info(
            "%s: %d scanned, %d unchanged, %d indexed, %d removed, %d skipped, %d failed (%.2fs)%s",
            self.parts.root,
            report.scanned,
            report.unchanged,
            report.indexed,
            report.removed,
            report.skipped,
            report.failed,
            report.seconds,
            " [cancelled]" if report.cancelled else "",
        )
        if self.on_finish is not None:
            self.on_finish(report)
        return report

    def cancel(self) -> None:
        """End the job now: what is not done yet stays pending (a later sync does it)."""
        if not self.done:
            self.done = True
            self.report.cancelled = True
        self._close_prefetch()

    def _close_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    def _cancel(self) -> bool:
        self.cancel()
        return False

    # --- the plan's removals and scan verdicts ----------------------------------------------

    def _record_plan(self) -> None:
        plan, known = self.plan, self.plan.known
        if plan.gone:
            try:
                self.committer.remove(plan.gone, known)
                self.report.removed += len(plan.gone)
            except StoreError as exc:
                self._fail(plan.gone, str(exc))
            self._advance(len(plan.gone))
        if plan.skips:
            items = [(s.path, NO_STAT, NO_STAT, skip_message(s)) for s in plan.skips]
            try:
                self.committer.skip(items, known)
            except StoreError as exc:
                self._fail([s.path for s in plan.skips], str(exc))
            self.report.skipped += len(plan.skips)
            self._advance(len(plan.skips))

    # --- one file ---------------------------------------------------------------------------

    def _next_read(self) -> tuple[FileEntry, _Read] | None:
        if self._prefetch is not None:
            return self._prefetch.take()
        entry = next(self._todo, None)
        return None if entry is None else (entry, self._read(entry))

    def _read_ahead(self, entry: FileEntry) -> _Read:
        return self._read(entry, ahead=True)

    def _read(self, entry: FileEntry, ahead: bool = False) -> _Read:
        """Read, check, hash and split one file. Writes nothing: it may run on the helper
        thread, ahead of the job's."""
        started = time.perf_counter()
        old = self.plan.known.get(entry.path)
        recorded = None  # the hash that lets an unchanged file go without a write
        if (
            old is not None
            and old.state == INDEXED
            and not self.plan.force
            and same_kind(old, entry)
        ):
            recorded = old.hash  # (a file whose kind changed is written again, with it)
        result: Prepared | Unchanged | Skip | FileNotFoundError
        stat = self._stat(entry) if ahead else None
        try:
            result = prepare(self.parts.scanner, self.parts.splitter, entry, recorded)
        except (FileNotFoundError, Skip) as exc:
            result = exc
        return _Read(result, time.perf_counter() - started, ahead, stat)

    def _stat(self, entry: FileEntry) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.parts.root, entry.path), follow_symlinks=False)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _settle(self, entry: FileEntry, read: _Read) -> Prepared | None:
        """Record what reading one file found; its chunks when they need a store write."""
        if read.ahead and self._stat(entry) != read.stat:
            # Changed since the helper read it (a sync of saved files may have indexed the
            # newer content between two groups): what was read must not overwrite that.
            read = self._read(entry)
        self.report.parse_s += read.seconds
        prepared = read.result
        if isinstance(prepared, FileNotFoundError):
            self._record(lambda: self.committer.remove([entry.path], self.plan.known), entry)
            self.report.removed += 1
            return None
        if isinstance(prepared, Skip):
            record = (entry.path, entry.size, entry.mtime_ns, prepared.message)
            self._record(lambda: self.committer.skip([record], self.plan.known), entry)
            self.report.skipped += 1
            return None
        self.report.files_read += 1
        if isinstance(prepared, Unchanged):
            old = self.plan.known.get(entry.path)
            assert old is not None
            # Touched but not changed: remember the new stat, write nothing.
            same = IndexedFile(
                entry.path, entry.size, entry.mtime_ns, old.hash, old.chunks, old.dense, old.kind
            )
            self._record(lambda: self.committer.touch([same]), entry)
            self.report.unchanged += 1
            return None
        return prepared

    def _record(self, write: Callable[[], None], entry: FileEntry) -> None:
        try:
            write()
        except StoreError as exc:
            self._fail([entry.path], str(exc))
        self._advance(1)

    # --- one group --------------------------------------------------------------------------

    def _commit(self, group: list[Prepared]) -> None:
        started = time.perf_counter()
        paths = [item.entry.path for item in group]
        try:
            vectors, real = self._vectors(group)
        except EmbedCancelled:
            raise SyncCancelledError from None
        except CodectxError as exc:
            # Nothing was written: old chunks stay searchable, the files stay pending.
            self._fail(paths, f"embedding failed: {exc}")
            self._advance(len(paths))
            return
        finally:
            self.report.embed_s += time.perf_counter() - started
        store_started = time.perf_counter()
        written = rows(self.parts.key, group, vectors, real)
        try:
            files = records(group, real, self.parts.lexical_only)
            self.committer.replace(files, written, symbols(group))
        except StoreError as exc:
            self._fail(paths, str(exc))
            self._advance(len(paths))
            return
        finally:
            self.report.store_s += time.perf_counter() - store_started
        self.report.indexed += len(group)
        self.report.chunks_written += len(written)
        self.report.chunks_embedded += int(real.sum())
        self._advance(len(group), len(written))

    def _vectors(self, group: list[Prepared]) -> tuple[np.ndarray, np.ndarray]:
        """A vector per chunk of the group and whether it is real: embedded now when the group
        is small enough (`inline_chunks`), else what the embedding cache holds; files of a
        lexical-only kind are never embedded."""
        embedder = self.parts.embedder
        wanted = [item.kind not in self.parts.lexical_only for item in group]
        texts = [t for item, want in zip(group, wanted, strict=True) if want for t in item.texts()]
        total = sum(len(item.chunks) for item in group)
        vectors = np.zeros((total, embedder.dimension), dtype=np.float32)
        real = np.zeros(total, dtype=bool)
        if not texts:
            return vectors, real
        if len(texts) <= self.inline_chunks:
            found, found_real = embedder.embed_texts(texts, should_stop=self.should_stop), None
        else:
            found, found_real = embedder.cached(texts)
        positions: list[int] = []
        position = 0
        for item, want in zip(group, wanted, strict=True):
            if want:
                positions.extend(range(position, position + len(item.chunks)))
            position += len(item.chunks)
        vectors[positions] = found
        real[positions] = True if found_real is None else found_real
        return vectors, real

    def _fail(self, paths: list[str], message: str) -> None:
        log.warning("%s: %d file(s) left pending: %s", self.parts.root, len(paths), message)
        try:
            self.committer.fail(paths, message)
        except StoreError:
            log.exception("%s: could not record the failure", self.parts.root)
        self.report.failed += len(paths)
        self.report.errors.extend((path, message) for path in paths[:20])
        self.progress.errors += len(paths)

    def _advance(self, files: int, chunks: int = 0) -> None:
        self.progress.files_done += files
        self.progress.chunks_done += chunks


class SyncCancelledError(Exception):
    """`should_stop` said stop while a group was being embedded; nothing of it was written."""
