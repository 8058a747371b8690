import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codectxd.config import SplitterSettings
from codectxd.splitter import Chunk, Splitter, grammars, split_lines
from codectxd.splitter.lines import split_by_lines
from codectxd.splitter.markdown import split_markdown

AST = Splitter(SplitterSettings(type="ast", chunk_size=2500, chunk_overlap=300))
SMALL = Splitter(SplitterSettings(type="ast", chunk_size=300, chunk_overlap=50))

SAMPLES: dict[str, tuple[str, set[str]]] = {
    "python": (
        "import os\n\n@dec\ndef load_config(path):\n    return path\n\n"
        "class Parser(Base):\n    def parse(self, text):\n        return text\n",
        {"load_config", "Parser"},
    ),
    "javascript": (
        "import x from 'y';\nexport function fetchUser(id) { return id; }\n"
        "const toSlug = (s) => s.toLowerCase();\nclass Cart {\n  total() { return 1; }\n}\n",
        {"fetchUser", "toSlug", "Cart"},
    ),
    "typescript": (
        "interface User { id: number }\nexport class Store implements I {\n  get(): void {}\n}\n"
        "export const handler = async (q: string): Promise<void> => {};\n",
        {"User", "Store", "handler"},
    ),
    "tsx": (
        "export function Button(props: P) {\n  return <button>{props.label}</button>;\n}\n",
        {"Button"},
    ),
    "go": (
        'package main\nimport "fmt"\ntype Server struct { A int }\n'
        "func (s *Server) Start() int { return 1 }\nfunc main() { fmt.Println(1) }\n",
        {"Server", "Start", "main"},
    ),
    "rust": (
        "use std::io;\nstruct Point { x: i32 }\nimpl Point {\n    fn new() -> Self { Point { x: 1 } }\n}\n"
        "fn main() {}\n",
        {"Point", "main"},
    ),
    "java": (
        "package a;\npublic class Account {\n  public int balance(int y) { return y; }\n}\n",
        {"Account"},
    ),
    "c": (
        "#include <stdio.h>\nstruct Node { int a; };\nstatic int *make_node(int x) { return 0; }\n",
        {"Node", "make_node"},
    ),
    "cpp": (
        "namespace geo {\nclass Shape { public: int area() { return 1; } };\n"
        "template<typename T> T identity(T x) { return x; }\n}\n",
        {"geo"},
    ),
    "csharp": (
        "namespace N {\n  public class Invoice {\n    public int Total(int x) { return x; }\n  }\n}\n",
        {"N"},
    ),
    "ruby": (
        "module Billing\n  class Invoice\n    def total(x)\n      x\n    end\n  end\nend\n",
        {"Billing"},
    ),
    "php": (
        "<?php\nfunction render_page($x) { return $x; }\nclass Controller { public function index() { return 1; } }\n",
        {"render_page", "Controller"},
    ),
    "kotlin": (
        "class Repo(val x: Int) {\n  fun find(): Int = x\n}\nfun topLevel(a: Int): Int { return a }\n",
        {"Repo", "topLevel"},
    ),
    "swift": (
        "class ViewModel { func load() -> Int { return 1 } }\nfunc helper() {}\n",
        {"ViewModel", "helper"},
    ),
    "scala": (
        "class Engine { def run(x: Int): Int = x }\nobject Main { def main() = 1 }\n",
        {"Engine", "Main"},
    ),
    "lua": (
        "local M = {}\nfunction M.greet(x) return x end\nlocal function helper() end\nreturn M\n",
        {"M.greet", "helper"},
    ),
    "bash": (
        "#!/bin/bash\nset -e\ndeploy() {\n  echo 1\n}\nfunction cleanup {\n  echo 2\n}\n",
        {"deploy", "cleanup"},
    ),
}


def assert_exact_cover(chunks: list[Chunk], text: str) -> None:
    lines = split_lines(text)
    assert chunks[0].start_line == 1
    assert chunks[-1].end_line == len(lines)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_line == a.end_line + 1
    assert "".join(c.content for c in chunks) == text
    for c in chunks:
        assert c.content == "".join(lines[c.start_line - 1 : c.end_line])


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_symbols_per_language(language: str) -> None:
    text, expected = SAMPLES[language]
    chunks = AST.split(text, language)
    assert_exact_cover(chunks, text)
    symbols = {part.strip() for c in chunks for part in c.symbol.split(",") if part}
    assert expected <= symbols, (language, symbols)


def _big_python_class() -> str:
    methods = "".join(
        f"    def method_{i}(self, value):\n        '''Doc {i}.'''\n"
        + "".join(f"        value = value + {j}\n" for j in range(12))
        + "        return value\n\n"
        for i in range(6)
    )
    return (
        f"import sys\n\n\nclass Big:\n    '''A big class.'''\n\n{methods}\ndef tail():\n    pass\n"
    )


def test_oversized_class_is_split_along_methods_with_qualified_symbols() -> None:
    text = _big_python_class()
    chunks = SMALL.split(text, "python")
    assert_exact_cover(chunks, text)
    names = [c.symbol for c in chunks]
    assert "Big.method_0" in " ".join(names) and "Big.method_5" in " ".join(names)
    assert any("tail" in c.symbol.split(", ") for c in chunks)
    method_chunk = next(c for c in chunks if c.symbol.startswith("Big.method_3"))
    assert "def method_3" in method_chunk.content
    assert all(len(c.content) <= 600 for c in chunks)


def test_leading_comment_travels_with_function() -> None:
    text = (
        "x = 1\n\n// Adds two numbers.\n// Carefully.\nfunction add(a, b) {\n"
        + "  return a + b;\n}\n" * 1
        + "const y = 2;\n" * 40
    )
    chunks = Splitter(SplitterSettings(chunk_size=200, chunk_overlap=0)).split(text, "javascript")
    add = next(c for c in chunks if c.symbol == "add")
    assert "// Adds two numbers.\n// Carefully.\nfunction add" in add.content


def test_line_splitter_overlap_and_progress() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    chunks = split_by_lines(text, 100, 30)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 100
    for a, b in zip(chunks, chunks[1:]):
        assert a.start_line < b.start_line <= a.end_line + 1
        assert b.start_line <= a.end_line  # overlapping
    assert all(len(c.content) <= 100 for c in chunks)


def test_single_huge_line_is_one_chunk() -> None:
    text = "x" * 10_000 + "\n"
    chunks = split_by_lines(text, 1000, 200)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 1)]


def test_markdown_by_headings() -> None:
    text = (
        "# Guide\nIntro.\n\n## Install\n"
        + "pip install x\n" * 30
        + "## Usage\n```\n# not a heading\n```\nRun it.\n"
    )
    chunks = split_markdown(text, 300)
    assert_exact_cover(chunks, text)
    assert any(c.symbol == "Guide > Install" for c in chunks)
    assert any(c.symbol == "Guide > Usage" for c in chunks)
    assert not any("not a heading" in c.symbol for c in chunks)


def test_empty_and_blank() -> None:
    assert AST.split("", "python") == []
    assert AST.split("\n\n  \n", "go") == []
    assert split_by_lines("", 100, 10) == []


def test_crlf_and_form_feeds_keep_line_numbers() -> None:
    text = "def a():\n    return 1\x0c\n\ndef b():\n    return 2\u2028\n"
    chunks = AST.split(text, "python")
    assert_exact_cover(chunks, text)
    assert chunks[-1].end_line == 5


def test_grammar_failure_falls_back_to_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A language the table claims but the grammar pack does not have: parser lookup fails.
    monkeypatch.setitem(grammars.DEFINITIONS, "nosuchlang", {"function": "function"})
    text = "".join(f"statement {i}\n" for i in range(300))
    with caplog.at_level(logging.WARNING):
        chunks = AST.split(text, "nosuchlang")
    assert chunks and chunks[0].start_line == 1 and chunks[-1].end_line == 300
    assert "using lines" in caplog.text


code_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "def f(x):",
                "    return x",
                "class A:",
                "    def m(self):",
                "",
                "        pass",
                "}",
                "{",
                "function g() {",
                "  let y = 1;",
                "// note",
                "/* open",
                "*/",
                "fn main() {",
                "if x:",
                "    y = '''",
                "'''",
                "#include <a>",
                "int main(void) {",
                "end",
                "module M",
            ]
        ),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=120),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=code_lines,
    language=st.sampled_from(sorted(SAMPLES)),
    size=st.sampled_from([120, 400, 2500]),
)
def test_property_ast_exact_cover(lines: list[str], language: str, size: int) -> None:
    text = "\n".join(lines) + ("\n" if lines and len(lines) % 2 else "")
    splitter = Splitter(SplitterSettings(type="ast", chunk_size=size, chunk_overlap=0))
    chunks = splitter.split(text, language)
    if not text.strip():
        assert chunks == []
        return
    assert_exact_cover(chunks, text)


@settings(max_examples=60, deadline=None)
@given(lines=code_lines, size=st.integers(50, 3000), overlap_ratio=st.floats(0, 0.9))
def test_property_line_cover_and_order(lines: list[str], size: int, overlap_ratio: float) -> None:
    text = "\n".join(lines)
    chunks = split_by_lines(text, size, int(size * overlap_ratio))
    if not text.strip():
        assert chunks == []
        return
    all_lines = split_lines(text)
    covered = set()
    for c in chunks:
        covered.update(range(c.start_line, c.end_line + 1))
        assert c.content == "".join(all_lines[c.start_line - 1 : c.end_line])
    assert covered == set(range(1, len(all_lines) + 1))
    starts = [c.start_line for c in chunks]
    assert starts == sorted(set(starts))


@settings(max_examples=40, deadline=None)
@given(lines=code_lines, size=st.integers(100, 2000))
def test_property_markdown_cover(lines: list[str], size: int) -> None:
    text = "\n".join(("# " + l) if i % 7 == 0 else l for i, l in enumerate(lines))
    chunks = split_markdown(text, size)
    if not text.strip():
        assert chunks == []
        return
    assert_exact_cover(chunks, text)
