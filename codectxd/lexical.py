"""Code-aware text for BM25: identifiers plus their camelCase / snake_case / digit parts.

Milvus' `standard` analyzer keeps `parseConfig` and `parse_config` as single tokens, so a query
for "parse config" would miss them. We feed the analyzer a text in which every identifier is
followed by its parts; queries go through the same function, so `parseConfig` in a query also
matches `parse_config` in code.
"""

from __future__ import annotations

import re
from functools import lru_cache

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# camelCase / PascalCase / ACRONYMWords / digits boundaries inside one identifier.
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
MAX_LEXICAL_CHARS = 50_000

#: English function words dropped from queries (not from code): with prose stripped from code,
#: "of" / "to" / "is" survive only as identifier parts (indexOf, to_dict, is_set) and would weigh
#: a lot in BM25 while meaning nothing in a question.
QUERY_STOP_WORDS = frozenset(
    """
a an the and or but nor so yet if then else when while of to in on at by for from with without
into onto over under about above below between through during before after as is are was were
be been being am do does did doing done has have had having can could should would may might must
shall will it its it's this that these those there here which who whom whose what where why how
i me my we our you your he him his she her they them their not no any all some each every other
such own same than too very just also only more most less least few many much one ones get gets
given returns return use used uses using via per whether either both etc e g ie
""".split()
)


def identifier_parts(identifier: str) -> list[str]:
    """`parseHTTPConfig_v2` → ['parse', 'http', 'config', 'v', '2'] (lower case)."""
    parts: list[str] = []
    for piece in identifier.split("_"):
        parts.extend(p.lower() for p in _PARTS.findall(piece))
    return parts


def lexical_query(text: str) -> str:
    """The BM25 input for a search query: `lexical_text` without English filler words
    (unless nothing else is left)."""
    tokens = lexical_text(text).split()
    kept = [t for t in tokens if t not in QUERY_STOP_WORDS]
    return " ".join(kept or tokens)


def lexical_text(text: str) -> str:
    """The BM25 input for a chunk or query: original tokens lowered, then their parts.

    >>> lexical_text("def parseConfig(path_name):")
    'def parseconfig parse config path_name path name'
    """
    out: list[str] = []
    size = 0
    for token in _IDENTIFIER.findall(text):
        out.append(_expanded(token))
        size += len(token) * 2
        if size > MAX_LEXICAL_CHARS:
            break
    return " ".join(out)


@lru_cache(maxsize=1 << 15)
def _expanded(token: str) -> str:
    """A token lowered, then its parts when they differ from it. Cached: a codebase repeats
    its names, and splitting them was a fifth of the first phase's time."""
    lowered = token.lower()
    parts = identifier_parts(token)
    if len(parts) > 1 or (parts and parts[0] != lowered):
        return " ".join((lowered, *parts))
    return lowered
