"""Ranking the way a developer would, on a real tree indexed by the real engine and model:
an identifier query finds its definition first, a traceback its frame's file, a code question
code (not the data file that repeats its words, not the test), and files rank as files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codectxd.config import Settings
from codectxd.embeddings.service import Embedder
from codectxd.engine import Engine
from codectxd.query import analyse, path_candidates
from codectxd.search import search_files
from tests.conftest import write_tree

SIBLINGS = ["parse_retry_after", "parse_retry_after_ms", "parse_retry_after_date",
            "format_retry_after", "parse_retry_delay"]  # fmt: skip


def _policy() -> str:
    parts = ['"""Retry policies for HTTP calls."""\n\nimport email.utils\n\n']
    for name in SIBLINGS:
        parts.append(f"def {name}(value):\n    return value\n\n\n")
    # A long definition whose name differs from its siblings in one part only.
    body = "".join(f"    step_{i} = compute(value, {i})\n" for i in range(40))
    parts.append(f"def parse_retry_window(value):\n{body}    return value\n")
    return "".join(parts)


TREE = {
    "shop/net/policy.py": _policy(),
    "shop/cart/totals.py": (
        "from shop.cart.items import Item\n\n\n"
        "def subtotal(items):\n    return sum(i.price for i in items)\n\n\n"
        "def apply_discount(cart, code):\n    rate = CODES[code]\n"
        "    total = subtotal(cart.items)\n    if rate > 1:\n        raise ValueError(rate)\n"
        "    return total * (1 - rate)\n"
    ),
    "shop/cart/items.py": "class Item:\n    def __init__(self, price):\n        self.price = price\n",
    "shop/search/merge.py": (
        "def merge_overlapping_hits(hits):\n"
        '    """Merge the search hits of one file whose line ranges overlap."""\n'
        "    hits.sort(key=lambda h: h.start)\n    out = []\n    for hit in hits:\n"
        "        if out and hit.start <= out[-1].end:\n            out[-1].end = max(out[-1].end, hit.end)\n"
        "        else:\n            out.append(hit)\n    return out\n"
    ),
    "tests/test_merge.py": (
        "from shop.search.merge import merge_overlapping_hits\n\n\n"
        "def test_overlapping_search_hits_are_merged():\n"
        "    # overlapping search hits merged: two overlapping hits become one merged hit\n"
        "    assert merge_overlapping_hits([]) == []\n"
    ),
    "docs/search.md": (
        "# Search\n\nWhere are overlapping search hits merged? After ranking: the search hits "
        "of one file whose line ranges overlap are merged into one hit, the best score kept.\n"
    ),
    "bench/results/merge.json": json.dumps(
        [
            {
                "query": "where are overlapping search hits merged",
                "hit": f"merged overlapping {i}",
                "note": "overlapping search hits merged",
            }
            for i in range(120)
        ],
        indent=1,
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, local_provider):  # type: ignore[no-untyped-def]
    from codectxd.embeddings.cache import EmbeddingCache
    from tests.conftest import make_settings

    base = tmp_path_factory.mktemp("rank")
    settings: Settings = make_settings(base)
    embedder = Embedder(local_provider, EmbeddingCache(settings.paths.data_dir / "embeddings.db"))
    root = base / "repo"
    write_tree(root, TREE)
    engine = Engine(settings, embedder=embedder)
    engine.indexer_for(root).full_sync()
    yield engine, root
    engine.close()


def test_an_identifier_query_finds_its_definition_first(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    for name in [*SIBLINGS, "parse_retry_window"]:
        for mode in ("hybrid",):
            hits = engine.search([root], name, limit=5, mode=mode)
            assert hits[0].path == "shop/net/policy.py", (name, hits[0])
            assert hits[0].symbol.split(", ").count(name) == 1 or name in hits[0].content, name
            first_line = hits[0].content.split("\n")
            assert any(line.startswith(f"def {name}(") for line in first_line), (name, hits[0])


def test_definitions_are_read_by_chunk_id_and_by_path_when_the_ids_are_unknown_or_stale(
    indexed,  # type: ignore[no-untyped-def]
) -> None:
    """The snapshot records each file's chunk spans with the ids the store holds (after both
    phases); an identifier query finds its definition first with those spans, without them (a
    state database from an older version) and with stale ids (a file re-written meanwhile)."""
    engine, root = indexed
    coll = engine.collection_for(root)
    spans = engine.snapshot.chunk_spans(coll, ["shop/net/policy.py", "shop/cart/totals.py"])
    stored = engine.store.hits_in(coll, "path", ["shop/net/policy.py", "shop/cart/totals.py"])
    assert sorted(i for file in spans.values() for _, _, i in file) == sorted(r.id for r in stored)
    assert {(r.path, r.start_line, r.end_line) for r in stored} == {
        (path, first, last) for path, file in spans.items() for first, last, _ in file
    }
    db = engine.snapshot._db  # the state a database from another version or moment holds
    saved = db.execute("SELECT * FROM chunks").fetchall()
    try:
        for state in ("recorded", "missing", "stale"):
            if state == "missing":
                db.execute("DELETE FROM chunks")
            elif state == "stale":
                db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
                               [(*row[:4], "gone" + row[4][4:]) for row in saved])  # fmt: skip
            for name in ("parse_retry_window", "apply_discount", "Item"):
                hits = engine.search([root], name, limit=3)
                assert any(f"{name}(" in line or f"class {name}" in line
                           for line in hits[0].content.splitlines()[:3]), (state, name, hits[0])  # fmt: skip
        # A collection indexed before spans were recorded gets them from the store once.
        db.execute("DELETE FROM chunks")
        db.execute("DELETE FROM meta WHERE key='spans'")
        engine.indexer_for(root).full_sync()
        assert sorted(db.execute("SELECT * FROM chunks").fetchall()) == sorted(saved)
        assert engine.snapshot.get_meta(coll, "spans") == "1"
    finally:
        db.execute("DELETE FROM chunks")
        db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", saved)


def test_a_traceback_finds_the_frames_file_and_line(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    issue = (
        "Discount codes above 100% crash checkout\n\n"
        "Traceback (most recent call last):\n"
        '  File "/home/ann/venv/lib/python3.11/site-packages/shop/checkout.py", line 40, in pay\n'
        "    total = apply(cart)\n"
        '  File "/home/ann/venv/lib/python3.11/site-packages/shop/cart/totals.py", line 13, in '
        "apply_discount\n        raise ValueError(rate)\nValueError: 2\n"
    )
    hits = engine.search([root], issue, limit=5)
    assert hits[0].path == "shop/cart/totals.py"
    assert hits[0].start_line <= 13 <= hits[0].end_line
    files = search_files(engine.store, engine.embedder, _targets(engine, root), issue,
                         snapshot=engine.snapshot, limit=3)  # fmt: skip
    assert files[0].path == "shop/cart/totals.py"


def test_code_before_the_data_and_tests_that_repeat_its_words(indexed) -> None:  # type: ignore[no-untyped-def]
    engine, root = indexed
    question = "where are overlapping search hits merged"
    hits = engine.search([root], question, limit=10)
    paths = [h.path for h in hits]
    assert paths[0] == "shop/search/merge.py", paths
    data = [i for i, p in enumerate(paths) if p.endswith(".json")]
    assert all(i > paths.index("shop/search/merge.py") for i in data), paths
    # The page that quotes the question comes after the code, further after it when asked
    # where (a question about how it works may want the page).
    by_score = {h.path: h.score for h in hits}
    how = {h.path: h.score for h in engine.search([root], "how are overlapping hits merged")}
    assert by_score["docs/search.md"] < by_score["shop/search/merge.py"] / 2, by_score
    for other in ("docs/search.md", "tests/test_merge.py"):  # the test that checks it, too
        assert how[other] / how["shop/search/merge.py"] > (
            by_score[other] / by_score["shop/search/merge.py"]
        ), (other, how, by_score)
    # A query that asks for tests gets them.
    tests = engine.search([root], "tests of merging overlapping search hits", limit=3)
    assert tests[0].path == "tests/test_merge.py", [h.path for h in tests]
    # Asked as a file question: files, each once, with their best chunks' lines.
    files = engine.search([root], question, limit=3, group="file")
    assert [h.path for h in files][0] == "shop/search/merge.py"
    assert len({h.path for h in files}) == len(files)


def test_query_shapes() -> None:
    shape = analyse("why does parse_retry_after return None for `Retry-After: 0`?")
    assert "parse_retry_after" in shape.names and not shape.identifier
    assert analyse("Cart.apply_discount").identifier == "Cart.apply_discount"
    assert analyse("Cart.apply_discount").names[0] == "apply_discount"
    shape = analyse("from astropy.modeling.separable import separability_matrix\nis wrong")
    assert "astropy/modeling/separable" in shape.paths
    assert "separability_matrix" in shape.names
    assert path_candidates("astropy/modeling/separable")[0] == "astropy/modeling/separable.py"
    shape = analyse("tests for the retry policy")
    assert shape.wants_tests and not shape.names
    long_issue = "word " * 2000 + "```python\nimport x\n```"
    assert len(analyse(long_issue).prose) <= 1000
    assert analyse(long_issue).long and not analyse("where is the retry policy").long
    assert analyse("docs for the retry policy").wants_docs
    for question in ("where are overlapping search hits merged", "Which function parses it?"):
        assert analyse(question).wants_code, question
    for other in ("how are hits merged", "where are the docs of the retry policy", "somewhere"):
        assert not analyse(other).wants_code, other
    assert "____" not in analyse("Title\n____\nbody with parse_x").names
    ipython = (
        "---------------------------------------------------------------------------\n"
        "ValueError                                Traceback (most recent call last)\n"
        "~/src/shop/cart/totals.py in apply_discount(cart, code)\n"
        "     11     if rate > 1:\n"
        "---> 12         raise ValueError(rate)\n"
    )
    shape = analyse(ipython)
    assert shape.frames[0].path == "~/src/shop/cart/totals.py" and shape.frames[0].line == 12
    assert shape.names[0] == "apply_discount"
    assert "shop/cart/totals.py" in path_candidates(shape.frames[0].path)
    shape = analyse("see https://github.com/org/repo/blob/main/pkg/mod.py for parse_x")
    assert not shape.paths and shape.names == ("parse_x",)


def _targets(engine: Engine, root: Path) -> list:  # type: ignore[type-arg]
    from codectxd.search import Target

    return [Target(str(root), engine.collection_for(root))]


def test_file_scores_keep_more_of_further_chunks_where_the_dense_side_ranked() -> None:
    """A file's further hits count × file_decay_dense in a repository the dense side ranked,
    × file_decay in one ranked by BM25 alone (a multi-repository search can hold both)."""
    from codectx_client.protocol import SearchHit
    from codectxd.ranking import DEFAULT, group_files

    def hit(repo: str, path: str, line: int, score: float) -> SearchHit:
        return SearchHit(repo=repo, path=path, start_line=line, end_line=line + 1, symbol="",
                         kind="", language="python", score=score, content="x")  # fmt: skip

    hits = [hit(repo, f"{repo}.py", line, score) for repo in ("/a", "/b")
            for line, score in ((1, 1.0), (5, 0.5), (9, 0.25))]  # fmt: skip
    files = {f.repo: f.score for f in group_files(hits, DEFAULT, dense_repos={"/a"})}
    dense, lexical = DEFAULT.file_decay_dense, DEFAULT.file_decay
    assert dense != lexical
    assert files["/a"] == pytest.approx(1.0 + 0.5 * dense + 0.25 * dense**2, abs=1e-6)
    assert files["/b"] == pytest.approx(1.0 + 0.5 * lexical + 0.25 * lexical**2, abs=1e-6)


def test_a_sentence_using_a_functions_name_words_ranks_that_function_higher() -> None:
    """Hybrid, short queries only: a chunk whose name's words the query holds gets
    `name_words_short` × their share (the dense-only and BM25-only modes, and issue-length
    queries, are ranked by their scores alone)."""
    from codectxd.ranking import DEFAULT, Lists, fuse, name_words_share
    from codectxd.store import Hit

    def hit(hit_id: str, symbol: str, score: float) -> Hit:
        return Hit(id=hit_id, path=f"{hit_id}.py", language="python", start_line=1,
                   end_line=2, symbol=symbol, kind="function", content="x", score=score,
                   file_kind="code")  # fmt: skip

    def ranked(lists: Lists, query: str) -> list[str]:
        return [h.id for h, _ in fuse(lists, analyse(query), DEFAULT)]

    def lists(dense: bool = True, lexical: bool = True) -> Lists:
        names = (("b", "build_headers", 0.80, 5.0), ("a", "Session.default_user_agent", 0.79,
                 4.9), ("c", "close", 0.50, 1.0))  # fmt: skip
        return Lists(
            dense=[hit(i, s, d) for i, s, d, _ in names] if dense else [],
            lexical=[hit(i, s, b) for i, s, _, b in names] if lexical else [],
        )

    sentence = "Return a string with the default user agent"
    assert name_words_share("Session.default_user_agent", {"default", "user", "agent"}) == 1.0
    assert name_words_share("close, Session.default_user_agent", {"user"}) == pytest.approx(1 / 3)
    assert ranked(lists(), sentence)[0] == "a"
    assert ranked(lists(lexical=False), sentence)[0] == "b"  # dense only: its scores
    assert ranked(lists(dense=False), sentence)[0] == "b"  # BM25 only
    issue = sentence + "\n\n" + "When I send a request the header is wrong. " * 20
    assert ranked(lists(), issue)[0] == "b"  # an issue holds too many words
