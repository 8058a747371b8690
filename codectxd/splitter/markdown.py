"""Markdown split by headings: each section is a chunk named by its heading path."""

from __future__ import annotations

import re

from codectxd.splitter.base import Chunk, LineIndex, pack_rows, split_lines

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def split_markdown(text: str, chunk_size: int) -> list[Chunk]:
    """Sections start at ATX headings outside code fences; tiny neighbours are merged up to
    `chunk_size` and oversized sections are cut by lines. Symbols read "Guide > Install"."""
    lines = split_lines(text)
    if not "".join(lines).strip():
        return []
    index = LineIndex(lines)
    sections: list[tuple[int, str]] = [(0, "")]  # (first row, heading path)
    trail: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    fence: str | None = None
    for row, line in enumerate(lines):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2)
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, title)]
            path = " > ".join(t for _, t in trail)
            if row == 0:
                sections[0] = (0, path)
            else:
                sections.append((row, path))
    bounds = [
        (first, (sections[i + 1][0] - 1) if i + 1 < len(sections) else len(lines) - 1, name)
        for i, (first, name) in enumerate(sections)
    ]
    chunks: list[Chunk] = []
    pending: tuple[int, int, str] | None = None
    for first, last, name in bounds:
        if pending and index.size(pending[0], last) <= chunk_size:
            pending = (pending[0], last, pending[2] or name)
            continue
        if pending:
            chunks.extend(_emit(index, pending, chunk_size))
        pending = (first, last, name)
    if pending:
        chunks.extend(_emit(index, pending, chunk_size))
    return chunks


def _emit(index: LineIndex, section: tuple[int, int, str], chunk_size: int) -> list[Chunk]:
    first, last, name = section
    return [
        index.chunk(a, b, name, "section") for a, b in pack_rows(index, first, last, chunk_size)
    ]
