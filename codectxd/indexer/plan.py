"""What a sync must do, from the files on disk and the snapshot's records of them.

A full plan scans the whole repository; a paths plan checks only the given paths (files, or
directories rescanned whole) and reads only their records from the snapshot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from codectxd.kinds import GENERATED
from codectxd.scanner import FileEntry, Scanner, Skipped
from codectxd.snapshot import INDEXED, NO_STAT, SKIPPED, FileState, Snapshot


@dataclass(slots=True)
class Plan:
    """Files to read, paths gone, scan verdicts to record, and the records they replace."""

    full: bool
    todo: list[FileEntry] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    skips: list[Skipped] = field(default_factory=list)  # only verdicts that changed
    known: dict[str, FileState] = field(default_factory=dict)
    force: bool = False
    scanned: int = 0  # indexable files seen
    unchanged: int = 0  # of those, same size and mtime as recorded
    scan_s: float = 0.0


def skip_message(skip: Skipped) -> str:
    return skip.reason + (f": {skip.detail}" if skip.detail else "")


def plan_full(scanner: Scanner, known: dict[str, FileState], force: bool) -> Plan:
    """Reconcile the whole repository with `known` (every record of the collection).

    Unchanged files (same size and mtime_ns) are not read again unless `force`.
    """
    started = time.perf_counter()
    scan = scanner.scan()
    plan = Plan(full=True, known=known, force=force, scan_s=time.perf_counter() - started)
    seen = {entry.path for entry in scan.files}
    seen.update(skip.path for skip in scan.skipped)
    plan.gone = [path for path in known if path not in seen]
    _add(plan, scan.files, scan.skipped)
    return plan


def plan_paths(scanner: Scanner, snapshot: Snapshot, collection: str, paths: Iterable[str]) -> Plan:
    """Bring specific repository-relative paths up to date (their ignore rules are checked by
    `RepoIndexer.relevant`). A path that no longer exists removes everything recorded under it
    (a deleted directory); an existing directory is rescanned (watchers miss files created
    with it); a file that replaced a directory removes the directory's records."""
    started = time.perf_counter()
    plan = Plan(full=False)
    files: dict[str, FileEntry] = {}
    skips: dict[str, Skipped] = {}
    for rel in sorted(set(paths)):
        plan.known.update(snapshot.states_under(collection, rel))
        abs_path = scanner.root / rel
        if rel == "" or (os.path.isdir(abs_path) and not os.path.islink(abs_path)):
            sub = scanner.scan(rel)
            files.update((e.path, e) for e in sub.files)
            skips.update((s.path, s) for s in sub.skipped)
            continue
        plan.known.update(snapshot.states(collection, [rel]))
        found = scanner.check_file(rel)
        if isinstance(found, FileEntry):
            files[rel] = found
        elif isinstance(found, Skipped):
            skips[rel] = found
    plan.gone = sorted(p for p in plan.known if p not in files and p not in skips)
    _add(plan, files.values(), skips.values())
    plan.scan_s = time.perf_counter() - started
    return plan


def same_kind(old: FileState, entry: FileEntry) -> bool:
    """Whether a file's recorded kind still holds: the path's kind is what the scan says now
    (`.gitattributes` may have changed it); a file the content said was generated stays so
    until it changes."""
    return old.state != INDEXED or old.kind in (entry.kind, GENERATED) or not old.kind


def _add(plan: Plan, files: Iterable[FileEntry], skips: Iterable[Skipped]) -> None:
    """Files whose stat differs from their record go to `todo`; changed verdicts to `skips`."""
    for entry in files:
        plan.scanned += 1
        old = plan.known.get(entry.path)
        if (
            not plan.force
            and old is not None
            and old.state in (INDEXED, SKIPPED)
            and old.size == entry.size
            and old.mtime_ns == entry.mtime_ns
            and same_kind(old, entry)
        ):
            plan.unchanged += 1
        else:
            plan.todo.append(entry)
    for skip in skips:
        old = plan.known.get(skip.path)
        if (
            old is None
            or old.state != SKIPPED
            or old.size != NO_STAT
            or old.reason != skip_message(skip)
        ):
            plan.skips.append(skip)
