"""What a search query says beyond its words: the identifiers, dotted names, file paths and
traceback frames in it, whether it asks for tests or data, and the part of it the embedding
model should read.

Queries range from `parseConfig` to a whole GitHub issue (prose, code blocks, tracebacks):
search matches the names and paths exactly (`codectxd.search`), BM25 reads everything, and the
model reads the prose, cut to its window.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

#: Characters of prose given to the embedding model: about its 256-token window.
PROSE_CHARS = 1000
#: At most this many names / paths of one query are looked up exactly.
MAX_NAMES = 24
MAX_PATHS = 12
#: Whether a query asks for tests or data is read from its start: a short query, or the title
#: of an issue (whose body may well say "test" about anything).
HEAD_CHARS = 200

_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in ([A-Za-z_<>][\w<>]*))?')
#: IPython's frames: `~/src/pkg/mod.py in func(self, x)`, then the lines, the current one
#: marked `---> 12`.
_IPYTHON_FRAME = re.compile(r"^(\S+\.py) in ([A-Za-z_<>][\w<>]*)\(", re.M)
_IPYTHON_LINE = re.compile(r"^-+> ?(\d+)", re.M)
#: A file path: relative (`pkg/mod.py`), absolute or from home (`~/src/pkg/mod.py`).
_PATH = re.compile(
    r"(?<![\w/.~-])((?:~|\.{1,2})?/?(?:[\w.+-]+/)+[\w.+-]+\.[A-Za-z][A-Za-z0-9]{0,4})\b"
)
_DOTTED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\b")
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
_FENCE = re.compile(r"```.*?(```|\Z)", re.S)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):.*?(?:\n\S[^\n]*\n|\Z)", re.S)
_TESTS = re.compile(r"\b(tests?|testing|pytest|unittest|test[ _]case|fixtures?|spec)\b", re.I)
_DATA = re.compile(r"\b(json|yaml|yml|csv|xml|fixture|dataset|results?)\b", re.I)
#: A question for a place in the code: "where are hits merged", "which function parses it".
_WHERE = re.compile(
    r"^\W*(where\b|(which|what) (functions?|methods?|class(es)?|modules?|files?|code)\b)", re.I
)
_DOCS = re.compile(r"\b(docs?|documentation|readme|guide|tutorial|changelog|manual)\b", re.I)
#: A query this long, or of several lines, is an issue or a report rather than a question.
LONG_CHARS = 300
#: Extensions a path or dotted name may point at, in the order modules are looked up.
_MODULE_FILES = ("{}.py", "{}/__init__.py")
#: Dotted words that are not names: versions, file names, sentence ends, e.g. / i.e.
_NOT_NAMES = re.compile(r"^(\d|e\.g|i\.e|etc\.|vs\.)", re.I)


@dataclass(frozen=True, slots=True)
class Frame:
    """A traceback frame: `File "path", line N, in function`."""

    path: str
    line: int
    function: str


@dataclass(frozen=True, slots=True)
class QueryShape:
    text: str
    prose: str  # what the embedding model reads
    names: tuple[str, ...]  # code-like names (the last part of dotted ones), most mentioned first
    paths: tuple[str, ...]  # file paths mentioned, as written (suffix-matched against files)
    frames: tuple[Frame, ...]
    wants_tests: bool
    wants_data: bool
    wants_docs: bool
    wants_code: bool  # it asks where something is done (the code, not a page about it)
    long: bool  # an issue or a report: the names it mentions are likely what it is about
    identifier: str  # the whole query when it is one identifier or dotted name, else ""


def is_code_name(word: str) -> bool:
    """`parse_config`, `parseConfig`, `HTTPServer`, `__init__`: a name no prose word looks like
    (an underscore, a lower-to-upper case change, or two capitals)."""
    if not re.search(r"[A-Za-z]", word):
        return False  # `____`: an underline, not a name
    return (
        "_" in word.strip("_") or word.startswith("__")
        or re.search(r"[a-z][A-Z]", word) is not None
        or re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+", word) is not None
        or re.fullmatch(r"[A-Z]{2,}[a-z][A-Za-z0-9]*", word) is not None
    )  # fmt: skip


def analyse(text: str) -> QueryShape:
    """Take a query apart (see the module docstring)."""
    frames = tuple(_frames(text))
    plain = _URL.sub(" ", text)
    paths: dict[str, None] = {}
    for frame in frames:
        paths.setdefault(frame.path, None)
    for match in _PATH.findall(plain):
        paths.setdefault(match, None)
    # name → how telling it is: mentions, a traceback frame's function counting double
    names: Counter[str] = Counter()
    for frame in frames:
        if frame.function and not frame.function.startswith("<"):
            names[frame.function] += 1
    for dotted in _DOTTED.findall(plain):
        if _NOT_NAMES.match(dotted) or dotted.lower().endswith((".py", ".js", ".ts", ".md")):
            continue
        parts = dotted.split(".")
        module = _module_prefix(parts)
        if module:
            paths.setdefault("/".join(module), None)  # a module: django.db.models.query
        last = parts[-1]
        if is_code_name(last) or len(parts) >= 2 and (is_code_name(parts[-2]) or parts[0] in
                                                       ("self", "cls")):  # fmt: skip
            names[last] += 1  # its words count below
    for word in _WORD.findall(plain):
        if is_code_name(word):
            names[word] += 1
    stripped = text.strip()
    identifier = ""
    order = sorted(names, key=lambda n: (-names[n], -len(n.strip("_"))))
    if re.fullmatch(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*(?:\(\))?", stripped):
        identifier = stripped.removesuffix("()")
        last = identifier.rsplit(".", 1)[-1]
        order = [last, *(n for n in order if n != last)]
    head = text.lstrip()[:HEAD_CHARS].split("\n", 1)[0]  # an issue's title; a short query
    return QueryShape(
        text=text,
        prose=_prose(text),
        names=tuple(order[:MAX_NAMES]),
        paths=tuple(list(paths)[:MAX_PATHS]),
        frames=frames,
        wants_tests=bool(_TESTS.search(head)),
        wants_data=bool(_DATA.search(head)),
        wants_docs=bool(_DOCS.search(head)),
        wants_code=bool(_WHERE.match(head)) and not _DOCS.search(head),
        long=len(stripped) > LONG_CHARS or "\n" in stripped,
        identifier=identifier,
    )


def _frames(text: str) -> list[Frame]:
    """Traceback frames in the order written (Python's and IPython's)."""
    found = [
        (m.start(), Frame(m[1].replace("\\", "/"), int(m[2]), m[3] or ""))
        for m in _FRAME.finditer(text)
    ]
    headers = list(_IPYTHON_FRAME.finditer(text))
    for i, m in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        mark = _IPYTHON_LINE.search(text, m.end(), end)
        found.append((m.start(), Frame(m[1], int(mark[1]) if mark else 0, m[2])))
    return [frame for _, frame in sorted(found, key=lambda item: item[0])]


def _module_prefix(parts: list[str]) -> list[str]:
    """The leading all-lower-case parts of a dotted name, when they can be a module path of
    two parts or more (`django.db.models.query` of `django.db.models.query.QuerySet.get`)."""
    if parts[0] in ("self", "cls"):
        return []
    prefix: list[str] = []
    for part in parts:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", part):
            break
        prefix.append(part)
    return prefix if len(prefix) >= 2 else []


def _prose(text: str) -> str:
    """The query without code blocks and tracebacks (kept when nothing else is left), cut
    to about the model's window at a word boundary."""
    prose = _TRACEBACK.sub(" ", _FENCE.sub(" ", text))
    prose = " ".join(prose.split()) or " ".join(text.split())
    if len(prose) <= PROSE_CHARS:
        return prose
    return prose[:PROSE_CHARS].rsplit(" ", 1)[0]


def path_candidates(path: str) -> list[str]:
    """Repository-relative paths a mentioned path may be: the path itself and its suffixes
    (`/usr/lib/python3/site-packages/pkg/mod.py` → `pkg/mod.py`...), longest first; a module
    path (`pkg/sub/mod`, from `pkg.sub.mod`) as its file and as a package."""
    parts = [p for p in path.strip("/").split("/") if p and p != "."]
    if not parts:
        return []
    out: list[str] = []
    # A bare `models.py` of a longer path says little: keep at least two parts of one.
    for start in range(max(1, len(parts) - 1) if len(parts) > 1 else 1):
        tail = "/".join(parts[start:])
        if "." in parts[-1]:
            out.append(tail)
        else:
            out.extend(f.format(tail) for f in _MODULE_FILES)
    return out
