"""The AST splitter: one chunk per definition (function, method, class...), the code between
definitions grouped into chunks of its own, oversized nodes split along their children.

Chunks never overlap and cover every line exactly once: gaps (blank lines, comments) join the
definition that follows them, so a doc comment travels with its function.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from codectxd.splitter.base import Chunk, LineIndex, pack_rows, split_lines
from codectxd.splitter.grammars import definition_of, is_comment, parser_for
from codectxd.splitter.symbols import FileSymbols, symbols_in

#: Recursion guard for pathological nesting (deeply nested expressions in generated code).
_MAX_DEPTH = 40


@dataclass(slots=True)
class _Seg:
    first: int  # 0-based row, inclusive
    last: int
    symbol: str
    kind: str
    is_def: bool


class _AstSplitter:
    def __init__(self, index: LineIndex, language: str, chunk_size: int) -> None:
        self.index = index
        self.language = language
        self.chunk_size = chunk_size
        # Definitions smaller than this may share a chunk with a neighbour (getters, constants).
        self.small = max(chunk_size // 16, 60)

    def rows(self, node: Node) -> tuple[int, int]:
        first, last = node.start_point.row, node.end_point.row
        if last > first and node.end_point.column == 0:
            last -= 1  # the node ends with its newline: it does not reach into the next line
        return first, min(last, len(self.index) - 1)

    def size(self, first: int, last: int) -> int:
        return self.index.size(first, last)

    def segments(self, children: list[Node], owner: str, kind: str, depth: int) -> list[_Seg]:
        """Segments for a sequence of sibling nodes; non-definitions are labelled `owner`."""
        out: list[_Seg] = []
        run: list[tuple[int, int, bool]] = []  # pending non-definitions: rows, is_comment

        def flush() -> None:
            out.extend(self.glue(run, owner, kind))
            run.clear()

        for child in children:
            first, last = self.rows(child)
            found = definition_of(child, self.language)
            if found is None:
                if self.size(first, last) > self.chunk_size and child.named_child_count:
                    inner = (
                        self.segments(child.named_children, owner, kind, depth + 1)
                        if depth < _MAX_DEPTH
                        else self.packed(first, last, owner, kind)
                    )
                    # A pending header (a signature before its body) joins what follows it.
                    if (
                        run
                        and inner
                        and (
                            self.size(run[0][0], inner[0].last) <= self.chunk_size
                            or self.size(run[0][0], run[-1][1]) <= self.chunk_size // 4
                        )
                    ):
                        inner[0].first = run[0][0]
                        run.clear()
                    flush()
                    out.extend(inner)
                else:
                    run.append((first, last, is_comment(child)))
                continue
            # Leading comments directly above a definition belong to it.
            while run and run[-1][2] and run[-1][1] >= first - 1:
                first = run.pop()[0]
            flush()
            name, def_kind = found
            if def_kind == "function" and kind == "class":
                def_kind = "method"
            symbol = f"{owner}.{name}" if owner and name else (name or owner)
            out.extend(self.definition(child, first, last, symbol, def_kind, depth))
        flush()
        return out

    def definition(
        self, node: Node, first: int, last: int, symbol: str, kind: str, depth: int
    ) -> list[_Seg]:
        if self.size(first, last) <= self.chunk_size:
            return [_Seg(first, last, symbol, kind, True)]
        if depth >= _MAX_DEPTH or not node.named_child_count:
            return self.packed(first, last, symbol, kind)
        inner = self.segments(node.named_children, symbol, kind, depth + 1)
        if inner:
            inner[0].first = min(inner[0].first, first)  # the signature / decorators
            inner[-1].last = max(inner[-1].last, last)
        return inner

    def glue(self, run: list[tuple[int, int, bool]], owner: str, kind: str) -> list[_Seg]:
        """Group consecutive non-definition ranges into segments of at most chunk_size."""
        out: list[_Seg] = []
        group: tuple[int, int] | None = None
        for first, last, _ in run:
            if group is not None and self.size(group[0], max(last, group[1])) <= self.chunk_size:
                group = (group[0], max(last, group[1]))
                continue
            if group is not None:
                out.extend(self.packed(group[0], group[1], owner, kind))
            group = (first, last)
        if group is not None:
            out.extend(self.packed(group[0], group[1], owner, kind))
        return out

    def packed(self, first: int, last: int, symbol: str, kind: str) -> list[_Seg]:
        return [
            _Seg(a, b, symbol, kind, False)
            for a, b in pack_rows(self.index, first, last, self.chunk_size)
        ]

    def merge_small(self, segs: list[_Seg]) -> list[_Seg]:
        """Merge neighbours when the result fits and one side is glue or a tiny definition."""
        out: list[_Seg] = []
        for seg in segs:
            if out:
                prev = out[-1]
                fits = self.size(prev.first, max(seg.last, prev.last)) <= self.chunk_size
                prev_small = not prev.is_def or self.size(prev.first, prev.last) < self.small
                seg_small = not seg.is_def or self.size(seg.first, seg.last) < self.small
                both_glue = not prev.is_def and not seg.is_def
                if fits and (both_glue or (prev_small and seg_small)):
                    out[-1] = _merged(prev, seg)
                    continue
            out.append(seg)
        return out


def _merged(a: _Seg, b: _Seg) -> _Seg:
    names: list[str] = []
    for symbol in (a.symbol, b.symbol):
        for name in symbol.split(", "):
            if name and name not in names:
                names.append(name)
    # An owner ("Path") next to its members ("Path.open") adds nothing: keep the members.
    names = [n for n in names if not any(o.startswith(n + ".") for o in names)]
    kind = a.kind if a.is_def or not b.is_def else b.kind
    return _Seg(a.first, max(a.last, b.last), ", ".join(names[:4]), kind, a.is_def or b.is_def)


def _cover(segs: list[_Seg], n_rows: int) -> list[_Seg]:
    """Make segments contiguous and non-overlapping over rows 0..n_rows-1."""
    segs = sorted(segs, key=lambda s: (s.first, s.last))
    out: list[_Seg] = []
    for seg in segs:
        if out and seg.first <= out[-1].last:
            if seg.last > out[-1].last:
                out[-1] = _merged(out[-1], seg)
            continue
        if out:
            seg.first = out[-1].last + 1  # a gap joins the segment that follows it
        else:
            seg.first = 0
        out.append(seg)
    if out:
        out[-1].last = n_rows - 1
    return out


def split_ast(
    text: str, language: str, chunk_size: int, symbols: FileSymbols | None = None
) -> list[Chunk]:
    """Split source code along its syntax tree; with `symbols`, also record its definitions
    and identifier occurrences there (one parse for both).

    Raises whatever tree-sitter raises on a grammar problem; the caller falls back to lines.
    """
    lines = split_lines(text)
    if not "".join(lines).strip():
        return []
    index = LineIndex(lines)
    tree = parser_for(language).parse(text.encode("utf-8", "surrogatepass"))
    if symbols is not None:
        symbols_in(tree, language, lines, symbols)
    splitter = _AstSplitter(index, language, chunk_size)
    segs = splitter.segments(tree.root_node.named_children, "", "", 0)
    if not segs:
        segs = splitter.packed(0, len(lines) - 1, "", "")
    segs = _cover(splitter.merge_small(_cover(segs, len(lines))), len(lines))
    chunks: list[Chunk] = []
    for seg in segs:
        if index.size(seg.first, seg.last) > chunk_size * 2 and seg.last > seg.first:
            # A merge over an overlap produced something large: cut it back by lines.
            for a, b in pack_rows(index, seg.first, seg.last, chunk_size):
                chunks.append(index.chunk(a, b, seg.symbol, seg.kind))
        else:
            chunks.append(index.chunk(seg.first, seg.last, seg.symbol, seg.kind))
    return chunks
