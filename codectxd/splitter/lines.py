"""The line splitter: fixed-size windows of whole lines with overlap; the universal fallback."""

from __future__ import annotations

from codectxd.splitter.base import Chunk, LineIndex, split_lines


def split_by_lines(text: str, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Chunks of whole lines of at most `chunk_size` characters, overlapping by about
    `chunk_overlap` characters. Every line is in some chunk; starts strictly increase.

    >>> [(c.start_line, c.end_line) for c in split_by_lines("a\\nb\\nc\\n", 4, 2)]
    [(1, 2), (2, 3)]
    """
    lines = split_lines(text)
    if not "".join(lines).strip():
        return []
    index = LineIndex(lines)
    chunks: list[Chunk] = []
    start, last = 0, len(lines) - 1
    while True:
        end = start
        while end < last and index.size(start, end + 1) <= chunk_size:
            end += 1
        chunks.append(index.chunk(start, end))
        if end >= last:
            return chunks
        # Step back from the end to cover ~chunk_overlap characters, but always move forward.
        next_start = end + 1
        while next_start - 1 > start and index.size(next_start - 1, end) <= chunk_overlap:
            next_start -= 1
        start = next_start
