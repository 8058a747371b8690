"""Exact questions about code: where is NAME defined (exactly, by prefix, ignoring case, or by
a part of it), what a file defines, and where NAME occurs. Read from the snapshot's
definitions and occurrences tables, which every file's commit replaces together with its
chunks, so the answers are as fresh as search's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codectxd.filters import PathFilter
from codectxd.snapshot import Definition, Snapshot, unpack_positions

#: Characters of an occurrence's line given with it.
LINE_CHARS = 300

#: How a name is matched: exactly (case-sensitive), as a prefix, ignoring case, or `fuzzy`:
#: any name containing it, ignoring case (the closest first).
MATCHES = ("exact", "prefix", "insensitive", "fuzzy")
_FILE_ORDER = "path, start_line, def_line"


def lookup(
    snapshot: Snapshot,
    coll: str,
    name: str,
    *,
    match: str = "exact",
    kinds: Sequence[str] = (),
    languages: Sequence[str] = (),
    paths: PathFilter | None = None,
    limit: int = 100,
) -> list[Definition]:
    """Definitions named `name` (a name or a qualified name: `Class.method`, `Class/method`,
    `Class::method`), best match first, then by path and line."""
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r} (accepted: {', '.join(MATCHES)})")
    qualified = name.strip().replace("::", ".").replace("/", ".").strip(".")
    if not qualified:
        return []
    last = qualified.rsplit(".", 1)[-1]
    owner = qualified[: -len(last) - 1] if "." in qualified else ""
    where, args, order, order_args = _name_condition(last, match)
    if owner:  # the qualified name ends with `owner.name` (any enclosing scopes before)
        where += " AND (qualified = ? OR qualified LIKE ? ESCAPE '\\')"
        args += [qualified, "%." + _like(qualified)]
    if kinds:
        where += f" AND kind IN ({', '.join('?' * len(kinds))})"
        args += list(kinds)
    if languages:
        where += f" AND language IN ({', '.join('?' * len(languages))})"
        args += list(languages)
    # Path globs are checked exactly in Python: fetch more when they may drop rows.
    fetch = limit if not paths else max(limit * 10, 1000)
    found = snapshot.select_definitions(coll, where, args, order, fetch, order_args)
    if paths:
        found = [d for d in found if paths(d.path)]
    return found[:limit]


def outline(snapshot: Snapshot, coll: str, path: str, limit: int = 5000) -> list[Definition]:
    """Every definition in one file, in file order (nested ones after their owner)."""
    return snapshot.select_definitions(coll, "path = ?", [path], "start_line, def_line", limit)


def _name_condition(name: str, match: str) -> tuple[str, list[object], str, list[object]]:
    """(where, its parameters, order, its parameters)."""
    if match == "exact":
        return "name = ?", [name], _FILE_ORDER, []
    if match == "prefix":  # a range over the primary key (coll, name, ...)
        return "name >= ? AND name < ?", [name, name + "\U0010ffff"], f"name, {_FILE_ORDER}", []
    lowered = name.lower()
    if match == "insensitive":
        return "lower(name) = ?", [lowered], _FILE_ORDER, []
    # fuzzy: exact (ignoring case) first, then names starting with it, then the shortest
    return (
        "lower(name) LIKE ? ESCAPE '\\'",
        ["%" + _like(lowered) + "%"],
        f"lower(name) != ?, instr(lower(name), ?) != 1, length(name), {_FILE_ORDER}",
        [lowered, lowered],
    )


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(slots=True, frozen=True)
class Reference:
    """An occurrence of an identifier; lines and columns 1-based."""

    path: str
    line: int
    column: int
    text: str  # the line, stripped (as on disk now)
    enclosing: str  # the qualified name of the innermost definition around it, "" at top level
    is_definition: bool  # the name a definition gives itself


def references(
    snapshot: Snapshot,
    coll: str,
    root: Path,
    name: str,
    *,
    paths: PathFilter | None = None,
    limit: int = 1000,
) -> tuple[list[Reference], bool]:
    """Where the identifier `name` (the last part of a qualified name) occurs, sorted by path
    then line; (references, whether `limit` cut the list)."""
    last = name.strip().replace("::", ".").replace("/", ".").strip(".").rsplit(".", 1)[-1]
    out: list[Reference] = []
    for path, blob, owners in snapshot.occurrences(coll, last):
        if paths and not paths(path):
            continue
        lines = _lines(root / path)
        for (line, column, is_def), owner in sorted(
            zip(unpack_positions(blob), owners.split("\0"), strict=True)
        ):
            if len(out) >= limit:
                return out, True
            text = lines[line - 1].strip()[:LINE_CHARS] if line <= len(lines) else ""
            out.append(Reference(path, line, column, text, owner, is_def))
    return out, False


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return []  # gone since it was indexed: the next sync drops its occurrences
