"""The vector store: Milvus (Lite file by default, or a server / Zilliz Cloud by URI).

One collection per (repository, embedding model, dimension): vectors of two models can never
meet, searches on one repo stay small, and a model switch builds a new collection beside the old.
Each row carries a dense vector and a code-aware lexical text that Milvus turns into a BM25
sparse vector itself (a `Function`); `codectxd.search` fuses the two result lists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from codectxd.batching import Batcher
from codectxd.errors import StoreError
from codectxd.image import Changed, Image, Images
from codectxd.milvus import MilvusConnection
from codectxd.residency import Residency

log = logging.getLogger(__name__)

#: Part of every collection's name: a schema change builds new collections (the previous ones
#: keep serving searches by keywords until the new ones are complete, as after a model change).
SCHEMA_VERSION = 2
COLLECTION_PREFIX = "cx"
#: Field limits (Milvus VARCHAR max_length counts bytes).
MAX_PATH_BYTES = 4096
MAX_CONTENT_BYTES = 60_000
MAX_SYMBOL_BYTES = 512
OUTPUT_FIELDS = [
    "id", "path", "language", "start_line", "end_line", "symbol", "kind", "content", "file_kind"
]  # fmt: skip
#: Dense searches see only rows whose vector is real (the first phase stores zero vectors).
EMBEDDED_ONLY = "embedded == true"


T = TypeVar("T")
P = ParamSpec("P")


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
    dense: np.ndarray  # zeros until the chunk is embedded
    embedded: bool = True
    file_kind: str = "code"


@dataclass(slots=True)
class _Opened:
    """What this engine knows of a collection it has loaded."""

    has_rows: bool  # has ever held a row (deleting them all leaves its BM25 statistics valid)


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
    file_kind: str = ""


def collection_name(repo_key: str, model_identity: str, dimension: int) -> str:
    """`cx_<repo key>_<model slug>_<dim>_<hash>`: valid in Milvus and filesystem-safe in Lite."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "_", model_identity).strip("_").lower()[:40]
    identity = f"{model_identity}|{dimension}|s{SCHEMA_VERSION}"
    digest = hashlib.blake2b(identity.encode(), digest_size=4).hexdigest()
    return f"{COLLECTION_PREFIX}_{repo_key}_{slug}_{dimension}_{digest}"


def repo_collections(store: Store, repo_key: str) -> list[str]:
    """Every collection of one repository (one per embedding model and dimension)."""
    return store.list_collections(f"{COLLECTION_PREFIX}_{repo_key}_")


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clip(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def _in_use(
    method: Callable[Concatenate[Store, str, P], T],
) -> Callable[Concatenate[Store, str, P], T]:
    """A call on collection `name` (the first argument): not released while it runs."""

    @functools.wraps(method)
    def call(self: Store, name: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.residency.using(name):
            return method(self, name, *args, **kwargs)

    return call


class Store:
    """Thin, typed wrapper over `pymilvus.MilvusClient` for our schema.

    Every call goes through `_run`, which turns failures into `StoreError`s and, when the
    engine has gone away (its process was killed, the server restarted), reconnects once —
    starting a new Milvus Lite engine — and retries the call.
    """

    def __init__(self, uri: str, token: str = "", *, open_now: bool = True) -> None:
        """The store at `uri`, opened in the background (at once, or with `open_now` False
        at `open_soon` or the first call that needs Milvus)."""
        self._conn = MilvusConnection(uri, token, on_reconnect=self._forget_open, open_now=open_now)
        self.uri = uri
        # Large collections' search images (`codectxd.image`), beside a Milvus Lite file: any
        # store that writes the file invalidates them. (A server keeps collections loaded.)
        self.images = Images(Path(uri).parent / "images") if self._conn.local else None
        # Per collection: writes so far (an image read across a write is not published) and
        # when the last one was made (images are written once a collection is quiet).
        self._writes: dict[str, int] = {}
        self._last_write: dict[str, float] = {}
        self._started = time.monotonic()
        self._loading: set[str] = set()  # loads started for a search its image answered
        self._small: dict[str, int] = {}  # too few rows for an image, as of that many writes
        # Serialise writes so a delete+insert pair of one file is not interleaved with another
        # writer. Searches do not take this lock.
        self._write_lock = threading.Lock()
        # Collections this engine has verified (indexes present) and loaded, and whether each
        # has ever held a row. Guarded per collection: a search waits for a creation or a load
        # in progress instead of asking Milvus about a half-made collection.
        self._open: dict[str, _Opened] = {}
        self._open_locks: dict[str, threading.Lock] = {}
        self._open_locks_guard = threading.Lock()
        # Released after resting and not loaded since (complete: a periodic sync that finds
        # nothing to write does not load one again, see `ensure_collection`).
        self._resting: set[str] = set()
        self.residency = Residency()
        # Concurrent searches of one collection with the same field, filter and depth go to
        # Milvus as one request (`codectxd.batching`).
        self._searches: dict[_SearchKey, Batcher[Any, list[Hit]]] = {}
        self._searches_guard = threading.Lock()

    def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        return self._conn.run(what, fn)

    def _forget_open(self) -> None:
        # A new engine has loaded nothing, and may not hold every collection the old one did.
        self._open.clear()
        self._resting.clear()

    def open_soon(self) -> None:
        """Start opening Milvus in the background, if nothing has yet."""
        self._conn.open_soon()

    def wait_open(self) -> None:
        """Block until Milvus is open (raises its `StoreError` when it cannot be)."""
        self._conn.wait_open()

    @property
    def open_error(self) -> str | None:
        """Why Milvus is not open, when its last open failed (None when open or opening)."""
        return self._conn.open_error

    def close(self) -> None:
        self._conn.close()

    # --- collections ----------------------------------------------------------------------

    def ensure_collection(self, name: str, dimension: int, meta: dict[str, Any]) -> None:
        """Create the collection (schema, BM25 function, indexes) if it does not exist.

        Also completes a collection whose creation was interrupted (the process was killed
        between creating the schema and its indexes): missing indexes are created. One with an
        image is complete and is not loaded here: its searches start that load, and so does
        `load_soon` (a write loads it, and waits).
        """
        if name in self._open or name in self._resting or self.has_image(name):
            return

        def ensure(client: Any) -> None:
            if not client.has_collection(name):
                client.create_collection(name, schema=_schema(client, dimension, meta))
                _create_indexes(client, name, _indexes(client))
                log.info("created collection %s (dimension %d)", name, dimension)
            else:
                present = set(client.list_indexes(name))
                missing = _indexes(client, skip=present)
                if missing is not None:
                    log.warning(
                        "collection %s lacks indexes %s; creating them",
                        name,
                        sorted({"dense", "sparse"} - present),
                    )
                    _create_indexes(client, name, missing)

        with self._open_lock(name):
            if name not in self._open:
                self._run(f"cannot create collection {name}", ensure)
                self._open[name] = self._load(name)

    def _open_lock(self, name: str) -> threading.Lock:
        with self._open_locks_guard:
            return self._open_locks.setdefault(name, threading.Lock())

    def _load(self, name: str) -> _Opened:
        """Load a complete collection (opened from disk it starts released) and learn whether
        it holds rows. Caller holds the collection's open lock."""
        started = time.perf_counter()
        self._run(f"cannot load collection {name}", lambda c: c.load_collection(name))
        seconds = time.perf_counter() - started
        log.info("loaded collection %s in %.1f s", name, seconds)
        rows = self._run(
            f"cannot count rows of {name}",
            lambda c: c.query(name, filter="", output_fields=["count(*)"]),
        )
        self.residency.loaded(name, seconds)
        self._resting.discard(name)
        if self.images is not None:
            self.images.loaded(name)
        return _Opened(has_rows=bool(rows and int(rows[0]["count(*)"]) > 0))

    def _readable(self, name: str) -> _Opened | None:
        """The collection's open record, loading it first if this engine has not; None when
        it does not exist yet or is incomplete (its creation was interrupted: the indexer
        completes it). Waits for a creation or load already in progress."""
        opened = self._open.get(name)
        if opened is not None:
            return opened
        with self._open_lock(name):
            opened = self._open.get(name)
            if opened is not None:
                return opened

            def complete(client: Any) -> bool:
                return bool(client.has_collection(name)) and {"dense", "sparse"} <= set(
                    client.list_indexes(name)
                )

            if not self._run(f"cannot open collection {name}", complete):
                return None
            opened = self._open[name] = self._load(name)
            return opened

    def _ensure_loaded(self, name: str) -> None:
        """Writes and counts need the collection loaded; it exists (the indexer created it)."""
        if name in self._open:
            return
        if self._readable(name) is None:
            raise StoreError(f"collection {name} does not exist or is incomplete")

    def has_collection(self, name: str) -> bool:
        return bool(self._run("cannot reach the Milvus store", lambda c: c.has_collection(name)))

    def list_collections(self, prefix: str = COLLECTION_PREFIX + "_") -> list[str]:
        names = self._run("cannot list collections", lambda c: c.list_collections())
        return [n for n in names if n.startswith(prefix)]

    def drop_collection(self, name: str) -> None:
        def drop(client: Any) -> None:
            if client.has_collection(name):
                client.drop_collection(name)

        # A search that already read the collection as open finishes before Milvus drops it
        # (it would fail "collection not found"); one that starts meanwhile finds none.
        with self.residency.dropping(name), self._write_lock, self._open_lock(name):
            self._wrote(name)
            self._run(f"cannot drop collection {name}", drop)
            self._open.pop(name, None)
            self._resting.discard(name)

    def is_loaded(self, name: str) -> bool:
        """Whether this engine holds `name` in memory (loaded, not released since)."""
        return name in self._open

    def is_resting(self, name: str) -> bool:
        """Whether `name` was released for being unused and not loaded since."""
        return name in self._resting

    def release_idle(self, min_idle_s: float) -> list[str]:
        """Release the collections nobody used for long enough (`codectxd.residency`); the
        next call that needs one loads it again. Returns the names released. Only Milvus
        Lite's engine is ours to keep small: a server manages its own memory."""
        if not self._conn.local:
            return []
        return [name for name in list(self._open) if self._release_if_idle(name, min_idle_s)]

    def _release_if_idle(self, name: str, min_idle_s: float) -> bool:
        lock = self._open_lock(name)
        if not lock.acquire(blocking=False):
            return False  # being loaded, created or dropped: in use
        try:
            opened = self._open.get(name)
            forget = functools.partial(self._open.pop, name, None)
            if opened is None or not self.residency.take_idle(name, min_idle_s, forget):
                return False
            try:
                self._run(f"cannot release {name}", lambda c: c.release_collection(name))
            except StoreError as exc:
                self._open[name] = opened  # still loaded: the next pass tries again
                log.warning("%s", exc)
                return False
            self._resting.add(name)
            log.info("released collection %s (unused for %.0f s or more)", name,
                     self.residency.idle_after(name, min_idle_s))  # fmt: skip
            return True
        finally:
            lock.release()

    # --- writes ---------------------------------------------------------------------------

    @_in_use
    def replace_files(self, name: str, paths: Sequence[str], rows: Sequence[Row]) -> None:
        """Make the rows of `paths` exactly `rows` (which belong to those paths).

        Rows whose id is stored already are kept (ids are derived from the chunk's content),
        the others inserted first, and only then the rows no longer wanted deleted: a file is
        never missing from searches while it is replaced. Repeating the call (a retry after a
        reconnect, a redo after a crash) is safe: it converges to the same rows.
        """
        self._ensure_loaded(name)
        wanted = {row.id for row in rows}

        def write(client: Any) -> None:
            stored = _ids_of(client, name, paths) if paths else set()
            data = [_row_dict(r) for r in rows if r.id not in stored]
            if data:
                _insert(client, name, data)
            stale = sorted(stored - wanted)
            for start in range(0, len(stale), 500):
                batch = ", ".join(quote(i) for i in stale[start : start + 500])
                client.delete(name, filter=f"id in [{batch}]")

        with self._write_lock:
            self._wrote(name)
            self._run(f"writing to collection {name} failed", write)
            opened = self._open.get(name)  # (gone after a reconnect: reloaded and counted)
            if rows and opened is not None:
                # After the insert, before the caller records the files as indexed: whatever
                # `status` reports as stored is searched.
                opened.has_rows = True

    @_in_use
    def delete_paths(self, name: str, paths: Sequence[str]) -> None:
        self._ensure_loaded(name)
        with self._write_lock:
            self._wrote(name)
            self._run(
                f"deleting from collection {name} failed",
                lambda c: _delete_paths(c, name, paths),
            )

    # --- reads ----------------------------------------------------------------------------

    @_in_use
    def count(self, name: str, expr: str = "") -> int:
        self._ensure_loaded(name)
        result = self._run(
            f"cannot count rows of {name}",
            lambda c: c.query(name, filter=expr or "", output_fields=["count(*)"]),
        )
        return int(result[0]["count(*)"]) if result else 0

    @_in_use
    def rows_of(self, name: str, expr: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """All rows matching `expr` (iterating, so large results are fine)."""
        self._ensure_loaded(name)
        return [row for batch in self._row_batches(name, expr, fields, 1000) for row in batch]

    def _row_batches(
        self, name: str, expr: str, fields: Sequence[str], size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows matching `expr`, `size` at a time (the collection is loaded)."""
        iterator = self._run(f"cannot read rows of {name}", lambda c: c.query_iterator(
            name, batch_size=size, filter=expr, output_fields=list(fields)))  # fmt: skip
        try:
            while batch := self._run(f"cannot read rows of {name}", lambda _: iterator.next()):
                yield batch
        finally:
            iterator.close()

    @_in_use
    def search(
        self,
        name: str,
        *,
        dense: np.ndarray | None = None,
        lexical: str | None = None,
        limit: int,
        expr: str = "",
    ) -> list[Hit]:
        """Dense (vector) or lexical (BM25) search, best first (equal scores by id); give
        exactly one of the two. A dense search sees only chunks that are embedded already.
        Concurrent searches of the same kind go to Milvus together (`_search_many`). Before
        the collection is loaded, its image answers searches without a filter.

        Hybrid fusion happens in `codectxd.search`, where its parameters are tuned.
        """
        if (dense is None) == (lexical is None):
            raise ValueError("give exactly one of dense and lexical")
        image = self._image_for(name, expr)
        if image is not None:
            found = (image.search_dense(dense, limit) if dense is not None
                     else image.search_lexical(lexical or "", limit))  # fmt: skip
            return [_hit(item) for item in found]
        query: Any
        if dense is not None:
            query, field = dense.tolist(), "dense"
            expr = f"({expr}) and {EMBEDDED_ONLY}" if expr else EMBEDDED_ONLY
        else:
            query, field = lexical, "sparse"
        opened = self._readable(name)
        if opened is None or not opened.has_rows:
            # Being created, never written, or incomplete: nothing to find, and Milvus fails a
            # BM25 search of a collection that never held a row (its statistics are NaN).
            return []
        hits = self._search_batcher(_SearchKey(name, field, limit + _TIE_MARGIN, expr)).submit(
            query
        )
        return hits[:limit]

    def _search_batcher(self, key: _SearchKey) -> Batcher[Any, list[Hit]]:
        with self._searches_guard:
            batcher = self._searches.get(key)
            if batcher is None:
                if len(self._searches) >= _SEARCH_KEYS:  # filters vary: forget the idle ones
                    self._searches = {k: b for k, b in self._searches.items() if not b.idle}
                batcher = Batcher(lambda data: self._search_many(key, data), _SEARCH_BATCH)
                self._searches[key] = batcher
            return batcher

    def _search_many(self, key: _SearchKey, data: Sequence[Any]) -> list[list[Hit]]:
        """One Milvus search of several queries (vectors or BM25 texts): their hits, in order
        (equal scores by id: Milvus orders them as its heaps happen to)."""
        result = self._run(
            f"search in {key.collection} failed",
            lambda c: c.search(
                key.collection,
                data=list(data),
                anns_field=key.field,
                search_params=_SEARCH_PARAMS[key.field],
                limit=key.limit,
                filter=key.expr,
                output_fields=OUTPUT_FIELDS,
            ),
        )
        found = list(result or ())
        if not found:  # no result lists at all: nothing found for any of them
            return [[] for _ in data]
        if len(found) != len(data):  # which query lost its hits cannot be told
            raise StoreError(f"search in {key.collection}: {len(data)} queries, {len(found)} "
                             "result lists")  # fmt: skip
        return [sorted(map(_hit, hits), key=_by_score) for hits in found]

    @_in_use
    def hits_in(
        self, name: str, field: str, values: Sequence[str], expr: str = "", limit: int = 2000
    ) -> list[Hit]:
        """The chunks whose `field` ("id" or "path") is one of `values`, within the filter
        `expr` (no ranking: score 0), at most `limit`, by path and line."""
        image = self._image_for(name, expr)
        if image is not None:
            rows = image.rows_in(field, values, limit)
        else:
            opened = self._readable(name)
            if opened is None or not opened.has_rows:
                return []
            match = f"{field} in [{', '.join(quote(v) for v in values)}]"
            where = f"({expr}) and {match}" if expr else match
            rows = self._run(f"query in {name} failed", lambda c: c.query(
                name, filter=where, output_fields=OUTPUT_FIELDS, limit=limit))  # fmt: skip
        return sorted(map(_hit, rows), key=lambda h: (h.path, h.start_line, h.id))

    # --- images ---------------------------------------------------------------------------

    def has_image(self, name: str) -> bool:
        return self.images is not None and self.images.has(name)

    def _image_for(self, name: str, expr: str) -> Image | None:
        """The image that answers for `name` now: it has one, is not loaded, and the search
        has no filter (an image evaluates none). Starts the load the image stands in for."""
        if self.images is None or name in self._open or expr or not self.images.has(name):
            return None
        image = self.images.open(name)
        if image is not None:
            self._load_soon(name)
        return image

    def load_soon(self, name: str) -> None:
        """Load `name` in the background if its image stands in for it (searches use the
        image meanwhile, writes wait for the load); not one released at rest, which its next
        search or write loads (a periodic sync that writes nothing must not)."""
        if name not in self._open and name not in self._resting and self.has_image(name):
            self._load_soon(name)

    def _load_soon(self, name: str) -> None:
        """Load `name` in the background (once at a time), for the searches its image
        answers meanwhile."""
        with self._open_locks_guard:
            if name in self._loading:
                return
            self._loading.add(name)
        log.info("loading %s in the background; its image answers searches meanwhile", name)
        threading.Thread(target=self._load_now, args=(name,), name=f"load-{name}",
                         daemon=True).start()  # fmt: skip

    def _load_now(self, name: str) -> None:
        try:
            with self.residency.using(name):
                self._readable(name)
        except StoreError as exc:  # the next call that needs it loads it (or says why not)
            log.log(logging.DEBUG if self._conn.closed else logging.WARNING, "%s", exc)
        finally:
            with self._open_locks_guard:
                self._loading.discard(name)

    def _wrote(self, name: str) -> None:
        """Before any write of `name` (under the write lock): its image no longer holds."""
        self._writes[name] = self._writes.get(name, 0) + 1
        self._last_write[name] = time.monotonic()
        if self.images is not None:
            self.images.invalidate(name)

    def write_images(
        self, min_rows: int, quiet_s: float, stop: Callable[[], bool] = lambda: False
    ) -> list[str]:
        """Write the image of each loaded collection of `min_rows` rows or more that has none
        and no write for `quiet_s` (one at a time; writes go on meanwhile, and an image read
        across one is dropped; `stop` true abandons one being written). Returns the
        collections imaged."""
        if self.images is None:
            return []
        done: list[str] = []
        for name in list(self._open):
            writes = self._writes.get(name, 0)
            if (
                self.images.has(name)
                or self._small.get(name) == writes
                or time.monotonic() - self._last_write.get(name, self._started) < quiet_s
            ):
                continue
            if stop():
                break
            try:
                if self._write_image(name, writes, min_rows, stop):
                    done.append(name)
            except (StoreError, Changed) as exc:
                log.info("image of %s not written: %s", name, exc)
        return done

    @_in_use
    def _write_image(self, name: str, writes: int, min_rows: int, stop: Callable[[], bool]) -> bool:
        if name not in self._open:
            return False
        rows = self.count(name)
        if rows < min_rows:
            self._small[name] = writes
            return False
        assert self.images is not None
        started = time.perf_counter()
        partial = self.images.build(name, rows, self._all_rows(name, stop))
        with self._write_lock:
            if self._writes.get(name, 0) != writes or name not in self._open:
                self.images.abandon(partial)
                return False
            self.images.publish(name, partial)
        log.info("image of %s written: %d rows in %.1f s", name, rows,
                 time.perf_counter() - started)  # fmt: skip
        return True

    def _all_rows(self, name: str, stop: Callable[[], bool]) -> Iterator[list[dict[str, Any]]]:
        """Every row of `name` with what an image keeps, a batch at a time (until `stop`)."""
        fields = [*OUTPUT_FIELDS, "lexical", "dense", "embedded"]
        for batch in self._row_batches(name, "", fields, 2000):
            if stop():
                raise Changed("the daemon is stopping")
            yield batch


#: Searches sent as one request at most (below 20, where faiss-style engines switch brute
#: force to a BLAS kernel whose scores may differ in the last bits from a lone query's), and
#: the (collection, field, depth, filter) kinds remembered before the idle ones are forgotten.
_SEARCH_BATCH = 16
_SEARCH_KEYS = 256
#: Hits asked beyond a search's limit: rows tied with its last hit are then cut by id, not as
#: Milvus's heaps happen to keep them (so an image, which sees every tie, agrees).
_TIE_MARGIN = 8
_SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "dense": {"metric_type": "IP"},
    "sparse": {"metric_type": "BM25", "params": {"drop_ratio_search": 0.0}},
}


@dataclass(frozen=True, slots=True)
class _SearchKey:
    collection: str
    field: str  # "dense" or "sparse" (their search parameters: _SEARCH_PARAMS)
    limit: int
    expr: str


def _by_score(hit: Hit) -> tuple[float, str]:
    return (-hit.score, hit.id)


def _hit(item: dict[str, Any]) -> Hit:
    entity = item.get("entity", item)
    return Hit(
        id=str(entity.get("id", item.get("id"))),
        path=entity["path"],
        language=entity["language"],
        start_line=int(entity["start_line"]),
        end_line=int(entity["end_line"]),
        symbol=entity["symbol"],
        kind=entity["kind"],
        content=entity["content"],
        score=float(item.get("distance", 0.0)),
        file_kind=entity.get("file_kind", ""),
    )


def _schema(client: Any, dimension: int, meta: dict[str, Any]) -> Any:
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(
        auto_id=False,
        enable_dynamic_field=False,
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
    schema.add_field("file_kind", DataType.VARCHAR, max_length=16)
    schema.add_field("embedded", DataType.BOOL)
    schema.add_field(
        "lexical",
        DataType.VARCHAR,
        max_length=65535,
        enable_analyzer=True,
        analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]},
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["lexical"],
            output_field_names=["sparse"],
        )
    )
    return schema


def _indexes(client: Any, skip: set[str] | None = None) -> Any:
    """Index params for the vector fields not in `skip` (None when nothing is missing)."""
    skip = skip or set()
    index = client.prepare_index_params()
    added = False
    if "dense" not in skip:
        index.add_index("dense", index_type="AUTOINDEX", metric_type="IP")
        added = True
    if "sparse" not in skip:
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        added = True
    return index if added else None


#: How long index builds may take before creating a collection fails (an empty or small
#: collection's take milliseconds).
_INDEX_TIMEOUT_S = 120.0


def _create_indexes(client: Any, name: str, params: Any) -> None:
    """Create indexes and wait until they are built. pymilvus's own wait sleeps 0.5 s before
    it first asks, per index: a new collection cost a second, on the way of every first
    index's keyword search. Here it asks at once and then a little later each time."""
    client.create_index(name, params, sync=False)
    deadline = time.monotonic() + _INDEX_TIMEOUT_S
    pause = 0.005
    for index in params:
        index_name = index.index_name or index.field_name  # unnamed: named after its field
        while (state := client.describe_index(name, index_name).get("state")) != "Finished":
            if state == "Failed" or time.monotonic() > deadline:
                raise RuntimeError(f"index {index_name} of {name}: {state}")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def _path_filter(paths: Sequence[str]) -> str:
    if len(paths) == 1:
        return f"path == {quote(paths[0])}"
    return f"path in [{', '.join(quote(p) for p in paths)}]"


#: Milvus answers at most this many rows per query (its `maxQueryResultWindow` default).
_QUERY_WINDOW = 16384


def _ids_of(client: Any, name: str, paths: Sequence[str]) -> set[str]:
    """The ids of every row of `paths`."""
    ids: set[str] = set()
    for start in range(0, len(paths), 200):
        expr = _path_filter(paths[start : start + 200])
        rows = client.query(name, filter=expr, output_fields=["id"], limit=_QUERY_WINDOW)
        if len(rows) >= _QUERY_WINDOW:  # more than a window: read them all, page by page
            iterator = client.query_iterator(name, batch_size=1000, filter=expr,
                                             output_fields=["id"])  # fmt: skip
            rows = []
            while batch := iterator.next():
                rows.extend(batch)
            iterator.close()
        ids.update(str(row["id"]) for row in rows)
    return ids


def _delete_paths(client: Any, name: str, paths: Sequence[str]) -> None:
    for start in range(0, len(paths), 200):
        client.delete(name, filter=_path_filter(paths[start : start + 200]))


def _insert(client: Any, name: str, data: list[dict[str, Any]]) -> None:
    """Insert rows a column at a time. pymilvus's `MilvusClient.insert` packs every cell of
    every row on its own (3,840 chunks: 2.2 s against 1.5 s, most of a first index's store
    writes); its handler's `batch_insert` (what its ORM's `Collection.insert` sends) packs a
    column at once. A pymilvus without it gets the rows (the same request, built slower)."""
    connect = getattr(client, "_get_connection", None)
    conn = connect() if connect is not None else None
    if conn is None or not hasattr(conn, "batch_insert"):
        client.insert(name, data)
        return
    cached = getattr(conn, "_get_schema", None)  # pymilvus's schema cache (its row path's)
    schema = cached(name)[0] if cached is not None else client.describe_collection(name)
    columns = [
        {
            "name": field["name"],
            "type": field["type"],
            "values": [row[field["name"]] for row in data],
        }
        for field in schema["fields"]
        if not field.get("is_function_output")
    ]
    conn.batch_insert(name, columns, schema=schema)


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
        "embedded": row.embedded,
        "file_kind": row.file_kind[:16],
    }
