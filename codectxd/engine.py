"""The indexing engine's shared parts, opened once per process: store, snapshot, embedding
cache and provider. The daemon and the developer CLI both build on this."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from codectx_client.protocol import SearchHit
from codectxd.config import Settings
from codectxd.embeddings.base import create_provider
from codectxd.embeddings.cache import EmbeddingCache
from codectxd.embeddings.service import Embedder
from codectxd.errors import StoreError
from codectxd.filters import Filters
from codectxd.indexer import RepoIndexer, repo_key
from codectxd.ranking import DEFAULT, Weights
from codectxd.registry import NO_OPTIONS, RepoOptions
from codectxd.search import Target, search
from codectxd.snapshot import Snapshot
from codectxd.splitter import Splitter
from codectxd.store import Store, collection_name

log = logging.getLogger(__name__)


class Engine:
    """Owns the store, snapshot, cache and embedder; makes indexers and runs searches."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        on_embed_latency: Callable[[float], None] | None = None,
        embed_batch_cap: Callable[[int], int] | None = None,
        open_store_now: bool = True,
    ) -> None:
        """Open the data dir's store, snapshot and embedding cache (one process at a time).

        Args:
            embedder: use this embedder (tests) instead of one built from the settings.
            on_embed_latency: called with the seconds of every embedding request.
            embed_batch_cap: sizes local embedding batches to the memory budget.
            open_store_now: start opening Milvus now (else `store.open_soon` or its first
                use does).
        """
        self.settings = settings
        self._on_embed_latency = on_embed_latency
        self._embed_batch_cap = embed_batch_cap
        settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_data_dir(settings.paths.data_dir)
        self.snapshot = Snapshot(settings.paths.data_dir / "state.db")
        self.cache = EmbeddingCache(settings.paths.data_dir / "embeddings.db")
        self.store = Store(settings.milvus_uri, settings.store.token, open_now=open_store_now)
        self.splitter = Splitter(settings.splitter)
        self._embedder = embedder
        self._owns_embedder = embedder is None
        self._embedder_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        """The embedder, created on first use (loading a model takes a moment)."""
        with self._embedder_lock:
            if self._embedder is None:
                cfg = self.settings.embedding
                self._embedder = Embedder(
                    create_provider(cfg),
                    self.cache,
                    batch_size=cfg.batch_size,
                    concurrency=cfg.concurrency,
                    max_retries=cfg.max_retries,
                    max_tokens_per_day=cfg.max_tokens_per_day,
                    on_latency=self._on_embed_latency,
                    batch_cap=self._embed_batch_cap,
                )
            return self._embedder

    def collection_for(self, root: Path) -> str:
        embedder = self.embedder
        return collection_name(repo_key(root), embedder.identity, embedder.dimension)

    def indexer_for(
        self,
        root: Path,
        options: RepoOptions = NO_OPTIONS,
        *,
        collection: str | None = None,
    ) -> RepoIndexer:
        """An indexer for `root`; the repository's own `options` add to (ignore patterns,
        extensions) or replace (kinds) the configured scan settings."""
        scan = self.settings.scan
        lexical_only = scan.lexical_only if options.lexical_only is None else options.lexical_only
        scan = dataclasses.replace(
            scan,
            ignore=scan.ignore + options.ignore,
            extensions=scan.extensions + options.extensions,
            lexical_only=lexical_only,
            skip_kinds=scan.skip_kinds if options.skip_kinds is None else options.skip_kinds,
        )
        return RepoIndexer(
            root,
            collection or self.collection_for(root),
            settings=self.settings,
            store=self.store,
            snapshot=self.snapshot,
            embedder=self.embedder,
            splitter=self.splitter,
            scan=scan,
        )

    def search(
        self,
        roots: list[Path],
        query: str,
        *,
        limit: int = 10,
        filters: Filters | None = None,
        mode: str = "hybrid",
        group: str = "chunk",
        weights: Weights = DEFAULT,
    ) -> list[SearchHit]:
        """Search these repositories in this process (developer CLI, benchmarks, tests)."""
        targets = [Target(str(root), self.collection_for(root)) for root in roots]
        return search(
            self.store,
            self.embedder,
            targets,
            query,
            snapshot=self.snapshot,
            limit=limit,
            filters=filters or Filters(),
            mode=mode,
            group=group,
            weights=weights,
        )

    def rest(self, min_idle_s: float) -> bool:
        """Let go of what nobody used for `min_idle_s`: Milvus Lite collections (longer for
        slow-loading ones: `codectxd.residency`) and the local model's session; each comes
        back on its next use. Returns whether anything was let go."""
        released = bool(self.store.release_idle(min_idle_s))
        embedder = self._embedder
        if embedder is not None and embedder.provider.rest(min_idle_s):
            released = True
        return released

    def close(self) -> None:
        """Close everything this engine opened (once; later calls do nothing)."""
        if self._lock_fd < 0:
            return
        if self._embedder is not None and self._owns_embedder:
            self._embedder.close()
        self.store.close()
        self.snapshot.close()
        self.cache.close()
        os.close(self._lock_fd)
        self._lock_fd = -1


def _lock_data_dir(data_dir: Path) -> int:
    """One codectx process per data dir (daemon or developer CLI): the snapshot, the cache and
    the Milvus Lite file must have a single writer."""
    fd = os.open(data_dir / "engine.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"the index in {data_dir} is in use by another codectx process (a running "
            f"codectxd?); use codectx-client to talk to the daemon, or stop it first"
        ) from None
    return fd
