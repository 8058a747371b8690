"""Symbols: every definition the grammars know, nested ones included, recorded in the same
per-file commit as the chunks, and answered exactly (`symbols`, `outline`) by the real daemon
over its socket, fresh after an edit. Recall is checked against Python's own `ast` on real
installed packages."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pytest

from codectxd.config import load_settings
from codectxd.snapshot import INDEXED, NO_STAT, Definition, IndexedFile, Snapshot
from codectxd.snapshot import FileSymbols as StoredSymbols
from codectxd.splitter import FileSymbols, Splitter, Symbol
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess


def _parse(text: str, language: str) -> FileSymbols:
    found = FileSymbols()
    Splitter(load_settings({"CODECTX_CONFIG": "/nonexistent"}).splitter).split(
        text, language, found
    )
    return found


def _symbols(text: str, language: str) -> list[Symbol]:
    return _parse(text, language).definitions


@pytest.mark.parametrize("package", ["anyio", "pathspec", "msgspec", "watchfiles"])
def test_every_python_definition_is_found(package: str) -> None:
    """100 % of `ast`'s functions and classes (nested, decorated, async) at their def line."""
    module = __import__(package)
    files = sorted(Path(module.__file__).parent.rglob("*.py"))
    want: set[tuple[str, str, int]] = set()
    got: set[tuple[str, str, int]] = set()
    for file in files:
        text = file.read_text(encoding="utf-8").replace("\r\n", "\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                want.add((str(file), node.name, node.lineno))
        got |= {(str(file), s.name, s.def_line) for s in _symbols(text, "python")}
    assert len(want) > 30
    assert want <= got, sorted(want - got)[:10]


def test_qualified_names_kinds_lines_and_signatures() -> None:
    text = (
        "import functools\n\n\n"
        "class Cart:\n"
        "    @functools.cache\n"
        "    def total(self, rate: float) -> float:\n"
        "        def add(a, b):\n"
        "            return a + b\n"
        "        return add(1, 2)\n\n"
        "    class Line:\n"
        "        pass\n"
    )
    by_name = {s.qualified: s for s in _symbols(text, "python")}
    assert set(by_name) == {"Cart", "Cart.total", "Cart.total.add", "Cart.Line"}
    total = by_name["Cart.total"]
    assert (total.kind, total.start_line, total.def_line, total.end_line) == ("method", 5, 6, 9)
    assert total.signature == "def total(self, rate: float) -> float:"
    assert by_name["Cart.total.add"].kind == "function"
    assert by_name["Cart.Line"].kind == "class"
    ts = (
        "export class Shop {\n  checkout(cart: Cart): number {\n    return 1;\n  }\n}\n"
        "export const applyDiscount = (cart: Cart) => cart;\n"
        "interface Cart { items: number[] }\n"
    )
    found = {s.qualified: s for s in _symbols(ts, "typescript")}
    assert set(found) == {"Shop", "Shop.checkout", "applyDiscount", "Cart"}
    assert found["Shop.checkout"].kind == "method" and found["Shop.checkout"].def_line == 2
    go = "package m\n\ntype Store struct{}\n\nfunc (s *Store) Get(k string) string {\n\treturn k\n}\n"
    assert {(s.qualified, s.kind, s.def_line) for s in _symbols(go, "go")} == {
        ("Store", "type", 3),
        ("Get", "method", 5),
    }


def test_occurrences_are_identifiers_in_code_only() -> None:
    text = (
        "# total is mentioned in a comment\n"
        "def total(cart):\n"
        '    """The total of the cart."""\n'
        "    label = 'total'\n"
        "    return sum(cart) + total(cart[1:]) if cart else 0\n"
    )
    parsed = _parse(text, "python")
    flat = parsed.occurrences["total"]
    triples = list(zip(flat[::3], flat[1::3], flat[2::3], strict=True))
    assert triples == [(2, 5, 1), (5, 24, 0)]  # the definition's name, then a call
    assert parsed.owners["total"] == ["total", "total"]
    assert len(parsed.occurrences["cart"]) // 3 == 4  # the parameter and its three uses
    assert "def" not in parsed.occurrences and "return" not in parsed.occurrences  # keywords
    ts = (
        "const shop = { cart, total: 1 };\nshop.cart.push(total);\n"
        "const checkout = (cart) => cart;\n"
    )
    found = _parse(ts, "typescript")
    assert len(found.occurrences["total"]) // 3 == 2
    assert found.occurrences["checkout"] == [3, 7, 1]  # `const f = () =>` names itself
    assert found.owners["cart"][-2:] == ["checkout", "checkout"]


def test_an_older_state_database_is_upgraded_and_its_files_read_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE files (coll TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL "
        "DEFAULT -1, mtime_ns INTEGER NOT NULL DEFAULT -1, hash TEXT NOT NULL DEFAULT '', "
        "state TEXT NOT NULL, chunks INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT "
        "'', updated REAL NOT NULL DEFAULT 0, dense INTEGER NOT NULL DEFAULT 1, kind TEXT NOT "
        "NULL DEFAULT '', PRIMARY KEY (coll, path)) WITHOUT ROWID;"
        "CREATE TABLE definitions (coll TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, "
        "start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, qualified TEXT NOT NULL, kind "
        "TEXT NOT NULL DEFAULT '', PRIMARY KEY (coll, name, path, start_line, qualified)) "
        "WITHOUT ROWID;"
        "INSERT INTO files VALUES ('c', 'a.py', 10, 123, 'h', 'indexed', 1, '', 0, 1, 'code');"
        "INSERT INTO definitions VALUES ('c', 'f', 'a.py', 1, 3, 'f', 'function');"
    )
    db.commit()
    db.close()
    snapshot = Snapshot(path)
    state = snapshot.load("c")["a.py"]
    assert state.state == INDEXED and state.mtime_ns == NO_STAT and state.hash == ""
    assert snapshot.definitions("c", ["f"]) == []  # chunk-based rows are gone
    snapshot.close()
    Snapshot(path).close()  # opening again changes nothing


def test_symbols_and_outline_through_the_daemon(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(
        root,
        {
            "shop/cart.py": (
                "class Cart:\n    def apply_discount(self, code):\n        return code\n\n\n"
                "def apply_discount(cart, code):\n    return cart.apply_discount(code)\n"
            ),
            "shop/web/handlers.ts": "export function applyDiscountRoute(req: Req) {\n  return 1;\n}\n",
            "tests/test_cart.py": "def test_apply_discount():\n    assert True\n",
        },
    )
    daemon = DaemonProcess(short_tmp).start()
    try:
        daemon.call("add", {"path": str(root)})
        daemon.wait_fresh(root)
        exact = daemon.call("symbols", {"name": "apply_discount", "repos": [str(root)]})
        assert [(s["path"], s["qualified_name"], s["kind"]) for s in exact["symbols"]] == [
            ("shop/cart.py", "Cart.apply_discount", "method"),
            ("shop/cart.py", "apply_discount", "function"),
        ]
        assert exact["fresh"] and exact["pending"] == 0
        first = exact["symbols"][0]
        assert (first["def_line"], first["end_line"], first["language"]) == (2, 3, "python")
        assert first["signature"] == "def apply_discount(self, code):"
        qualified = daemon.call("symbols", {"name": "Cart/apply_discount"})["symbols"]
        assert [s["qualified_name"] for s in qualified] == ["Cart.apply_discount"]
        only_functions = daemon.call("symbols", {"name": "apply_discount", "kinds": ["function"]})
        assert [s["qualified_name"] for s in only_functions["symbols"]] == ["apply_discount"]
        fuzzy = daemon.call("symbols", {"name": "APPLYDISCOUNT", "match": "fuzzy"})["symbols"]
        assert {s["name"] for s in fuzzy} == {"applyDiscountRoute"}
        fuzzy = daemon.call("symbols", {"name": "apply_disc", "match": "fuzzy"})["symbols"]
        assert fuzzy[0]["name"] == "apply_discount" and fuzzy[-1]["name"] == "test_apply_discount"
        prefix = daemon.call("symbols", {"name": "apply", "match": "prefix", "paths": ["shop/"]})
        assert {s["name"] for s in prefix["symbols"]} == {"apply_discount", "applyDiscountRoute"}
        outline = daemon.call("outline", {"path": str(root / "shop/cart.py")})["symbols"]
        assert [s["qualified_name"] for s in outline] == [
            "Cart", "Cart.apply_discount", "apply_discount"
        ]  # fmt: skip

        # An edit is answered at once with read-your-writes, like search.
        (root / "shop/cart.py").write_text("def checkout(cart):\n    return cart\n")
        after = daemon.call("symbols", {"name": "checkout", "wait_s": 10.0,
                                        "wait_paths": [str(root / "shop/cart.py")]})  # fmt: skip
        assert [s["def_line"] for s in after["symbols"]] == [1]
        gone = daemon.call("symbols", {"name": "apply_discount"})["symbols"]
        assert [s["path"] for s in gone] == []

        # References: every occurrence in code, with the enclosing definition.
        refs = daemon.call("references", {"name": "cart", "repos": [str(root)]})["references"]
        assert [(r["line"], r["column"], r["enclosing"], r["is_definition"]) for r in refs] == [
            (1, 14, "checkout", False), (2, 12, "checkout", False)
        ]  # fmt: skip
        assert refs[1]["text"] == "return cart"
        defined = daemon.call("references", {"name": "checkout"})["references"]
        assert [(r["path"], r["line"], r["is_definition"]) for r in defined] == [
            ("shop/cart.py", 1, True)
        ]  # fmt: skip
        assert daemon.call("references", {"name": "apply_discount"})["references"] == []
        capped = daemon.call("references", {"name": "cart", "limit": 1})
        assert len(capped["references"]) == 1 and capped["truncated"]

        # Bad requests get an error reply; the connection and the daemon live on.
        with daemon.connect() as conn:
            from codectx_client.connection import RemoteError

            with pytest.raises(RemoteError) as bad:
                conn.call("symbols", {"name": "  "})
            assert bad.value.code == "bad_request"
            with pytest.raises(RemoteError) as outside:
                conn.call("outline", {"path": str(short_tmp / "elsewhere.py")})
            assert outside.value.code == "not_found"
            assert conn.call("symbols", {"name": "checkout"})["symbols"]

        # The CLI prints the documented JSON document.
        run = daemon.client("symbol", "checkout", "--repo", str(root), "--json")
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert set(doc) == {"symbols", "fresh", "pending"}
        assert doc["symbols"][0]["qualified_name"] == "checkout"
        assert set(doc["symbols"][0]) == {"repo", "path", "name", "qualified_name", "kind",
                                          "language", "start_line", "end_line", "def_line",
                                          "signature"}  # fmt: skip
        run = daemon.client("refs", "cart", "--repo", str(root), "--json")
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert set(doc) == {"references", "fresh", "pending"}
        assert set(doc["references"][0]) == {"repo", "path", "line", "column", "text",
                                             "enclosing", "is_definition"}  # fmt: skip
        run = daemon.client("refs", "cart", "--repo", str(root))
        assert run.stdout.splitlines()[1].split() == ["1:14", "def", "checkout(cart):",
                                                      "[checkout]"], run.stdout  # fmt: skip
        run = daemon.client("outline", str(root / "shop/cart.py"))
        assert run.returncode == 0 and "function checkout" in run.stdout, run.stdout
    finally:
        daemon.stop()


def test_a_name_defined_everywhere_does_not_crowd_out_the_rarer_names_mentioned(
    tmp_path: Path,
) -> None:
    snapshot = Snapshot(tmp_path / "state.db")
    files = [IndexedFile(f"m{i}.py", 1, 1, "h", 1, kind="code") for i in range(30)]
    symbols = {
        f.path: StoredSymbols(definitions=[Definition("get", f.path, 1, 2, "Model.get", "method")])
        for f in files
    }
    symbols["m7.py"] = StoredSymbols(
        definitions=[
            Definition("get", "m7.py", 1, 2, "Model.get", "method"),
            Definition("parse_retry_after", "m7.py", 4, 9, "parse_retry_after", "function"),
        ]
    )
    snapshot.mark_indexed("c", files, symbols)
    found = snapshot.definitions("c", ["get", "parse_retry_after"], per_name=5, limit=6)
    assert [d.name for d in found] == ["get"] * 5 + ["parse_retry_after"]  # mention order
    assert [d.path for d in found[:2]] == ["m0.py", "m1.py"]  # each name's own in path order
    snapshot.close()


def test_chunk_spans_follow_their_files(tmp_path: Path) -> None:
    """Each file's chunk spans are replaced with the file, and forgotten when it is removed,
    skipped or its collection cleared."""
    snapshot = Snapshot(tmp_path / "state.db")
    files = [IndexedFile(p, 1, 1, "h", 2, kind="code") for p in ("a.py", "b.py", "c.py")]
    snapshot.mark_indexed("c", files, chunks={
        "a.py": [(1, 9, "a1"), (10, 20, "a2")], "b.py": [(1, 5, "b1")], "c.py": [(1, 3, "c1")],
    })  # fmt: skip
    snapshot.mark_indexed("c", files[:1], chunks={"a.py": [(1, 20, "a3")]})  # re-written
    snapshot.mark_indexed("c", files[1:2])  # a touch (new mtime only) keeps them
    assert snapshot.chunk_spans("c", ["a.py", "b.py", "zz.py"]) == {
        "a.py": [(1, 20, "a3")],
        "b.py": [(1, 5, "b1")],
    }
    snapshot.remove("c", ["a.py"])
    snapshot.mark_skipped("c", [("b.py", 1, 1, "binary")])
    assert snapshot.chunk_spans("c", ["a.py", "b.py", "c.py"]) == {"c.py": [(1, 3, "c1")]}
    snapshot.clear("c")
    assert snapshot.chunk_spans("c", ["c.py"]) == {}
    snapshot.close()
