"""Search responses decoded a column at a time.

pymilvus 2.6 turns a search response into hits cell by cell, looking up each cell's field type
and storage slot again (~7 µs a cell): a hybrid search's two lists of 30 hits × 9 fields cost
the daemon ~3 ms of CPU under the GIL, a fifth of its work per search with many clients. The
response is columnar (one repeated field per output field), so reading each column whole gives
the same hits for a fraction of that (docs/decisions.md §12.1).

Only responses whose output fields are all plain scalars are decoded here; anything else
(vectors, JSON, arrays, nullable or dynamic fields, element offsets, highlights, rounding) goes
to pymilvus's own decoder, unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any

from pymilvus import DataType
from pymilvus.client import grpc_handler
from pymilvus.client.search_result import Hit, SearchResult

#: Field types stored as one plain repeated protobuf field each.
_PLAIN = frozenset(
    {
        DataType.BOOL,
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.FLOAT,
        DataType.DOUBLE,
        DataType.VARCHAR,
    }
)


class ColumnarHits(list):  # type: ignore[type-arg]
    """One query's hits, with the attributes of pymilvus's per-query list."""

    def __init__(self, ids: Any, distances: Any) -> None:
        super().__init__()
        self.ids = list(ids)
        self.distances = list(distances)
        self.has_materialized = True

    def materialize(self) -> None:
        """Nothing to do: every field was read already."""

    def get_raw_item(self, idx: int) -> Any:
        return self[idx]


class ColumnarSearchResult(SearchResult):
    """pymilvus's `SearchResult` (same attributes and shape: a list of hits per query),
    whose hits are read a column at a time when the response allows it."""

    def _parse_search_result_data(self, res: Any, round_decimal: int | None) -> Any:
        columns = _plain_columns(res, round_decimal)
        if columns is None:
            return super()._parse_search_result_data(res, round_decimal)
        pk_name = res.primary_field_name or "id"
        ids = res.ids.str_id.data if res.ids.HasField("str_id") else res.ids.int_id.data
        scores = res.scores
        data: list[ColumnarHits] = []
        start = 0
        for topk in res.topks:
            hits = ColumnarHits(ids[start : start + topk], scores[start : start + topk])
            for i in range(start, start + topk):
                entity = {name: values[i] for name, values in columns}
                hits.append(Hit({pk_name: ids[i], "distance": scores[i], "entity": entity},
                                pk_name=pk_name))  # fmt: skip
            data.append(hits)
            start += topk
        return data


def _plain_columns(res: Any, round_decimal: int | None) -> list[tuple[str, list[Any]]] | None:
    """Each output field's values as a list, or None when the response needs pymilvus's own
    decoding."""
    if (isinstance(round_decimal, int) and round_decimal > 0) or res.HasField("element_indices"):
        return None
    if len(res.highlight_results) or not res.HasField("ids"):
        return None
    fields = res.fields_data
    if set(res.output_fields) - {f.field_name for f in fields}:  # dynamic fields
        return None
    columns: list[tuple[str, list[Any]]] = []
    total = len(res.scores)
    for field in fields:
        if field.type not in _PLAIN or len(field.valid_data) or not field.HasField("scalars"):
            return None
        slot = field.scalars.WhichOneof("data")
        values = list(getattr(field.scalars, slot).data) if slot else []
        if len(values) != total:
            return None
        columns.append((field.field_name, values))
    return columns


#: The method overridden, as pymilvus 2.6 calls it.
_PARSE_PARAMETERS = ("self", "res", "round_decimal")


def _parameters(fn: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def install() -> bool:
    """Make pymilvus's search calls build `ColumnarSearchResult`s; False when its handler no
    longer builds results by that name or the method overridden changed (a pymilvus that
    changed: its own decoder stays)."""
    current = getattr(grpc_handler, "SearchResult", None)
    if current is ColumnarSearchResult:
        return True
    parse = getattr(SearchResult, "_parse_search_result_data", None)
    if current is not SearchResult or parse is None or _parameters(parse) != _PARSE_PARAMETERS:
        return False
    grpc_handler.SearchResult = ColumnarSearchResult  # type: ignore[misc]
    return True
