"""The chunk type and the line arithmetic every splitter shares."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate


@dataclass(slots=True, frozen=True)
class Chunk:
    """A contiguous range of lines of one file.

    Lines are 1-based and inclusive, counted on '\\n' only (as tree-sitter and editors do).
    """

    start_line: int
    end_line: int
    content: str
    symbol: str = ""
    kind: str = ""


def split_lines(text: str) -> list[str]:
    """Lines of `text`, each keeping its '\\n'; no empty last line for a trailing newline.

    `str.splitlines` also splits on \\x0b, \\x0c, U+2028 and others, which would shift line
    numbers against tree-sitter rows and editors; split on '\\n' only.
    """
    if not text:
        return []
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


class LineIndex:
    """Character sizes of line ranges in O(1), and chunk construction from 0-based rows."""

    __slots__ = ("lines", "_cum")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self._cum = [0, *accumulate(len(line) for line in lines)]

    def __len__(self) -> int:
        return len(self.lines)

    def size(self, first_row: int, last_row: int) -> int:
        """Characters in rows first_row..last_row (0-based, inclusive)."""
        return self._cum[last_row + 1] - self._cum[first_row]

    def text(self, first_row: int, last_row: int) -> str:
        return "".join(self.lines[first_row : last_row + 1])

    def chunk(self, first_row: int, last_row: int, symbol: str = "", kind: str = "") -> Chunk:
        return Chunk(first_row + 1, last_row + 1, self.text(first_row, last_row), symbol, kind)

    def is_blank(self, row: int) -> bool:
        return not self.lines[row].strip()


def pack_rows(index: LineIndex, first: int, last: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut rows first..last into consecutive ranges of at most `max_chars` (no overlap).

    Prefers to cut after a blank line or before a line with less indentation, when one lies in
    the last third of the window; a single line longer than `max_chars` stays whole.
    """
    ranges: list[tuple[int, int]] = []
    start = first
    while start <= last:
        if index.size(start, last) <= max_chars:
            ranges.append((start, last))
            break
        end = start
        while end + 1 <= last and index.size(start, end + 1) <= max_chars:
            end += 1
        cut = _best_cut(index, start, end)
        ranges.append((start, cut))
        start = cut + 1
    return ranges


def _best_cut(index: LineIndex, start: int, end: int) -> int:
    """The row to end a window start..end on: a natural boundary in its last third if any."""
    window_floor = start + (end - start) * 2 // 3
    best, best_score = end, -1
    for row in range(end, window_floor, -1):
        if row + 1 >= len(index.lines):
            return end
        score = 0
        if index.is_blank(row):
            score = 3
        else:
            nxt = index.lines[row + 1]
            indent = len(nxt) - len(nxt.lstrip())
            if nxt.strip() and indent == 0:
                score = 2
        if score > best_score:
            best, best_score = row, score
        if score == 3:
            break
    return best if best_score > 0 else end
