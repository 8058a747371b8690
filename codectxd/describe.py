"""What `list`, `add` and `status` say about a repository: its supervisor's state and the
snapshot's counts, as protocol types."""

from __future__ import annotations

import anyio.to_thread

from codectx_client import protocol as p
from codectxd.snapshot import DIRTY, LEXICAL, Snapshot
from codectxd.supervisor import Supervisor


async def repo_info(supervisor: Supervisor, snapshot: Snapshot) -> p.RepoInfo:
    counts = await anyio.to_thread.run_sync(snapshot.counts, supervisor.collection)
    return _info(supervisor, counts)


async def repo_status(supervisor: Supervisor, snapshot: Snapshot, errors: int) -> p.RepoStatus:
    """The repository, why files are skipped, its most recent problems (at most `errors`)."""
    collection = supervisor.collection

    def read() -> p.RepoStatus:
        problems = [
            p.Problem(path=x.path, state=x.state, reason=x.reason)  # type: ignore[arg-type]
            for x in snapshot.problems(collection, errors)
        ]
        return p.RepoStatus(
            repo=_info(supervisor, snapshot.counts(collection)),
            skipped=snapshot.skip_counts(collection),
            problems=problems,
            lexical_only=snapshot.kind_counts(collection, LEXICAL),
        )

    return await anyio.to_thread.run_sync(read)


def _info(supervisor: Supervisor, counts: dict[str, int]) -> p.RepoInfo:
    job = supervisor.job
    return p.RepoInfo(
        root=supervisor.name,
        state=supervisor.state,  # type: ignore[arg-type]
        files_indexed=counts.get("indexed", 0),
        files_pending=supervisor.pending() + counts.get(DIRTY, 0),
        files_skipped=counts.get("skipped", 0),
        files_failed=counts.get("failed", 0),
        chunks=counts.get("chunks", 0),
        last_sync=supervisor.last_sync,
        watching=supervisor.services.watching(supervisor.name),
        watch_error=supervisor.services.watch_error(supervisor.name),
        collection=supervisor.collection,
        model=supervisor.indexer.embedder.identity,
        embedded=supervisor.embedded(),
        progress=job.progress.message() if job is not None else None,
        embedding=supervisor.lane.message(),
        error=supervisor.error,
        last_report=supervisor.last_report,
        loaded=supervisor.services.store.is_loaded(supervisor.collections.serving),
        image=supervisor.services.store.has_image(supervisor.collections.serving),
    )
