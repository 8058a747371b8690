"""Which collection a repository's searches read, across a change of embedding model.

Collection names include the model and dimension, so vectors of two models never mix. After a
model change the new collection starts empty: searches keep reading the previous model's
complete collection (by keywords only: its vectors are the other model's) until the new one
is complete, and then the old collections are dropped.
"""

from __future__ import annotations

import logging

from codectxd.indexer import RepoIndexer
from codectxd.search import Target
from codectxd.snapshot import Snapshot
from codectxd.store import Store, repo_collections

log = logging.getLogger(__name__)


class Serving:
    """One repository's collections. The methods that touch the store block (call them in a
    worker thread); the attributes are read on the event loop."""

    def __init__(self, repo: str, active: str, store: Store, snapshot: Snapshot) -> None:
        self.repo = repo
        self.active = active  # the collection being indexed (the configured model's)
        self.serving = active  # the collection searched
        self.retired: list[str] = []  # older collections of this repository
        # Whether `active` has ever been built completely (persisted as snapshot meta).
        self.complete = False
        # Whether the store was asked for older collections (a complete one's are looked for
        # by `tidy`, later: a warm restart need not wait for the store to open).
        self.listed = False
        self._key: str | None = None  # the repository's key in collection names
        self._store = store
        self._snapshot = snapshot

    def target(self) -> Target:
        return Target(self.repo, self.serving, lexical_only=self.serving != self.active)

    def plan(self, indexer: RepoIndexer) -> None:
        """At start: when `active` is not complete, find the older collections and serve a
        complete one meanwhile (a complete `active` needs nothing from the store)."""
        self._key = indexer.key
        self.complete = indexer.is_complete()
        if self.complete:
            return
        others = [c for c in repo_collections(self._store, indexer.key) if c != self.active]
        self.retired, self.listed = others, True
        usable = [c for c in others if self._snapshot.get_meta(c, "complete") is not None]
        if usable:
            self.serving = usable[0]
            log.info(
                "%s: embedding model changed; searches use %s until the new index %s is complete",
                self.repo,
                self.serving,
                self.active,
            )

    def completed(self) -> list[str]:
        """`active` is complete: serve it, drop the retired collections (returned)."""
        self.complete = True
        retired, self.retired = self.retired, []
        self.serving = self.active
        self._drop(retired)
        if retired:
            log.info("%s: switched to %s; removed %s", self.repo, self.active, ", ".join(retired))
        return retired

    def tidy(self) -> list[str]:
        """Once, for an `active` complete at start: drop the older collections a model switch
        left (it was stopped between completing and dropping them); the names dropped."""
        if self.listed or self._key is None or not self.complete:
            return []  # an incomplete `active`'s older collections may serve meanwhile
        self.listed = True
        keep = {self.active, self.serving}
        retired = [c for c in repo_collections(self._store, self._key) if c not in keep]
        self._drop(retired)
        if retired:
            log.info("%s: removed older collections %s", self.repo, ", ".join(retired))
        return retired

    def drop_all(self) -> None:
        """Delete every collection of the repository (it is removed)."""
        listed = repo_collections(self._store, self._key) if self._key is not None else []
        self._drop(sorted({self.active, self.serving, *self.retired, *listed}))

    def _drop(self, names: list[str]) -> None:
        for name in names:
            self._store.drop_collection(name)
            self._snapshot.clear(name)
