"""The retrieval benchmark's corpus: pinned package sources with their docs stripped, plus queries.

Each package is fetched once from its registry (``pip download`` of the sdist, ``npm pack``),
its source files are copied into a root of their own with every docstring (Python) or JSDoc
block (JavaScript) removed, and every documented definition becomes a candidate query: the first
sentence of its documentation, whose answer is the definition's line range in the stripped file.
Everything is cached under ``bench/.cache/corpus/``; a manifest per package records the
candidates so later runs neither download nor parse again.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tree_sitter import Node

from codectxd.splitter.grammars import parser_for

#: Bump when extraction or stripping changes: cached manifests of another format are rebuilt.
CORPUS_FORMAT = 4
#: Queries shorter than this (in words) are too vague to have one right answer.
MIN_QUERY_WORDS = 4
#: Placeholder documentation ("To do: update docs.") describes nothing.
_PLACEHOLDER = re.compile(r"^(to ?do|fixme|xxx)\b", re.IGNORECASE)

Language = Literal["python", "js"]


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """A pinned package and which of its files make up the indexed tree.

    Attributes:
        name: the registry name.
        version: the pinned version.
        registry: ``"pypi"`` (sdist via pip) or ``"npm"`` (tarball via ``npm pack``).
        language: the corpus the package belongs to.
        include: globs, relative to the archive's top directory, of the files to index.
        exclude: ``fnmatch`` patterns (on that relative path) removed from ``include``.
        strip_prefix: removed from the relative path when copying (``"src/"``).
    """

    name: str
    version: str
    registry: Literal["pypi", "npm"]
    language: Language
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    strip_prefix: str = ""

    @property
    def key(self) -> str:
        """``name-version``, the package's directory and manifest name in the cache."""
        return f"{self.name}-{self.version}"


#: Only the library sources are indexed (no tests, docs or examples: docs would repeat the
#: docstrings we strip). lodash is the modular build: the monolithic lodash.js / core.js repeat
#: every function. express and commander add files holding many documented functions each.
PACKAGES: tuple[PackageSpec, ...] = (
    PackageSpec("click", "8.1.7", "pypi", "python", ("src/click/**/*.py",), strip_prefix="src/"),
    PackageSpec(
        "requests", "2.32.3", "pypi", "python", ("src/requests/**/*.py",), strip_prefix="src/"
    ),
    PackageSpec("jinja2", "3.1.4", "pypi", "python", ("src/jinja2/**/*.py",), strip_prefix="src/"),
    PackageSpec(
        "lodash",
        "4.17.21",
        "npm",
        "js",
        ("*.js",),
        exclude=("lodash.js", "core.js", "fp.js", "*.min.js"),
    ),
    PackageSpec("express", "4.21.2", "npm", "js", ("index.js", "lib/**/*.js")),
    PackageSpec("commander", "12.1.0", "npm", "js", ("index.js", "lib/**/*.js")),
)


@dataclass(frozen=True, slots=True)
class Target:
    """One query and the definition that answers it (lines of the stripped file, 1-based).

    For a class the range is its header: from the ``class`` line (or first decorator) to the
    line before its first nested definition, so a hit has to show the class itself.
    """

    package: str
    language: Language
    path: str
    qualname: str
    kind: str
    start_line: int
    end_line: int
    query: str


@dataclass(slots=True)
class PackageCorpus:
    """A package ready to index: its stripped root, its files and its candidate queries."""

    spec: PackageSpec
    root: Path
    archive_sha256: str
    files: list[str]
    candidates: list[Target]

    def sample(self, limit: int, seed: int) -> list[Target]:
        """Up to ``limit`` candidates, chosen by a seeded shuffle (a smaller limit is a prefix).

        Args:
            limit: the maximum number of queries.
            seed: the shuffle seed (combined with the package name).
        """
        ordered = sorted(self.candidates, key=lambda t: (t.path, t.start_line, t.qualname))
        random.Random(f"{seed}:{self.spec.name}").shuffle(ordered)
        return ordered[:limit]


# --- text helpers ---------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_RST_ROLE = re.compile(r":[\w:]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")
_JSDOC_LINK = re.compile(r"\{@link(?:code|plain)?\s+([^}|\s]+)[^}]*\}")


def clean_markup(text: str) -> str:
    """Drop reST roles, JSDoc links and backticks so the query reads like typed text."""
    text = _RST_ROLE.sub(r"\1", text)
    text = _JSDOC_LINK.sub(r"\1", text)
    return text.replace("`", "")


def first_sentence(description: str) -> str:
    """The first sentence of the first paragraph of a documentation text, on one line."""
    paragraph = re.split(r"\n\s*\n", description.strip(), maxsplit=1)[0]
    flat = " ".join(paragraph.split())
    sentence = _SENTENCE_END.split(flat, maxsplit=1)[0]
    return clean_markup(sentence).strip()


def usable_query(query: str) -> bool:
    """Whether a first sentence is specific enough to be a query."""
    return len(query.split()) >= MIN_QUERY_WORDS and not _PLACEHOLDER.match(query)


# --- Python ---------------------------------------------------------------------------------

_PyDef = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _docstring_expr(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if not isinstance(node, _PyDef | ast.Module) or not body:
        return None
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _strip_python_once(text: str) -> tuple[str, int]:
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    found: list[tuple[ast.Expr, bool]] = []
    for node in ast.walk(tree):
        doc = _docstring_expr(node)
        if doc is not None:
            found.append((doc, len(node.body) == 1))  # type: ignore[attr-defined]
    for doc, only in sorted(found, key=lambda item: -item[0].lineno):
        first, last = doc.lineno - 1, (doc.end_lineno or doc.lineno) - 1
        prefix = lines[first].encode()[: doc.col_offset].decode()
        suffix = lines[last].encode()[doc.end_col_offset or 0 :].decode()
        tail = suffix.strip()
        if prefix.strip() == "" and (tail == "" or tail.startswith("#")) and not only:
            lines[first : last + 1] = []
            continue
        newline = "\n" if suffix.endswith("\n") else ""
        rest = suffix.rstrip("\n") if tail and not tail.startswith("#") else ""
        lines[first : last + 1] = [f"{prefix}pass{rest}{newline}"]
    return "".join(lines), len(found)


def strip_python(text: str) -> str:
    """Remove every docstring; a body left empty gets ``pass`` at the docstring's indentation.

    Whole docstring lines are deleted (the code keeps its shape, line numbers shift). Repeated
    until no docstring remains, since a string statement after a docstring becomes one.

    Raises:
        SyntaxError: the input (or, which would be a bug, the output) is not valid Python.
    """
    for _ in range(5):
        text, removed = _strip_python_once(text)
        if not removed:
            return text
    raise ValueError("docstrings keep appearing after stripping")


def _py_definitions(tree: ast.Module) -> Iterator[tuple[_PyDef, str]]:
    """Every function, method and class with its dotted qualified name, in source order."""

    def walk(node: ast.AST, stack: tuple[str, ...]) -> Iterator[tuple[_PyDef, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _PyDef):
                names = (*stack, child.name)
                yield child, ".".join(names)
                yield from walk(child, names)
            else:
                yield from walk(child, stack)

    yield from walk(tree, ())


def _py_kind(node: _PyDef, qualname: str) -> str:
    if isinstance(node, ast.ClassDef):
        return "class"
    return "method" if "." in qualname else "function"


def _py_range(node: _PyDef) -> tuple[int, int]:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno or node.lineno
    if isinstance(node, ast.ClassDef):
        nested = [s.lineno for s in node.body if isinstance(s, _PyDef)]
        nested += [d.lineno for s in node.body if isinstance(s, _PyDef) for d in s.decorator_list]
        if nested and min(nested) > node.lineno:
            end = min(nested) - 1
    return start, end


def _occurrences(names: list[str]) -> list[tuple[str, int]]:
    """Pair each name with how many times it appeared before (overloads, property setters)."""
    seen: Counter[str] = Counter()
    out: list[tuple[str, int]] = []
    for name in names:
        out.append((name, seen[name]))
        seen[name] += 1
    return out


def python_targets(package: str, path: str, original: str, stripped: str) -> list[Target]:
    """The documented definitions of one Python file, located in its stripped version."""
    before = list(_py_definitions(ast.parse(original)))
    after = list(_py_definitions(ast.parse(stripped)))
    located = dict(zip(_occurrences([q for _, q in after]), (n for n, _ in after), strict=True))
    targets: list[Target] = []
    for key, (node, qualname) in zip(_occurrences([q for _, q in before]), before, strict=True):
        doc = ast.get_docstring(node, clean=True)
        if not doc or key not in located:
            continue
        query = first_sentence(doc)
        if not usable_query(query):
            continue
        start, end = _py_range(located[key])
        targets.append(
            Target(package, "python", path, qualname, _py_kind(node, qualname), start, end, query)
        )
    return targets


# --- JavaScript -----------------------------------------------------------------------------

_FUNCTION_VALUES = frozenset(
    {
        "function_expression",
        "function",
        "arrow_function",
        "generator_function",
        "class",
        "class_expression",
    }
)


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node: Node | None) -> str:
    return " ".join((node.text or b"").decode("utf-8", "replace").split()) if node else ""


def _is_jsdoc(node: Node) -> bool:
    text = node.text or b""
    return node.type == "comment" and text.startswith(b"/**") and not text.startswith(b"/**/")


def _enclosing_class(node: Node) -> str:
    parent = node.parent
    while parent is not None:
        if parent.type in ("class_declaration", "class"):
            return _text(parent.child_by_field_name("name"))
        parent = parent.parent
    return ""


def _js_definition(node: Node) -> tuple[Node, str, str] | None:
    """(statement node, qualified name, kind) when ``node`` defines a function or class."""
    kind_of = {
        "function_declaration": "function",
        "generator_function_declaration": "function",
        "class_declaration": "class",
    }
    if node.type in kind_of:
        return node, _text(node.child_by_field_name("name")), kind_of[node.type]
    if node.type == "method_definition":
        owner = _enclosing_class(node)
        name = _text(node.child_by_field_name("name"))
        return node, f"{owner}.{name}" if owner else name, "method"
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is None or value.type not in _FUNCTION_VALUES:
            return None
        statement = node.parent
        single = statement is not None and statement.named_child_count == 1
        kind = "class" if value.type.startswith("class") else "function"
        return (
            statement if single and statement else node,
            _text(node.child_by_field_name("name")),
            kind,
        )
    if node.type == "assignment_expression":
        right = node.child_by_field_name("right")
        if right is None or right.type not in _FUNCTION_VALUES:
            return None
        statement = (
            node.parent if node.parent and node.parent.type == "expression_statement" else node
        )
        kind = "class" if right.type.startswith("class") else "function"
        return statement, _text(node.child_by_field_name("left")), kind
    return None


def _js_definitions(root: Node) -> list[tuple[Node, str, str]]:
    return [found for node in _walk(root) if (found := _js_definition(node)) is not None]


def _js_range(node: Node, kind: str) -> tuple[int, int]:
    start, end = node.start_point.row + 1, node.end_point.row + 1
    if kind == "class":
        methods = [n.start_point.row + 1 for n in _walk(node) if n.type == "method_definition"]
        if methods and min(methods) > start:
            end = min(methods) - 1
    return start, end


def jsdoc_description(comment: str) -> str:
    """The free text of a ``/** ... */`` block: the lines before its first ``@tag``."""
    body = comment.removeprefix("/**").removesuffix("*/")
    out: list[str] = []
    for line in body.splitlines():
        line = re.sub(r"^\s*\*?\s?", "", line)
        if line.lstrip().startswith("@"):
            break
        out.append(line)
    return "\n".join(out)


def strip_jsdoc(source: bytes) -> bytes:
    """Remove every ``/** ... */`` block; lines holding nothing else are deleted entirely."""
    tree = parser_for("javascript").parse(source)
    comments = [n for n in _walk(tree.root_node) if _is_jsdoc(n)]
    data = bytearray(source)
    for node in sorted(comments, key=lambda n: -n.start_byte):
        line_start = data.rfind(b"\n", 0, node.start_byte) + 1
        line_end = data.find(b"\n", node.end_byte)
        line_end = len(data) if line_end < 0 else line_end
        prefix = data[line_start : node.start_byte]
        suffix = data[node.end_byte : line_end]
        if not prefix.strip() and not suffix.strip():
            del data[line_start : min(line_end + 1, len(data))]
        else:
            del data[node.start_byte : node.end_byte]
    return bytes(data)


def _documented(
    comment: Node, by_span: dict[tuple[int, int], tuple[Node, str, str]]
) -> tuple[Node, str, str] | None:
    nxt = comment.next_named_sibling
    if nxt is None or nxt.start_point.row - comment.end_point.row > 3:
        return None
    candidates = [nxt, *(nxt.named_children if nxt.type == "export_statement" else [])]
    for node in candidates:
        found = by_span.get((node.start_byte, node.end_byte))
        if found is not None:
            return found
    return None


def js_targets(package: str, path: str, original: bytes, stripped: bytes) -> list[Target]:
    """The JSDoc-documented functions, methods and classes of one file, located after stripping.

    A definition is matched by qualified name and by its occurrence number among definitions of
    that name (stripping removes comments only, so the order of definitions is unchanged).
    """
    parser = parser_for("javascript")
    before_root = parser.parse(original).root_node
    before = _js_definitions(before_root)
    after = _js_definitions(parser.parse(stripped).root_node)
    before_keys = dict(
        zip(
            ((n.start_byte, n.end_byte) for n, _, _ in before),
            _occurrences([q for _, q, _ in before]),
            strict=True,
        )
    )
    located = dict(zip(_occurrences([q for _, q, _ in after]), after, strict=True))
    by_span = {(n.start_byte, n.end_byte): (n, q, k) for n, q, k in before}
    targets: list[Target] = []
    for comment in (n for n in _walk(before_root) if _is_jsdoc(n)):
        found = _documented(comment, by_span)
        if found is None:
            continue
        node, qualname, kind = found
        key = before_keys[(node.start_byte, node.end_byte)]
        query = first_sentence(jsdoc_description(_raw(comment)))
        if key not in located or not qualname or not usable_query(query):
            continue
        start, end = _js_range(located[key][0], kind)
        targets.append(Target(package, "js", path, qualname, kind, start, end, query))
    return targets


def _raw(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


# --- fetching and building ------------------------------------------------------------------


def fetch(spec: PackageSpec, downloads: Path) -> Path:
    """Download the package archive once (sdist for PyPI, ``npm pack`` tarball for npm)."""
    downloads.mkdir(parents=True, exist_ok=True)
    existing = _archive_in(downloads, spec)
    if existing is not None:
        return existing
    if spec.registry == "pypi":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{spec.name}=={spec.version}",
            "-d",
            str(downloads),
        ]
    else:
        command = [
            "npm",
            "pack",
            "--silent",
            f"{spec.name}@{spec.version}",
            "--pack-destination",
            str(downloads),
        ]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    archive = _archive_in(downloads, spec)
    if archive is None:
        raise FileNotFoundError(f"{' '.join(command)} produced no archive in {downloads}")
    return archive


def _archive_in(downloads: Path, spec: PackageSpec) -> Path | None:
    names = {
        f"{spec.name}-{spec.version}.tar.gz",
        f"{spec.name}-{spec.version}.tgz",
        f"{spec.name.replace('-', '_')}-{spec.version}.tar.gz",
    }
    for candidate in downloads.iterdir():
        if candidate.name.lower() in {n.lower() for n in names}:
            return candidate
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extract(archive: Path, dest: Path) -> Path:
    """Unpack a tarball into ``dest`` and return its single top-level directory."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise ValueError(f"{archive.name}: expected one top-level directory, found {len(tops)}")
    return tops[0]


def _selected_files(top: Path, spec: PackageSpec) -> list[str]:
    found: set[str] = set()
    for pattern in spec.include:
        found.update(p.relative_to(top).as_posix() for p in top.glob(pattern) if p.is_file())
    return sorted(f for f in found if not any(fnmatch.fnmatch(f, x) for x in spec.exclude))


def _strip_and_locate(spec: PackageSpec, rel: str, original: bytes) -> tuple[bytes, list[Target]]:
    if spec.language == "python":
        text = original.decode("utf-8")
        stripped = strip_python(text)
        return stripped.encode("utf-8"), python_targets(spec.name, rel, text, stripped)
    stripped_js = strip_jsdoc(original)
    return stripped_js, js_targets(spec.name, rel, original, stripped_js)


def _unique_queries(targets: list[Target]) -> list[Target]:
    """Drop queries whose text is shared by several targets: they have no single answer."""
    counts = Counter(t.query.lower() for t in targets)
    return [t for t in targets if counts[t.query.lower()] == 1]


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` unless the file already holds it (an unchanged mtime keeps the index)."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _remove_others(root: Path, keep: set[str]) -> None:
    """Delete the files under ``root`` that are not in ``keep`` (left by an older build)."""
    for path in root.rglob("*"):
        if path.is_file() and path.relative_to(root).as_posix() not in keep:
            path.unlink()


def build_package(spec: PackageSpec, cache: Path) -> PackageCorpus:
    """Fetch, strip and index the candidates of one package (or load them from the cache).

    Args:
        spec: the package.
        cache: the corpus cache directory (``bench/.cache/corpus``).
    """
    root = cache / "roots" / spec.key
    manifest = cache / f"{spec.key}.json"
    if manifest.is_file() and root.is_dir():
        data = json.loads(manifest.read_text())
        if data.get("format") == CORPUS_FORMAT:
            return PackageCorpus(
                spec,
                root,
                data["archive_sha256"],
                data["files"],
                [Target(**t) for t in data["candidates"]],
            )
    archive = fetch(spec, cache / "downloads")
    top = _extract(archive, cache / "extracted" / spec.key)
    files: list[str] = []
    targets: list[Target] = []
    for rel in _selected_files(top, spec):
        dest_rel = rel.removeprefix(spec.strip_prefix)
        stripped, found = _strip_and_locate(spec, dest_rel, (top / rel).read_bytes())
        _write_if_changed(root / dest_rel, stripped)
        files.append(dest_rel)
        targets.extend(found)
    _remove_others(root, set(files))
    corpus = PackageCorpus(spec, root, _sha256(archive), files, _unique_queries(targets))
    manifest.write_text(
        json.dumps(
            {
                "format": CORPUS_FORMAT,
                "package": asdict(spec),
                "archive_sha256": corpus.archive_sha256,
                "files": files,
                "candidates": [asdict(t) for t in corpus.candidates],
            },
            indent=1,
        )
    )
    return corpus


def build_corpus(cache: Path, only: Language | None = None) -> list[PackageCorpus]:
    """All benchmark packages (optionally one language's), built or loaded from ``cache``."""
    return [
        build_package(spec, cache) for spec in PACKAGES if only is None or spec.language == only
    ]
