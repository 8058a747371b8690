"""Store writes on real Milvus Lite: rows are inserted a column at a time and read back exactly
as written, every field (clipped ones and zero vectors included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pymilvus import MilvusClient

from codectxd.store import MAX_CONTENT_BYTES, MAX_SYMBOL_BYTES, Row, Store

DIMENSION = 8
FIELDS = [
    "id", "path", "language", "ext", "start_line", "end_line", "symbol", "kind", "content",
    "content_hash", "lexical", "dense", "embedded", "file_kind",
]  # fmt: skip


def _row(i: int) -> Row:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    if i % 3:  # every third row still waits for its vector (stored as zeros)
        vector[i % DIMENSION] = 0.5
        vector[(i + 1) % DIMENSION] = -0.25
    return Row(
        id=f"id{i}", path=f"pkg/é{i % 4}.py", language="python", ext=".py", start_line=i,
        end_line=i + 2, symbol=f"name_{i}" if i != 5 else "s" * (MAX_SYMBOL_BYTES + 40),
        kind="function", content=f"def name_{i}(): ✓" if i != 7 else "x" * (MAX_CONTENT_BYTES + 9),
        content_hash=f"h{i}", lexical=f"name {i}", dense=vector, embedded=i % 3 != 0,
        file_kind="test" if i % 5 == 0 else "code",
    )  # fmt: skip


def test_rows_read_back_as_written(short_tmp: Path) -> None:
    # The column path is the one taken (a pymilvus without it gets the slower row insert).
    assert hasattr(MilvusClient, "_get_connection")
    store = Store(str(short_tmp / "m.db"))
    try:
        store.ensure_collection("cx_w", DIMENSION, {})
        rows = [_row(i) for i in range(40)]
        store.replace_files("cx_w", sorted({r.path for r in rows}), rows)
        stored = {r["id"]: r for r in store.rows_of("cx_w", 'id != ""', FIELDS)}
        assert sorted(stored) == sorted(r.id for r in rows)
        for row in rows:
            got = stored[row.id]
            for field in FIELDS:
                want = getattr(row, field)
                if field == "dense":
                    assert np.allclose(got[field], want), (row.id, got[field])
                elif field == "symbol" and row.id == "id5":
                    assert got[field] == "s" * MAX_SYMBOL_BYTES
                elif field == "content" and row.id == "id7":
                    assert got[field] == "x" * MAX_CONTENT_BYTES
                else:
                    assert got[field] == want, (row.id, field, got[field])
        # Replacing a file's rows keeps the unchanged ones and drops the others.
        path = rows[1].path
        kept = [r for r in rows if r.path == path][1:]
        store.replace_files("cx_w", [path], kept)
        left = {r["id"] for r in store.rows_of("cx_w", f'path == "{path}"', ["id"])}
        assert left == {r.id for r in kept}
    finally:
        store.close()
