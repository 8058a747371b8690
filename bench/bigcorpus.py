"""Corpora of the performance suites.

* The **big corpus**: pinned PyPI sdists and npm tarballs (Python, C/C++, JavaScript, TypeScript
  declarations, Rust) unpacked side by side into one repository root,
  ``bench/.cache/big/tree``; its line count is measured and reported.
* **Generated trees**: deterministic, realistic-looking source files in five languages
  (Python, TypeScript, Go, Rust, Java) — a module of a few classes / functions each, made of
  plausible statements — for the suites that need thousands of files (freshness, warm restart,
  memory) or no network (smoke runs).
"""

from __future__ import annotations

import fnmatch
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.run import CACHE_DIR, log

BIG_DIR = CACHE_DIR / "big"
BIG_FORMAT = 2


@dataclass(frozen=True, slots=True)
class BigPackage:
    """One pinned package of the big corpus.

    Attributes:
        name: registry name.
        version: pinned version.
        registry: ``"pypi"`` (sdist via ``pip download``), ``"npm"`` (``npm pack``) or
            ``"debian"`` (``apt-get download``).
        include: globs (relative to the archive's top directory) of the files to keep.
        exclude: ``fnmatch`` patterns removed from ``include``.
        archive: the archive's file name.
    """

    name: str
    version: str
    registry: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    archive: str

    @property
    def key(self) -> str:
        """Directory name inside the tree."""
        return f"{self.name.rsplit('/', 1)[-1].lower()}-{self.version}"


BIG_PACKAGES: tuple[BigPackage, ...] = (
    BigPackage(
        "Django",
        "5.1.4",
        "pypi",
        ("django/**/*.py", "django/**/*.js"),
        ("*/vendor/*", "*.min.js", "*/locale/*"),
        "Django-5.1.4.tar.gz",
    ),
    BigPackage(
        "SQLAlchemy", "2.0.36", "pypi", ("lib/sqlalchemy/**/*.py",), (), "sqlalchemy-2.0.36.tar.gz"
    ),
    # C: Pillow's imaging core (numpy's sdist would need its whole meson build just for
    # `pip download` to read its metadata).
    BigPackage(
        "pillow",
        "11.0.0",
        "pypi",
        ("src/libImaging/*.c", "src/libImaging/*.h", "src/*.c", "src/PIL/*.py"),
        ("*/thirdparty/*",),
        "pillow-11.0.0.tar.gz",
    ),
    BigPackage("three", "0.170.0", "npm", ("src/**/*.js",), (), "three-0.170.0.tgz"),
    BigPackage(
        "@typescript-eslint/typescript-estree",
        "8.18.0",
        "npm",
        ("dist/**/*.js", "dist/**/*.d.ts"),
        ("*.map",),
        "typescript-eslint-typescript-estree-8.18.0.tgz",
    ),
    # Rust: tokio's crate source as Debian packages it (PyPI's Rust sdists need cargo and
    # crates.io just to read their metadata).
    BigPackage(
        "librust-tokio-dev",
        "1.24.2-1",
        "debian",
        ("usr/share/cargo/registry/tokio-*/src/**/*.rs",),
        (),
        "librust-tokio-dev_1.24.2-1_amd64.deb",
    ),
)


@dataclass(frozen=True, slots=True)
class TreeStats:
    """What a corpus tree holds.

    Attributes:
        root: the repository root.
        files: files kept.
        loc: non-blank lines.
        bytes: total size.
        by_language: ``{extension: {"files": n, "loc": n}}``.
        packages: ``{package key: {"files": n, "loc": n}}`` (big corpus only).
    """

    root: Path
    files: int
    loc: int
    bytes: int
    by_language: dict[str, dict[str, int]]
    packages: dict[str, dict[str, int]]

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["root"] = str(self.root)
        return data


# --- the big corpus -------------------------------------------------------------------------


def fetch(package: BigPackage, downloads: Path) -> Path:
    """Download one archive once (``pip download --no-binary`` / ``npm pack``)."""
    downloads.mkdir(parents=True, exist_ok=True)
    archive = _find_archive(downloads, package)
    if archive is not None:
        return archive
    log(f"downloading {package.name} {package.version}")
    cwd = None
    if package.registry == "pypi":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            package.name,
            f"{package.name}=={package.version}",
            "-d",
            str(downloads),
        ]
    elif package.registry == "debian":
        command, cwd = ["apt-get", "download", f"{package.name}={package.version}"], downloads
    else:
        command = [
            "npm",
            "pack",
            "--silent",
            f"{package.name}@{package.version}",
            "--pack-destination",
            str(downloads),
        ]
    subprocess.run(command, check=True, capture_output=True, timeout=900, cwd=cwd)
    archive = _find_archive(downloads, package)
    if archive is None:
        raise FileNotFoundError(f"{' '.join(command)} produced no {package.archive}")
    return archive


def _find_archive(downloads: Path, package: BigPackage) -> Path | None:
    wanted = package.archive.lower()
    return next((p for p in downloads.iterdir() if p.name.lower() == wanted), None)


def _members(tar: tarfile.TarFile, package: BigPackage) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """(member, path below the top directory) of the files the package keeps."""
    for member in tar.getmembers():
        name = member.name.removeprefix("./")
        if not member.isfile() or "/" not in name:
            continue
        rel = name if name.startswith("usr/") else name.split("/", 1)[1]
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in package.include):
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in package.exclude):
            continue
        yield member, rel


def _open_archive(archive: Path) -> tarfile.TarFile:
    """A tarball, or the file system tarball of a Debian package (via dpkg-deb)."""
    if archive.suffix == ".deb":
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive)],
            check=True,
            capture_output=True,
            timeout=300,
        ).stdout
        return tarfile.open(fileobj=io.BytesIO(data))
    return tarfile.open(archive)


def _unpack(package: BigPackage, archive: Path, dest: Path) -> None:
    with _open_archive(archive) as tar:
        for member, rel in _members(tar, package):
            source = tar.extractfile(member)
            if source is None:
                continue
            target = dest / package.key / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())


def count_tree(root: Path, by_top: bool = False) -> TreeStats:
    """Files, non-blank lines and bytes under ``root``, per extension (and top directory)."""
    files = loc = size = 0
    languages: dict[str, Counter[str]] = {}
    packages: dict[str, Counter[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        data = path.read_bytes()
        lines = sum(1 for line in data.splitlines() if line.strip())
        files, loc, size = files + 1, loc + lines, size + len(data)
        ext = "d.ts" if path.name.endswith(".d.ts") else path.suffix.lstrip(".")
        languages.setdefault(ext, Counter()).update(files=1, loc=lines)
        if by_top:
            top = path.relative_to(root).parts[0]
            packages.setdefault(top, Counter()).update(files=1, loc=lines)
    return TreeStats(
        root,
        files,
        loc,
        size,
        {k: dict(v) for k, v in sorted(languages.items())},
        {k: dict(v) for k, v in packages.items()},
    )


def build_big_corpus(fresh: bool = False, cache: Path = BIG_DIR) -> TreeStats:
    """Fetch and unpack the big corpus into ``cache/tree`` (once), and count it.

    Args:
        fresh: unpack again even if a complete tree is cached.
        cache: the cache directory.
    """
    tree = cache / "tree"
    manifest = cache / "manifest.json"
    # As JSON reads it back (tuples become lists), or the cached tree would never match.
    expected = json.loads(json.dumps([asdict(p) for p in BIG_PACKAGES]))
    if not fresh and manifest.is_file() and tree.is_dir():
        data = json.loads(manifest.read_text())
        if data.get("format") == BIG_FORMAT and data.get("packages") == expected:
            stats = data["stats"]
            return TreeStats(
                tree,
                stats["files"],
                stats["loc"],
                stats["bytes"],
                stats["by_language"],
                stats["packages"],
            )
    if tree.exists():
        shutil.rmtree(tree)
    for package in BIG_PACKAGES:
        _unpack(package, fetch(package, cache / "downloads"), tree)
    stats = count_tree(tree, by_top=True)
    manifest.write_text(
        json.dumps({"format": BIG_FORMAT, "packages": expected, "stats": stats.as_dict()}, indent=1)
    )
    log(f"big corpus: {stats.files} files, {stats.loc} non-blank lines")
    return stats


# --- generated trees ------------------------------------------------------------------------

WORDS = (
    "account",
    "address",
    "amount",
    "batch",
    "buffer",
    "cache",
    "cart",
    "channel",
    "client",
    "config",
    "connection",
    "context",
    "count",
    "cursor",
    "customer",
    "data",
    "deadline",
    "delta",
    "device",
    "discount",
    "document",
    "entry",
    "event",
    "field",
    "file",
    "filter",
    "frame",
    "handler",
    "header",
    "index",
    "invoice",
    "item",
    "job",
    "key",
    "label",
    "layer",
    "limit",
    "line",
    "list",
    "lock",
    "message",
    "metric",
    "node",
    "offset",
    "order",
    "owner",
    "packet",
    "page",
    "path",
    "payload",
    "payment",
    "policy",
    "pool",
    "price",
    "queue",
    "record",
    "region",
    "report",
    "request",
    "resource",
    "response",
    "result",
    "retry",
    "route",
    "rule",
    "schema",
    "score",
    "session",
    "shard",
    "signal",
    "snapshot",
    "source",
    "state",
    "stream",
    "table",
    "task",
    "tenant",
    "token",
    "total",
    "user",
    "value",
    "vector",
    "window",
    "worker",
)
VERBS = (
    "apply",
    "build",
    "check",
    "close",
    "collect",
    "compute",
    "convert",
    "create",
    "decode",
    "delete",
    "encode",
    "fetch",
    "find",
    "flush",
    "format",
    "handle",
    "load",
    "merge",
    "open",
    "parse",
    "publish",
    "read",
    "refresh",
    "register",
    "remove",
    "render",
    "reset",
    "resolve",
    "save",
    "schedule",
    "send",
    "sort",
    "split",
    "store",
    "sync",
    "update",
    "validate",
    "write",
)
#: (extension, weight) of generated files: a mixed repository, Python and TypeScript first.
GENERATED_LANGUAGES = (("py", 4), ("ts", 3), ("go", 1), ("rs", 1), ("java", 1))


def _camel(words: Sequence[str], upper: bool = False) -> str:
    head = words[0].capitalize() if upper else words[0]
    return head + "".join(w.capitalize() for w in words[1:])


def _snake(words: Sequence[str]) -> str:
    return "_".join(words)


class _Namer:
    """Plausible identifiers from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def noun(self) -> str:
        return self.rng.choice(WORDS)

    def fn_words(self) -> list[str]:
        return [self.rng.choice(VERBS), self.noun()] + (
            [self.noun()] if self.rng.random() < 0.4 else []
        )

    def class_words(self) -> list[str]:
        return [
            self.noun(),
            self.rng.choice(
                ("manager", "service", "store", "builder", "parser", "client", "registry", "view")
            ),
        ]


def _statements(
    rng: random.Random, namer: _Namer, lang: str, indent: str, count: int, params: Sequence[str]
) -> list[str]:
    """Plausible body lines in ``lang`` that use ``params``."""
    out: list[str] = []
    local = [namer.noun() for _ in range(3)]
    for i in range(count):
        name, other = local[i % 3], rng.choice(list(params) or local)
        call = _camel(namer.fn_words()) if lang in ("ts", "java") else _snake(namer.fn_words())
        kind = rng.random()
        if lang == "py":
            if kind < 0.4:
                out.append(f"{indent}{name} = {call}({other}, limit={rng.randint(1, 500)})")
            elif kind < 0.7:
                out += [
                    f"{indent}if {name} is None or len({other}) > {rng.randint(2, 64)}:",
                    f'{indent}    raise ValueError(f"bad {name}: {{{other}!r}}")',
                ]
            else:
                out += [f"{indent}for item in {other}:", f"{indent}    {name} = {call}(item)"]
        elif lang == "ts":
            if kind < 0.4:
                out.append(f"{indent}const {name}{i} = {call}({other}, {rng.randint(1, 500)});")
            elif kind < 0.7:
                out += [
                    f"{indent}if (!{other} || {other}.length > {rng.randint(2, 64)}) {{",
                    f"{indent}  throw new Error(`bad {name}: ${{{other}}}`);",
                    f"{indent}}}",
                ]
            else:
                out += [
                    f"{indent}for (const item of {other}) {{",
                    f"{indent}  this.{_camel([name, 'count'])} += {call}(item);",
                    f"{indent}}}",
                ]
        elif lang == "go":
            if kind < 0.5:
                callee = _camel(namer.fn_words(), True)
                out += [
                    f"{indent}{name}{i}, err := {callee}({other})",
                    f"{indent}if err != nil {{",
                    f'{indent}\treturn 0, fmt.Errorf("{name}: %w", err)',
                    f"{indent}}}",
                    f"{indent}_ = {name}{i}",
                ]
            else:
                out += [
                    f"{indent}for _, item := range {other} {{",
                    f"{indent}\t{_camel([name, 'total'])} += len(item)",
                    f"{indent}}}",
                ]
        elif lang == "rs":
            if kind < 0.5:
                out.append(f"{indent}let {name}_{i} = {call}(&{other})?;")
            else:
                out += [
                    f"{indent}for item in {other}.iter() {{",
                    f"{indent}    self.{name}_count += item.len();",
                    f"{indent}}}",
                ]
        else:
            if kind < 0.5:
                out.append(f"{indent}var {name}{i} = {call}({other}, {rng.randint(1, 500)});")
            else:
                out += [
                    f"{indent}if ({other} == null) {{",
                    f'{indent}    throw new IllegalArgumentException("{name}");',
                    f"{indent}}}",
                ]
    return out


def _python_file(rng: random.Random, namer: _Namer, marker: str) -> str:
    lines = [
        f'"""{namer.noun().capitalize()} {namer.noun()} helpers."""',
        "",
        "from __future__ import annotations",
        "",
        "import logging",
        "",
        "log = logging.getLogger(__name__)",
        "",
    ]
    if marker:
        lines += [f'MARKER = "{marker}"', ""]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.4:
            cls = _camel(namer.class_words(), True)
            lines += [
                "",
                f"class {cls}:",
                f'    """Keeps {namer.noun()}s by {namer.noun()}."""',
                "",
                "    def __init__(self, limit: int = 100) -> None:",
                "        self.limit = limit",
                "        self.items: dict[str, int] = {}",
            ]
            for _ in range(rng.randint(1, 3)):
                words = namer.fn_words()
                lines += ["", f"    def {_snake(words)}(self, {words[1]}: str) -> int:"]
                lines += _statements(rng, namer, "py", "        ", rng.randint(2, 6), [words[1]])
                lines.append(f"        return len(self.items) + len({words[1]})")
        else:
            words = namer.fn_words()
            params = [namer.noun(), namer.noun() + "s"]
            lines += [
                "",
                "",
                f"def {_snake(words)}({params[0]}: str, {params[1]}: list[str]) -> list[str]:",
                f'    """{words[0].capitalize()} the {" ".join(words[1:])}."""',
            ]
            lines += _statements(rng, namer, "py", "    ", rng.randint(3, 9), params)
            lines.append(f"    return sorted({params[1]})")
    return "\n".join(lines) + "\n"


def _ts_file(rng: random.Random, namer: _Namer, marker: str) -> str:
    lines = [f"import {{ {_camel(namer.fn_words())} }} from './{namer.noun()}';", ""]
    if marker:
        lines += [f"export const MARKER = '{marker}';", ""]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            cls = _camel(namer.class_words(), True)
            lines += [f"export class {cls} {{", f"  private {namer.noun()}Count = 0;", ""]
            for _ in range(rng.randint(1, 3)):
                words = namer.fn_words()
                lines += [f"  {_camel(words)}({words[1]}: string[]): number {{"]
                lines += _statements(rng, namer, "ts", "    ", rng.randint(2, 5), [words[1]])
                lines += [f"    return {words[1]}.length;", "  }", ""]
            lines += ["}", ""]
        else:
            words = namer.fn_words()
            lines += [f"export function {_camel(words)}({words[1]}: string[]): string[] {{"]
            lines += _statements(rng, namer, "ts", "  ", rng.randint(3, 8), [words[1]])
            lines += [f"  return [...{words[1]}].sort();", "}", ""]
    return "\n".join(lines)


def _go_file(rng: random.Random, namer: _Namer, marker: str) -> str:
    lines = [f"package {namer.noun()}", "", 'import "fmt"', ""]
    if marker:
        lines += [f'const Marker = "{marker}"', ""]
    for _ in range(rng.randint(1, 3)):
        words = namer.fn_words()
        lines += [f"func {_camel(words, True)}({words[1]} []string) (int, error) {{"]
        lines += _statements(rng, namer, "go", "\t", rng.randint(2, 5), [words[1]])
        lines += [f"\treturn len({words[1]}), nil", "}", ""]
    return "\n".join(lines)


def _rust_file(rng: random.Random, namer: _Namer, marker: str) -> str:
    noun = namer.noun()
    lines = ["use std::collections::HashMap;", ""]
    if marker:
        lines += [f'pub const MARKER: &str = "{marker}";', ""]
    lines += [
        f"pub struct {_camel(namer.class_words(), True)} {{",
        f"    {noun}_count: usize,",
        "    items: HashMap<String, usize>,",
        "}",
        "",
        f"impl {_camel([noun, 'state'], True)} {{",
    ]
    for _ in range(rng.randint(1, 3)):
        words = namer.fn_words()
        lines += [
            f"    pub fn {_snake(words)}(&mut self, {words[1]}: &[String]) "
            "-> Result<usize, String> {"
        ]
        lines += _statements(rng, namer, "rs", "        ", rng.randint(2, 5), [words[1]])
        lines += [f"        Ok({words[1]}.len() + self.items.len())", "    }", ""]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _java_file(rng: random.Random, namer: _Namer, marker: str, cls: str) -> str:
    lines = [
        f"package com.example.{namer.noun()};",
        "",
        "import java.util.List;",
        "",
        f"public class {cls} {{",
    ]
    if marker:
        lines += [f'    public static final String MARKER = "{marker}";', ""]
    for _ in range(rng.randint(1, 3)):
        words = namer.fn_words()
        lines += [f"    public int {_camel(words)}(List<String> {words[1]}) {{"]
        lines += _statements(rng, namer, "java", "        ", rng.randint(2, 5), [words[1]])
        lines += [f"        return {words[1]}.size();", "    }", ""]
    lines.append("}")
    return "\n".join(lines) + "\n"


def generated_file(seed: int, index: int, marker: str = "") -> tuple[str, str]:
    """(relative path, content) of generated file ``index`` of tree ``seed``.

    Args:
        seed: the tree's seed (same seed and index: same file).
        index: the file number.
        marker: a token written into the file (so a lexical search can find it).
    """
    rng = random.Random(f"{seed}:{index}")
    namer = _Namer(rng)
    ext = rng.choices([e for e, _ in GENERATED_LANGUAGES], [w for _, w in GENERATED_LANGUAGES])[0]
    directory = f"{namer.noun()}s/{namer.noun()}" if rng.random() < 0.7 else namer.noun() + "s"
    stem = _snake(namer.fn_words()[1:]) + f"_{index}"
    if ext == "py":
        body = _python_file(rng, namer, marker)
    elif ext == "ts":
        body = _ts_file(rng, namer, marker)
    elif ext == "go":
        body = _go_file(rng, namer, marker)
    elif ext == "rs":
        body = _rust_file(rng, namer, marker)
    else:
        stem = _camel(stem.split("_")[:-1], True) + str(index)
        body = _java_file(rng, namer, marker, stem)
    return f"src/{directory}/{stem}.{ext}", body


def generate_tree(root: Path, files: int, seed: int) -> TreeStats:
    """Write a deterministic generated repository of ``files`` files.

    Cached by a manifest: an existing tree is only repaired (files an interrupted benchmark
    changed, deleted or added are put back as generated), and files already holding the right
    content are left untouched, so their mtimes — and an existing index — stay valid.
    """
    manifest = root / ".bench-tree.json"
    wanted = {"files": files, "seed": seed, "format": 2}
    if manifest.is_file() and json.loads(manifest.read_text()).get("spec") == wanted:
        repaired = _write_generated(root, files, seed)
        if repaired:
            log(f"{root}: repaired {repaired} file(s) left changed by an interrupted run")
        data = json.loads(manifest.read_text())["stats"]
        return TreeStats(root, data["files"], data["loc"], data["bytes"], data["by_language"], {})
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / ".gitignore").write_text(".bench-tree.json\n")
    _write_generated(root, files, seed)
    stats = count_tree(root)
    manifest.write_text(json.dumps({"spec": wanted, "stats": stats.as_dict()}, indent=1))
    return stats


def _write_generated(root: Path, files: int, seed: int) -> int:
    """Make the tree hold exactly the generated files; returns how many were (re)written or
    removed."""
    expected: set[Path] = set()
    changed = 0
    for index in range(files):
        rel, body = generated_file(seed, index)
        path = root / rel
        expected.add(path)
        try:
            if path.read_text() == body:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        changed += 1
    for path in root.glob("src/**/*"):
        if path.is_file() and path not in expected:
            path.unlink()
            changed += 1
    return changed


def generated_repo_dir(base: Path, files: int, seed: int) -> Path:
    """Where a generated repository (``tree/``) and its daemon data dir (``data/``) are cached
    under ``base`` (a per-model cache); suites that use the same size and seed share them
    (never run two suites at once)."""
    return base / f"gen-{files}-{seed}"


def marker_token(rng: random.Random) -> str:
    """A unique lower-case token (one BM25 term: no case or digit boundaries inside)."""
    return "zq" + "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(12))
