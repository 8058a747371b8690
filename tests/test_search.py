"""Hybrid search quality and filters on a real index."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from codectx_client.protocol import SearchHit
from codectxd.embeddings.service import Embedder
from codectxd.engine import Engine
from codectxd.filters import Filters, PathFilter
from codectxd.search import merge_overlapping
from tests.conftest import make_settings, write_tree

REPO = {
    "src/auth/login.py": (
        "def verify_password(user, password):\n"
        '    """Compare the given password with the stored hash."""\n'
        "    return hash_password(password) == user.password_hash\n\n\n"
        "def hash_password(password):\n    import hashlib\n"
        "    return hashlib.sha256(password.encode()).hexdigest()\n"
    ),
    "src/net/retry.py": (
        "import time\n\n\ndef retry_with_backoff(fn, attempts=5):\n"
        "    for attempt in range(attempts):\n        try:\n            return fn()\n"
        "        except IOError:\n            time.sleep(2 ** attempt)\n    raise RuntimeError('gave up')\n"
    ),
    "src/util/strings.go": (
        'package util\n\nimport "strings"\n\n'
        "// ToSnakeCase converts CamelCase identifiers to snake_case.\n"
        "func ToSnakeCase(s string) string {\n\tvar b strings.Builder\n"
        "\tfor i, r := range s {\n\t\tif i > 0 && r >= 'A' && r <= 'Z' {\n\t\t\tb.WriteByte('_')\n\t\t}\n"
        "\t\tb.WriteRune(r)\n\t}\n\treturn strings.ToLower(b.String())\n}\n"
    ),
    "web/src/parseConfig.ts": (
        "export function parseConfig(raw: string): Record<string, string> {\n"
        "  const out: Record<string, string> = {};\n"
        "  for (const line of raw.split('\\n')) {\n    const [k, v] = line.split('=');\n"
        "    out[k.trim()] = v.trim();\n  }\n  return out;\n}\n"
    ),
    "docs/guide.md": "# Guide\n\n## Deployment\n\nCopy the binary to the server and restart it.\n",
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, local_provider):  # type: ignore[no-untyped-def]
    from codectxd.embeddings.cache import EmbeddingCache

    base = Path(tmp_path_factory.mktemp("s"))
    settings = make_settings(base)
    root = base / "repo"
    write_tree(root, REPO)
    engine = Engine(
        settings,
        embedder=Embedder(local_provider, EmbeddingCache(settings.paths.data_dir / "e.db")),
    )
    engine.indexer_for(root).full_sync()
    yield engine, root
    engine.close()


def top(results: list[SearchHit], n: int = 3) -> list[str]:
    return [r.path for r in results[:n]]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("check that a password matches the stored hash", "src/auth/login.py"),
        ("call a function again with exponential backoff when it fails", "src/net/retry.py"),
        ("convert camel case names to snake case", "src/util/strings.go"),
        ("how do I deploy to the server", "docs/guide.md"),
    ],
)
def test_natural_language_queries(indexed, query: str, path: str) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    results = engine.search([root], query, limit=5)
    assert path in top(results), [(r.path, r.symbol) for r in results]
    best = next(r for r in results if r.path == path)
    assert best.content and best.start_line >= 1 and best.end_line >= best.start_line
    assert best.repo == str(root)


def test_identifier_parts_match_lexically(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    results = engine.search([root], "parse config", limit=3, mode="lexical")
    assert top(results, 1) == ["web/src/parseConfig.ts"]
    results = engine.search([root], "ToSnakeCase", limit=3, mode="lexical")
    assert top(results, 1) == ["src/util/strings.go"]
    assert results[0].symbol == "ToSnakeCase"


def test_filters(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    query = "parse text into a dictionary of settings"
    assert {
        r.language for r in engine.search([root], query, filters=Filters(languages=("go",)))
    } == {"go"}
    assert {r.path for r in engine.search([root], query, filters=Filters(extensions=(".ts",)))} == {
        "web/src/parseConfig.ts"
    }
    under_src = engine.search([root], query, filters=Filters(paths=("src",)))
    assert under_src and all(r.path.startswith("src/") for r in under_src)
    globbed = engine.search([root], query, filters=Filters(paths=("src/**/*.py",)))
    assert globbed and all(r.path.endswith(".py") and r.path.startswith("src/") for r in globbed)
    assert engine.search([root], query, filters=Filters(paths=("nothing/here",))) == []


def test_empty_query_and_unknown_mode(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    assert engine.search([root], "   ") == []
    with pytest.raises(ValueError, match="unknown search mode"):
        engine.search([root], "x", mode="fuzzy")


def test_path_filter_semantics() -> None:
    f = PathFilter(["src", "*.md", "./lib/"])
    assert f("src/a.py") and f("src") and not f("srcx/a.py")
    assert f("docs/deep/readme.md") and f("lib/x.c") and not f("tests/a.py")


def test_overlapping_hits_merge() -> None:
    a = SearchHit(
        "r", "f.py", 1, 10, "", "", "python", 0.5, "\n".join(f"l{i}" for i in range(1, 11))
    )
    b = SearchHit(
        "r", "f.py", 8, 15, "", "", "python", 0.9, "\n".join(f"l{i}" for i in range(8, 16))
    )
    c = SearchHit("r", "g.py", 1, 3, "", "", "python", 0.7, "x")
    merged = merge_overlapping([a, c, b])
    assert [(m.path, m.start_line, m.end_line) for m in merged] == [("f.py", 1, 15), ("g.py", 1, 3)]
    assert merged[0].content.split("\n") == [f"l{i}" for i in range(1, 16)]
    assert merged[0].score == 0.9


ODD_NAMES = {
    "under_score_dir/snake_case_module.py": "underscore_dir_marker_qz",
    "underXscore_dir/decoy.py": "underscore_dir_marker_qz decoy",
    "100%/percent.py": "percent_dir_marker_qz",
    "100x/decoy.py": "percent_dir_marker_qz decoy",
    'quote"dir/dq.py': "double_quote_marker_qz",
    "back\\slash/b.py": "backslash_marker_qz",
    "ünïcödé/日本語.py": "unicode_name_marker_qz",
}


def test_path_filter_with_like_wildcards_in_names(  # type: ignore[no-untyped-def]
    tmp_path: Path, local_provider
) -> None:
    """`_` and `%` are LIKE wildcards Milvus Lite cannot escape: the prefix sent to Milvus is
    cut before them and the exact check happens in Python (decoys prove it)."""
    from codectxd.embeddings.cache import EmbeddingCache

    settings = make_settings(tmp_path)
    root = tmp_path / "repo"
    write_tree(root, {rel: f"def f():\n    return '{text}'\n" for rel, text in ODD_NAMES.items()})
    engine = Engine(
        settings,
        embedder=Embedder(local_provider, EmbeddingCache(settings.paths.data_dir / "e.db")),
    )
    try:
        engine.indexer_for(root).full_sync()
        cases = {
            "under_score_dir": "under_score_dir/snake_case_module.py",
            "under_score_dir/": "under_score_dir/snake_case_module.py",
            "under_score_dir/*.py": "under_score_dir/snake_case_module.py",
            "100%": "100%/percent.py",
            'quote"dir': 'quote"dir/dq.py',
            "back\\slash": "back\\slash/b.py",
            "ünïcödé": "ünïcödé/日本語.py",
        }
        for prefix, path in cases.items():
            marker = ODD_NAMES[path]
            results = engine.search(
                [root], marker, mode="lexical", filters=Filters(paths=(prefix,))
            )
            assert [r.path for r in results] == [path], prefix
    finally:
        engine.close()


def test_columnar_results_are_pymilvus_own(indexed) -> None:  # type: ignore[no-untyped-def]
    """The columnar decoder is what searches use, and gives exactly the hits pymilvus's own
    decoder gives (both sides, filters too, several queries at once); a response it does not
    handle (vectors, JSON, dynamic fields) goes to pymilvus's decoder, unchanged."""
    from pymilvus import DataType
    from pymilvus.client import grpc_handler
    from pymilvus.client.search_result import SearchResult

    from codectxd.milvus_results import ColumnarHits, ColumnarSearchResult
    from codectxd.store import OUTPUT_FIELDS

    engine, root = indexed
    assert grpc_handler.SearchResult is ColumnarSearchResult
    store, name = engine.store, engine.collection_for(root)
    vector = engine.embedder.embed_query("compare a password with its hash")
    calls = [
        lambda: store.search(name, dense=vector, limit=30),
        lambda: store.search(name, lexical="password hash config", limit=30),
        lambda: store.search(name, lexical="password", limit=30, expr='language == "python"'),
    ]

    # pymilvus's own results, compared raw: two queries in one request, the store's fields.
    def two_queries():  # type: ignore[no-untyped-def]
        return store._conn.client.search(name, data=[vector.tolist(), vector[::-1].tolist()],
                                         anns_field="dense", limit=7, output_fields=OUTPUT_FIELDS,
                                         search_params={"metric_type": "IP"})  # fmt: skip

    raw = two_queries()
    assert [type(hits) for hits in raw] == [ColumnarHits, ColumnarHits]  # read by columns
    assert raw[0].ids == [h["id"] for h in raw[0]] and len(raw[1].distances) == 7

    def both(call):  # type: ignore[no-untyped-def]
        columnar = call()
        grpc_handler.SearchResult = SearchResult
        try:
            return columnar, call()
        finally:
            grpc_handler.SearchResult = ColumnarSearchResult

    for call in calls:
        columnar, own = both(call)
        assert columnar and columnar == own
    columnar, own = both(lambda: [list(hits) for hits in two_queries()])
    assert columnar == own and [len(hits) for hits in own] == [7, 7]
    assert all(type(v) is type(own[0][0]["entity"][k]) for k, v in columnar[0][0]["entity"].items())

    # A collection of fields it leaves to pymilvus: JSON, a dynamic field, vectors out
    # (Milvus Lite has no nullable fields).
    schema = store._conn.client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("note", DataType.VARCHAR, max_length=64)
    index = store._conn.client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")
    client = store._conn.client
    client.create_collection("columnar_fallback", schema=schema, index_params=index)
    try:
        rows = [{"pk": i, "v": [float(i), 1.0, 0.0, 2.0], "meta": {"i": i},
                 "note": f"n{i}", "extra": i * 10} for i in range(8)]  # fmt: skip
        client.insert("columnar_fallback", rows)
        client.load_collection("columnar_fallback")

        def fallback():  # type: ignore[no-untyped-def]
            return [list(hits) for hits in client.search(
                "columnar_fallback", data=[[3.0, 1.0, 0.0, 2.0]], limit=5,
                output_fields=["v", "meta", "note", "extra"])]  # fmt: skip

        columnar, own = both(fallback)
        assert len(columnar[0]) == 5 and columnar == own
        assert columnar[0][0]["entity"]["meta"] == {"i": 3}
    finally:
        client.drop_collection("columnar_fallback")


def test_concurrent_searches_share_requests(indexed) -> None:  # type: ignore[no-untyped-def]
    """Searches of one collection sent at once go to Milvus in fewer requests, and each
    caller gets exactly the hits it gets searching alone (dense and BM25, filtered or not)."""
    engine, root = indexed
    store, name = engine.store, engine.collection_for(root)
    texts = ["compare a password with its hash", "parse a config file", "deploy the server",
             "split key value pairs", "read settings", "hash function", "copy binary",
             "trim whitespace"]  # fmt: skip
    vectors = [engine.embedder.embed_query(t) for t in texts]
    calls = [
        *(lambda v=v: store.search(name, dense=v, limit=20) for v in vectors),
        *(lambda t=t: store.search(name, lexical=t, limit=20) for t in texts),
        *(
            lambda t=t: store.search(name, lexical=t, limit=20, expr='language == "python"')
            for t in texts
        ),
    ] * 2
    alone = [call() for call in calls]
    before = sum(b.batches for b in store._searches.values())
    barrier = threading.Barrier(len(calls))
    together: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            together[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            together[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a search never returned"
    assert not [r for r in together if isinstance(r, Exception)]
    assert together == alone and all(alone[:8]) and sum(map(bool, alone[8:16])) >= 6
    requests = sum(b.batches for b in store._searches.values()) - before
    assert requests < len(calls), "no two concurrent searches shared a request"
