"""Keep one repository's collection equal to its files on disk.

plan (`plan`: the scan or the changed paths, against the snapshot) → a `Job` (`job`) that
runs the plan one group of files at a time: read (`read`), hash, split → embed (cache first)
→ commit (`commit`: the per-file commit protocol). The daemon's supervisor steps a job itself,
so it can do urgent work between groups; `full_sync` / `sync_paths` run one to the end.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from codectxd.config import ScanSettings, Settings
from codectxd.embeddings.service import Embedder
from codectxd.errors import CodectxError
from codectxd.indexer import backlog
from codectxd.indexer.commit import Committer
from codectxd.indexer.job import GROUP_CHUNKS, Job, JobParts, Progress, SyncReport, never
from codectxd.indexer.plan import plan_full, plan_paths
from codectxd.indexer.rows import chunk_id, embedding_text
from codectxd.scanner import Scanner
from codectxd.snapshot import Snapshot, group_spans
from codectxd.splitter import Splitter
from codectxd.store import Store

__all__ = [
    "CHUNKING_VERSION",
    "GROUP_CHUNKS",
    "Job",
    "Progress",
    "RepoIndexer",
    "SyncReport",
    "chunk_id",
    "embedding_text",
    "repo_key",
]

log = logging.getLogger(__name__)

#: Bump when the splitter or the text given to the embedder / BM25 changes: every collection
#: built with another version is re-split on its next full sync.
CHUNKING_VERSION = 4
#: Files whose change means the ignore rules (or the kinds of files) change: a full rescan.
_RULE_FILE_NAMES = frozenset({".gitignore", ".codectxignore", ".gitattributes"})
#: Changed files are embedded before they are committed when they make at most this many
#: chunks (a save: searchable both ways at once); more go through the two phases.
INLINE_CHUNKS = 64


def repo_key(root: Path) -> str:
    """A stable short key for a repository root (its resolved absolute path)."""
    return hashlib.blake2b(str(root).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


class RepoIndexer:
    """Indexes one repository into one collection. Not thread-safe: one job at a time."""

    def __init__(
        self,
        root: Path,
        collection: str,
        *,
        settings: Settings,
        store: Store,
        snapshot: Snapshot,
        embedder: Embedder,
        splitter: Splitter | None = None,
        scan: ScanSettings | None = None,
    ) -> None:
        self.root = root
        self.key = repo_key(root)
        self.collection = collection
        self.settings = settings
        self.store = store
        self.snapshot = snapshot
        self.embedder = embedder
        self.scanner = Scanner(root, scan or settings.scan)
        self._parts = JobParts(
            root=root,
            key=self.key,
            scanner=self.scanner,
            splitter=splitter or Splitter(settings.splitter),
            embedder=embedder,
            committer=Committer(store, snapshot, collection),
            lexical_only=self.scanner.settings.lexical_only,
        )

    def ensure_collection(self) -> None:
        self.store.ensure_collection(
            self.collection,
            self.embedder.dimension,
            {"root": str(self.root), "model": self.embedder.identity},
        )

    def is_complete(self) -> bool:
        """Whether a full sync of this collection has ever completed (it can serve searches)."""
        return self.snapshot.get_meta(self.collection, "complete") is not None

    def relevant(self, paths: Iterable[str]) -> tuple[set[str], bool]:
        """Of paths reported changed, those that may need indexing (not ignored), and whether
        an ignore file changed (the rules were reloaded; a full rescan is due). The one place
        watcher paths meet the ignore rules."""
        rules = self.scanner.rules
        keep: set[str] = set()
        rescan = False
        for rel in paths:
            name = rel.rsplit("/", 1)[-1]
            if rel == ".git/info/exclude" or name in _RULE_FILE_NAMES:
                rules.invalidate(None if rel.startswith(".git/") else rel.rpartition("/")[0])
                self.scanner.attributes.invalidate()
                rescan = True
            elif rel == "":
                rescan = True
            elif not rules.is_ignored(rel):
                keep.add(rel)
        return keep, rescan

    # --- jobs -------------------------------------------------------------------------------

    def begin_full(self, force: bool = False, should_stop: Callable[[], bool] = never) -> Job:
        """A job reconciling the whole repository with its snapshot (start-up, periodic,
        reindex). Unchanged files (same size and mtime_ns) are not read; `force` re-reads and
        re-splits every file (the embedding cache still avoids paying for unchanged text)."""
        # Milvus loads the collection (seconds at restart, in its own process) while this
        # thread reads the snapshot and scans the tree.
        with ThreadPoolExecutor(1, thread_name_prefix="load") as pool:
            loaded = pool.submit(self.ensure_collection)
            # Which files wait for their vectors follows the configured lexical-only kinds.
            self.snapshot.retarget(self.collection, self.scanner.settings.lexical_only)
            known = self.snapshot.load(self.collection)
            fingerprint = self._chunking_fingerprint()
            if known and self.snapshot.get_meta(self.collection, "chunking") != fingerprint:
                force = True  # chunking settings changed: re-split every file
            plan = plan_full(self.scanner, known, force)
            loaded.result()  # its error, if any, is this job's
        # A collection with a search image loads after the scan, not during it: the engine's
        # load takes a core for seconds (28k rows: ~5 s) and slowed a warm scan 2× on 2 cores.
        self.store.load_soon(self.collection)

        def finished(report: SyncReport) -> None:
            if not report.cancelled:  # failed files stay dirty and are retried anyway
                self.snapshot.set_meta(self.collection, "chunking", fingerprint)
                self.snapshot.set_meta(self.collection, "complete", f"{time.time():.0f}")
                if self.snapshot.get_meta(self.collection, "spans") is None:
                    if known:
                        self._record_spans()
                    self.snapshot.set_meta(self.collection, "spans", "1")

        return Job(plan, self._parts, should_stop=should_stop, on_finish=finished)

    def _record_spans(self) -> None:
        """Chunk spans for a collection indexed by a version that did not record them, read
        from the store once (~1 s per 30k rows), so definitions are found by chunk id."""
        rows = self.store.rows_of(self.collection, "", ["id", "path", "start_line", "end_line"])
        self.snapshot.record_chunks(self.collection, group_spans(
            (r["path"], int(r["start_line"]), int(r["end_line"]), str(r["id"])) for r in rows
        ))  # fmt: skip
        log.info("%s: recorded the spans of %d chunks", self.root, len(rows))

    def begin_paths(self, paths: Iterable[str], should_stop: Callable[[], bool] = never) -> Job:
        """A job bringing specific repository-relative paths (files or directories) up to
        date; the paths have passed `relevant`."""
        self.ensure_collection()
        plan = plan_paths(self.scanner, self.snapshot, self.collection, paths)
        return Job(plan, self._parts, inline_chunks=INLINE_CHUNKS, should_stop=should_stop)

    # --- the second phase -------------------------------------------------------------------

    def next_embedding(self, max_chunks: int, under: Sequence[str] = ()) -> backlog.Pending | None:
        """The next files whose chunks wait for vectors, read and split (None: none wait)."""
        return backlog.next_group(self._parts, self.snapshot, self.collection, max_chunks, under)

    def embed_pending(
        self, pending: backlog.Pending, should_stop: Callable[[], bool] = never
    ) -> np.ndarray:
        return backlog.embed(self._parts, pending, should_stop)

    def commit_embedding(self, pending: backlog.Pending, vectors: np.ndarray) -> int:
        """Store the vectors of files still as they were read; the chunks written."""
        return backlog.commit(self._parts, self.snapshot, pending, vectors)

    def embedding_failed(self, pending: backlog.Pending, message: str) -> None:
        """The group's files keep waiting, with why (status shows it)."""
        paths = [item.entry.path for item in pending.group]
        log.warning("%s: %d file(s) left waiting for vectors: %s", self.root, len(paths), message)
        self.snapshot.note_failure(self.collection, paths, message)

    # --- whole syncs, both phases (developer CLI, tests) --------------------------------------

    def full_sync(self, force: bool = False) -> SyncReport:
        """`begin_full` run to the end, then the files it left waiting embedded."""
        report = self.begin_full(force).run()
        self.embed_backlog(report)
        return report

    def sync_paths(self, paths: Iterable[str]) -> SyncReport:
        """The relevant ones of `paths` brought up to date (a changed ignore file: every path),
        then the files left waiting embedded."""
        keep, rescan = self.relevant(paths)
        report = self.begin_paths([""] if rescan else keep).run()
        self.embed_backlog(report)
        return report

    def embed_backlog(self, report: SyncReport) -> None:
        """Embed every waiting file (stale ones are indexed again), counted into `report`;
        a provider or store failure stops it, the files keep waiting with the reason."""
        while (pending := self.next_embedding(GROUP_CHUNKS)) is not None:
            if pending.stale:
                self.begin_paths(pending.stale).run()
            if not pending.group:
                continue
            try:
                written = self.commit_embedding(pending, self.embed_pending(pending))
            except CodectxError as exc:
                message = f"embedding failed: {exc}"
                self.embedding_failed(pending, message)
                report.failed += len(pending.group)
                report.errors.extend((i.entry.path, message) for i in pending.group[:20])
                return
            report.embedded += len(pending.group)
            report.chunks_embedded += written

    def _chunking_fingerprint(self) -> str:
        s = self.settings.splitter
        return f"v{CHUNKING_VERSION}:{s.type}:{s.chunk_size}:{s.chunk_overlap}"
