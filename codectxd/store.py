"""The vector store: Milvus (Lite file by default, or a server / Zilliz Cloud by URI).

One collection per (repository, embedding model, dimension): vectors of two models can never
meet, searches on one repo stay small, and a model switch builds a new collection beside the old.
Each row carries a dense vector and a code-aware lexical text that Milvus turns into a BM25
sparse vector itself (a `Function`); `codectxd.search` fuses the two result lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codectxd.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
COLLECTION_PREFIX = "cx"
#: Field limits (Milvus VARCHAR max_length counts bytes).
MAX_PATH_BYTES = 4096
MAX_CONTENT_BYTES = 60_000
MAX_SYMBOL_BYTES = 512
OUTPUT_FIELDS = ["id", "path", "language", "start_line", "end_line", "symbol", "kind", "content"]


@dataclass(slots=True, frozen=True)
class Row:
    """One chunk as stored."""

    id: str
    path: str
    language: str
    ext: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    content: str
    content_hash: str
    lexical: str
    dense: np.ndarray


@dataclass(slots=True)
class Hit:
    id: str
    path: str
    language: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    content: str
    score: float


def collection_name(repo_key: str, model_identity: str, dimension: int) -> str:
    """`cx_<repo key>_<model slug>_<dim>_<hash>`: valid in Milvus and filesystem-safe in Lite."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "_", model_identity).strip("_").lower()[:40]
    digest = hashlib.blake2b(f"{model_identity}|{dimension}".encode(), digest_size=4).hexdigest()
    return f"{COLLECTION_PREFIX}_{repo_key}_{slug}_{dimension}_{digest}"


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clip(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


class Store:
    """Thin, typed wrapper over `pymilvus.MilvusClient` for our schema."""

    def __init__(self, uri: str, token: str = "") -> None:
        from pymilvus import MilvusClient  # heavy import: only when a store is really opened

        _quiet_library_logs()
        self.uri = uri
        try:
            self.client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        except Exception as exc:
            if "://" not in uri and _locked(uri):
                raise StoreError(
                    f"the index at {uri} is in use by another process (a running codectxd?); "
                    f"use codectx-client to talk to the daemon, or stop it first"
                ) from None
            raise StoreError(f"cannot open the Milvus store at {uri}: {_reason(exc)}") from None
        # Milvus Lite runs in this process; serialise writes so a delete+insert pair of one file
        # is not interleaved with another writer. Searches do not take this lock.
        self._write_lock = threading.Lock()
        self._known: set[str] = set()  # collections created or loaded by this process

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing is best effort at shutdown
            log.debug("closing the Milvus client failed", exc_info=True)
        if "://" not in self.uri:
            # pymilvus never stops Milvus Lite's engine process (nor frees the file lock).
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)
            except Exception:  # noqa: BLE001
                log.debug("stopping the Milvus Lite engine failed", exc_info=True)

    # --- collections ----------------------------------------------------------------------

    def ensure_collection(self, name: str, dimension: int, meta: dict[str, Any]) -> None:
        """Create the collection (schema, BM25 function, indexes) if it does not exist.

        Also completes a collection whose creation was interrupted (the process was killed
        between creating the schema and its indexes): missing indexes are created.
        """
        if name in self._known:
            return
        try:
            if not self.client.has_collection(name):
                self.client.create_collection(
                    name, schema=self._schema(dimension, meta), index_params=self._indexes()
                )
                log.info("created collection %s (dimension %d)", name, dimension)
            else:
                present = set(self.client.list_indexes(name))
                missing = self._indexes(skip=present)
                if missing is not None:
                    log.warning("collection %s lacks indexes %s; creating them", name,
                                sorted({"dense", "sparse"} - present))
                    self.client.create_index(name, missing)
            self.client.load_collection(name)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot create collection {name}: {_reason(exc)}") from None
        self._known.add(name)

    def _schema(self, dimension: int, meta: dict[str, Any]) -> Any:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False,
            description=json.dumps({"schema": SCHEMA_VERSION, **meta})[:1000],
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
        schema.add_field("language", DataType.VARCHAR, max_length=32)
        schema.add_field("ext", DataType.VARCHAR, max_length=32)
        schema.add_field("start_line", DataType.INT64)
        schema.add_field("end_line", DataType.INT64)
        schema.add_field("symbol", DataType.VARCHAR, max_length=MAX_SYMBOL_BYTES)
        schema.add_field("kind", DataType.VARCHAR, max_length=32)
        schema.add_field("content", DataType.VARCHAR, max_length=65535)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field(
            "lexical", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
            analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]},
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_function(Function(
            name="bm25", function_type=FunctionType.BM25,
            input_field_names=["lexical"], output_field_names=["sparse"],
        ))
        return schema

    def _indexes(self, skip: set[str] | None = None) -> Any:
        """Index params for the vector fields not in `skip` (None when nothing is missing)."""
        skip = skip or set()
        index = self.client.prepare_index_params()
        added = False
        if "dense" not in skip:
            index.add_index("dense", index_type="AUTOINDEX", metric_type="IP")
            added = True
        if "sparse" not in skip:
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            added = True
        return index if added else None

    def _ensure_loaded(self, name: str) -> None:
        """Collections opened from disk start released; load them once per process."""
        if name in self._known:
            return
        try:
            self.client.load_collection(name)
        except Exception as exc:
            raise StoreError(f"cannot load collection {name}: {_reason(exc)}") from None
        self._known.add(name)

    def has_collection(self, name: str) -> bool:
        try:
            return bool(self.client.has_collection(name))
        except Exception as exc:
            raise StoreError(f"cannot reach the Milvus store: {_reason(exc)}") from None

    def list_collections(self, prefix: str = COLLECTION_PREFIX + "_") -> list[str]:
        try:
            return [n for n in self.client.list_collections() if n.startswith(prefix)]
        except Exception as exc:
            raise StoreError(f"cannot list collections: {_reason(exc)}") from None

    def drop_collection(self, name: str) -> None:
        with self._write_lock:
            try:
                if self.client.has_collection(name):
                    self.client.drop_collection(name)
            except Exception as exc:
                raise StoreError(f"cannot drop collection {name}: {_reason(exc)}") from None
            self._known.discard(name)

    # --- writes ---------------------------------------------------------------------------

    def replace_files(self, name: str, paths: Sequence[str], rows: Sequence[Row]) -> None:
        """Delete every row of `paths`, then insert `rows` (which belong to those paths)."""
        with self._write_lock:
            try:
                if paths:
                    self._delete_paths_locked(name, paths)
                if rows:
                    self.client.insert(name, [self._row_dict(r) for r in rows])
            except Exception as exc:
                raise StoreError(f"writing to collection {name} failed: {_reason(exc)}") from None

    def delete_paths(self, name: str, paths: Sequence[str]) -> None:
        with self._write_lock:
            try:
                self._delete_paths_locked(name, paths)
            except Exception as exc:
                raise StoreError(
                    f"deleting from collection {name} failed: {_reason(exc)}"
                ) from None

    def _delete_paths_locked(self, name: str, paths: Sequence[str]) -> None:
        for start in range(0, len(paths), 200):
            batch = paths[start : start + 200]
            expr = (f"path == {quote(batch[0])}" if len(batch) == 1
                    else f"path in [{', '.join(quote(p) for p in batch)}]")
            self.client.delete(name, filter=expr)

    @staticmethod
    def _row_dict(row: Row) -> dict[str, Any]:
        return {
            "id": row.id,
            "path": _clip(row.path, MAX_PATH_BYTES),
            "language": row.language[:32],
            "ext": row.ext[:32],
            "start_line": row.start_line,
            "end_line": row.end_line,
            "symbol": _clip(row.symbol, MAX_SYMBOL_BYTES),
            "kind": row.kind[:32],
            "content": _clip(row.content, MAX_CONTENT_BYTES),
            "content_hash": row.content_hash,
            "lexical": _clip(row.lexical, MAX_CONTENT_BYTES) or "_",
            "dense": row.dense.tolist(),
        }

    # --- reads ----------------------------------------------------------------------------

    def count(self, name: str, expr: str = "") -> int:
        self._ensure_loaded(name)
        try:
            result = self.client.query(name, filter=expr or "", output_fields=["count(*)"])
        except Exception as exc:
            raise StoreError(f"cannot count rows of {name}: {_reason(exc)}") from None
        return int(result[0]["count(*)"]) if result else 0

    def rows_of(self, name: str, expr: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """All rows matching `expr` (iterating, so large results are fine)."""
        out: list[dict[str, Any]] = []
        self._ensure_loaded(name)
        try:
            iterator = self.client.query_iterator(
                name, batch_size=1000, filter=expr, output_fields=list(fields)
            )
            while True:
                batch = iterator.next()
                if not batch:
                    iterator.close()
                    break
                out.extend(batch)
        except Exception as exc:
            raise StoreError(f"cannot read rows of {name}: {_reason(exc)}") from None
        return out

    def search(
        self,
        name: str,
        *,
        dense: np.ndarray | None = None,
        lexical: str | None = None,
        limit: int,
        expr: str = "",
    ) -> list[Hit]:
        """Dense (vector) or lexical (BM25) search, best first; give exactly one of the two.

        Hybrid fusion happens in `codectxd.search`, where its parameters are tuned.
        """
        if (dense is None) == (lexical is None):
            raise ValueError("give exactly one of dense and lexical")
        if dense is not None:
            data: list[Any] = [dense.tolist()]
            field, params = "dense", {"metric_type": "IP"}
        else:
            data = [lexical]
            field, params = "sparse", {"metric_type": "BM25",
                                       "params": {"drop_ratio_search": 0.0}}
        self._ensure_loaded(name)
        try:
            result = self.client.search(
                name, data=data, anns_field=field, search_params=params, limit=limit,
                filter=expr, output_fields=OUTPUT_FIELDS,
            )
        except Exception as exc:
            raise StoreError(f"search in {name} failed: {_reason(exc)}") from None
        hits: list[Hit] = []
        for item in result[0] if result else []:
            entity = item.get("entity", item)
            hits.append(Hit(
                id=str(entity.get("id", item.get("id"))), path=entity["path"],
                language=entity["language"], start_line=int(entity["start_line"]),
                end_line=int(entity["end_line"]), symbol=entity["symbol"], kind=entity["kind"],
                content=entity["content"], score=float(item.get("distance", 0.0)),
            ))
        return hits


def _locked(path: str) -> bool:
    """Whether another process holds Milvus Lite's lock on a local database file."""
    import fcntl
    import os

    lock_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below
    except OSError:
        return False
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(handle, fcntl.LOCK_UN)
    except OSError:
        return True
    finally:
        handle.close()
    return False


def _quiet_library_logs() -> None:
    """pymilvus logs every failed RPC with a traceback and milvus-lite's in-process gRPC server
    logs unimplemented calls; we turn failures into StoreErrors, so keep their logs quiet."""
    for name in ("pymilvus", "grpc._server", "milvus_lite", "faiss", "faiss.loader"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # milvus_lite 2.5 logs through the root logger; its failures reach users as StoreErrors.
    root = logging.getLogger()
    if not any(getattr(f, "codectx_quiet", False) for f in root.filters):
        def drop_milvus_lite(record: logging.LogRecord) -> bool:
            return "milvus_lite" not in record.pathname

        drop_milvus_lite.codectx_quiet = True  # type: ignore[attr-defined]
        root.addFilter(drop_milvus_lite)


def _reason(exc: BaseException) -> str:
    """A one-line reason from a pymilvus / milvus-lite exception (never a traceback)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:500]
