"""Every definition in a syntax tree, nested ones included (name, qualified name, kind, lines,
signature), and every identifier occurrence (name, line, column). The AST splitter's parse is
reused (`split_ast(..., symbols=FileSymbols())`), so a file is parsed once for its chunks and
its symbols, and both are committed together.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass, field

from tree_sitter import Language, Node, Query, QueryCursor, Tree

from codectxd.splitter.grammars import (
    DEFINITIONS,
    JS_LANGUAGES,
    VARIABLE_DECLARATIONS,
    WRAPPERS,
    definition_of,
)

#: Signature lines are clipped to this many characters.
SIGNATURE_CHARS = 200
#: Leaf nodes that name something, across the grammars (keywords are anonymous nodes and
#: comments and string contents are not identifiers, so neither is counted).
IDENTIFIERS = frozenset(
    {
        "identifier",
        "type_identifier",
        "field_identifier",
        "property_identifier",
        "simple_identifier",
        "shorthand_property_identifier",
        "shorthand_property_identifier_pattern",
        "private_property_identifier",
        "namespace_identifier",
        "constant",
        "name",
    }
)
#: Identifiers longer than this are not recorded (minified or generated names).
_MAX_NAME = 120


@dataclass(slots=True, frozen=True)
class Symbol:
    """A definition in one file; lines are 1-based and inclusive."""

    name: str
    qualified: str  # `Class.method`
    kind: str  # function, method, class, type, module
    start_line: int  # its first line, decorators and export keywords included
    end_line: int
    def_line: int  # the line of the definition itself (`def`, `class`...)
    signature: str  # that line, stripped


@dataclass(slots=True)
class FileSymbols:
    """What one file defines and names: definitions in file order, and each identifier's
    occurrences as a flat list of (line, column, is_definition) triples (1-based) with the
    qualified name of the definition around each one ("" at the top level)."""

    definitions: list[Symbol] = field(default_factory=list)
    occurrences: dict[str, list[int]] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)


def symbols_in(tree: Tree, language: str, lines: list[str], into: FileSymbols) -> None:
    """The definitions and identifier occurrences of a parsed file, added to `into`.

    A tree-sitter query finds the identifiers and the candidate definitions in C (walking
    every node in Python cost twice the split itself); nesting, and so qualified names and
    each occurrence's enclosing definition, follows from the definitions' byte ranges."""
    captures = QueryCursor(_query(tree.language, language)).captures(tree.root_node)
    found = _definitions(captures.get("def", []), language, lines)
    into.definitions.extend(sorted((d.symbol for d in found),
                                   key=lambda s: (s.start_line, s.def_line)))  # fmt: skip
    def_at = {d.name_at for d in found if d.name_at is not None}
    def_named: dict[int, set[str]] = {}
    for d in found:
        if d.name_at is None:
            def_named.setdefault(d.symbol.def_line - 1, set()).add(d.symbol.name)
    occurrences, owners = into.occurrences, into.owners
    open_defs: list[_Found] = []  # the definitions around the current position, innermost last
    pending = iter(found)  # in start order
    upcoming = next(pending, None)
    for node in sorted(captures.get("id", []), key=_START):
        at = node.start_byte
        while upcoming is not None and upcoming.start_byte <= at:
            while open_defs and open_defs[-1].end_byte <= upcoming.start_byte:
                open_defs.pop()
            open_defs.append(upcoming)
            upcoming = next(pending, None)
        while open_defs and open_defs[-1].end_byte <= at:
            open_defs.pop()
        text = node.text or b""
        if not 0 < len(text) <= _MAX_NAME:
            continue
        row, column = node.start_point
        name = text.decode("utf-8", "replace")
        named = def_named.get(row)
        is_def = (row, column) in def_at or (named is not None and name in named)
        if is_def and named is not None:
            named.discard(name)
        positions = occurrences.get(name)
        if positions is None:
            positions = occurrences[name] = []
            owners[name] = []
        positions += (row + 1, column + 1, int(is_def))
        owners[name].append(open_defs[-1].symbol.qualified if open_defs else "")


@dataclass(slots=True)
class _Found:
    symbol: Symbol
    start_byte: int
    end_byte: int
    name_at: tuple[int, int] | None  # (row, column) of its name node, when it has one


def _definitions(candidates: list[Node], language: str, lines: list[str]) -> list[_Found]:
    """The definitions among the query's candidates, in start order, with qualified names
    from their nesting (a wrapper — decorators, `export` — stands for what it wraps)."""
    wrapped: set[int] = set()
    out: list[_Found] = []
    stack: list[_Found] = []
    for node in sorted(candidates, key=lambda n: (n.start_byte, -n.end_byte)):
        if node.id in wrapped:
            continue
        found = definition_of(node, language)
        if found is None or not found[0]:
            continue
        inner = _wrapped(node, language)
        if inner is not None:
            wrapped.add(inner.id)
        defined = inner or node
        while stack and stack[-1].end_byte <= node.start_byte:
            stack.pop()
        owner = stack[-1].symbol if stack else None
        name, kind = found
        if kind == "function" and owner is not None and owner.kind == "class":
            kind = "method"
        def_row = defined.start_point.row
        name_node = defined.child_by_field_name("name")
        item = _Found(
            Symbol(
                name=name.rsplit(".", 1)[-1],
                qualified=f"{owner.qualified}.{name}" if owner else name,
                kind=kind,
                start_line=node.start_point.row + 1,
                end_line=_last_row(node) + 1,
                def_line=def_row + 1,
                signature=_line(lines, def_row),
            ),
            node.start_byte,
            node.end_byte,
            (name_node.start_point.row, name_node.start_point.column)
            if name_node is not None and not name_node.named_child_count
            else None,
        )
        out.append(item)
        stack.append(item)
    return out


_START = operator.attrgetter("start_byte")
_queries: dict[str, Query] = {}  # by language: one grammar each
_queries_lock = threading.Lock()


def _query(grammar: Language, language: str) -> Query:
    """The language's query: its identifier kinds, and every node kind that may define."""
    query = _queries.get(language)
    if query is None:
        with _queries_lock:
            kinds = [k for k in IDENTIFIERS if grammar.id_for_node_kind(k, True)]
            defs = {*DEFINITIONS.get(language, {}), *WRAPPERS}
            if language in JS_LANGUAGES:
                defs |= {"expression_statement", *VARIABLE_DECLARATIONS}
            defs = {k for k in defs if grammar.id_for_node_kind(k, True)}
            source = ""
            if kinds:
                source += "[" + " ".join(f"({k})" for k in sorted(kinds)) + "] @id\n"
            if defs:
                source += "[" + " ".join(f"({k})" for k in sorted(defs)) + "] @def\n"
            query = _queries[language] = Query(grammar, source)
    return query


def _wrapped(node: Node, language: str) -> Node | None:
    """The definition a wrapper (decorators, `export`) holds, else None."""
    if node.type not in WRAPPERS:
        return None
    for child in node.named_children:
        if child.type in WRAPPERS:
            return _wrapped(child, language) or child
        if definition_of(child, language) is not None:
            return child
    return None


def _last_row(node: Node) -> int:
    last = node.end_point.row
    if last > node.start_point.row and node.end_point.column == 0:
        last -= 1  # the node ends with its newline
    return last


def _line(lines: list[str], row: int) -> str:
    return lines[row].strip()[:SIGNATURE_CHARS] if 0 <= row < len(lines) else ""
