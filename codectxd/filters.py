"""Search filters (paths, languages, extensions): the part Milvus can evaluate, as a filter
expression, and the exact check done in Python for globs Milvus cannot express."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pathspec

from codectxd.store import quote

_GLOB_CHARS = set("*?[")


@dataclass(slots=True, frozen=True)
class Filters:
    """Search filters; empty means no restriction."""

    paths: tuple[str, ...] = ()  # path prefixes ("src/") or globs ("src/**/*.py", "*.go")
    languages: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()  # "py" or ".py"


def _like_prefix(prefix: str) -> str | None:
    """A Milvus `like` pattern matching every path that starts with `prefix` (a superset: the
    exact check is `PathFilter.__call__`); None when no useful pattern exists.

    Milvus Lite 2.5's `like` has no working escape for its wildcards (a backslash before `_` or
    `%` makes the pattern match nothing), so the prefix is cut at the first `_`, `%` or
    backslash: a shorter prefix still matches every wanted path.
    """
    cut = len(prefix)
    for special in "_%\\":
        at = prefix.find(special)
        if at != -1:
            cut = min(cut, at)
    head = prefix[:cut]
    if not head:
        return None
    return quote(head + "%")


def _literal_prefix(glob: str) -> str:
    """The directory part of a glob before its first wildcard ('' if it starts with one)."""
    head = ""
    for ch in glob:
        if ch in _GLOB_CHARS:
            break
        head += ch
    return head.rsplit("/", 1)[0] + "/" if "/" in head else ""


class PathFilter:
    """Matches repository-relative paths against prefixes and gitignore-style globs."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.prefixes = tuple(p.removeprefix("./") for p in patterns if not (set(p) & _GLOB_CHARS))
        globs = [p for p in patterns if set(p) & _GLOB_CHARS]
        self.spec = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
        self.globs = tuple(globs)

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.spec)

    def __call__(self, path: str) -> bool:
        for prefix in self.prefixes:
            base = prefix.rstrip("/")
            if path == base or path.startswith(base + "/"):
                return True
        return self.spec is not None and self.spec.match_file(path)

    def milvus_expr(self) -> str:
        """A `like` disjunction that over-approximates the filter (exactness checked after)."""
        heads = [*self.prefixes, *(_literal_prefix(g) for g in self.globs)]
        if not heads or any(h == "" for h in heads):
            return ""
        likes = [_like_prefix(h) for h in heads]
        if any(like is None for like in likes):
            return ""
        return "(" + " or ".join(f"path like {like}" for like in likes) + ")"


def build_expr(filters: Filters, path_filter: PathFilter) -> str:
    clauses: list[str] = []
    if filters.languages:
        clauses.append(f"language in [{', '.join(quote(x.lower()) for x in filters.languages)}]")
    if filters.extensions:
        exts = [x.lower().lstrip(".") for x in filters.extensions]
        clauses.append(f"ext in [{', '.join(quote(x) for x in exts)}]")
    if path_filter:
        expr = path_filter.milvus_expr()
        if expr:
            clauses.append(expr)
    return " and ".join(clauses)
