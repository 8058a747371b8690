"""Every definition in a syntax tree, nested ones included (name, qualified name, kind, lines,
signature), and every identifier occurrence (name, line, column). The AST splitter's parse is
reused (`split_ast(..., symbols=FileSymbols())`), so a file is parsed once for its chunks and
its symbols, and both are committed together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tree_sitter import Node

from codectxd.splitter.grammars import WRAPPERS, definition_of

#: Signature lines are clipped to this many characters.
SIGNATURE_CHARS = 200
#: Nesting deeper than this is not walked (generated code; the splitter has the same guard).
_MAX_DEPTH = 60
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
    occurrences as a flat list of (line, column) pairs, 1-based."""

    definitions: list[Symbol] = field(default_factory=list)
    occurrences: dict[str, list[int]] = field(default_factory=dict)


def symbols_in(root: Node, language: str, lines: list[str], into: FileSymbols) -> None:
    """The definitions and identifier occurrences under `root`, added to `into`."""
    out = into.definitions
    occurrences = into.occurrences
    # (node, owner's qualified name, owner's kind, depth)
    stack: list[tuple[Node, str, str, int]] = [
        (child, "", "", 0) for child in reversed(root.named_children)
    ]
    while stack:
        node, owner, owner_kind, depth = stack.pop()
        if node.type in IDENTIFIERS and not node.named_child_count:
            text = node.text or b""
            if 0 < len(text) <= _MAX_NAME:
                row, column = node.start_point
                name = text.decode("utf-8", "replace")
                occurrences.setdefault(name, []).extend((row + 1, column + 1))
            continue
        found = definition_of(node, language) if node.is_named else None
        inner = _wrapped(node, language) if found is not None else None
        if found is None or not found[0]:
            children, next_owner, next_kind = node.named_children, owner, owner_kind
        else:
            name, kind = found
            if kind == "function" and owner_kind == "class":
                kind = "method"
            qualified = f"{owner}.{name}" if owner else name
            defined = inner or node
            def_row = defined.start_point.row
            out.append(
                Symbol(
                    name=name.rsplit(".", 1)[-1],
                    qualified=qualified,
                    kind=kind,
                    start_line=node.start_point.row + 1,
                    end_line=_last_row(node) + 1,
                    def_line=def_row + 1,
                    signature=_line(lines, def_row),
                )
            )
            children, next_owner, next_kind = defined.named_children, qualified, kind
        if depth < _MAX_DEPTH:
            stack.extend((c, next_owner, next_kind, depth + 1) for c in reversed(children))
    out.sort(key=lambda s: (s.start_line, s.def_line))


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
