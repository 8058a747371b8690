"""Split a file's text into chunks: AST for languages with a grammar, headings for markdown,
whole-line windows for everything else (and whenever parsing fails)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from codectxd.config import SPLITTER_DEFAULTS, SplitterSettings
from codectxd.splitter.ast import split_ast
from codectxd.splitter.base import Chunk, split_lines
from codectxd.splitter.grammars import has_grammar
from codectxd.splitter.lines import split_by_lines
from codectxd.splitter.markdown import split_markdown
from codectxd.splitter.symbols import FileSymbols, Symbol

__all__ = ["Chunk", "FileSymbols", "Splitter", "Symbol", "split_lines"]

log = logging.getLogger(__name__)
_LINE_SIZE, _LINE_OVERLAP = SPLITTER_DEFAULTS["line"]


class Splitter:
    """Chooses the strategy per language; never raises for bad input (falls back to lines)."""

    def __init__(self, settings: SplitterSettings) -> None:
        self.settings = settings
        if settings.type == "line":
            self.line_size, self.line_overlap = settings.chunk_size, settings.chunk_overlap
        else:
            # Files without a grammar in AST mode use the seed's line defaults, bounded by the
            # configured AST size so a small CHUNK_SIZE also gives small fallback chunks.
            self.line_size = min(_LINE_SIZE, settings.chunk_size)
            self.line_overlap = min(_LINE_OVERLAP, self.line_size // 4)
        self._strategies: dict[str, Callable[[str, str], list[Chunk]]] = {
            "markdown": lambda text, _lang: split_markdown(text, settings.chunk_size),
        }

    def split(self, text: str, language: str, symbols: FileSymbols | None = None) -> list[Chunk]:
        """Chunks of `text`; with `symbols`, its definitions and identifier occurrences are
        recorded there (for languages with a grammar, whichever way the chunks are cut). An
        AST failure falls back to the line splitter (and no symbols) and is logged."""
        if has_grammar(language) and (self.settings.type == "ast" or symbols is not None):
            try:
                found = FileSymbols() if symbols is not None else None
                chunks = split_ast(text, language, self.settings.chunk_size, found)
                if symbols is not None and found is not None:  # only once it all succeeded
                    symbols.definitions.extend(found.definitions)
                    symbols.occurrences.update(found.occurrences)
                    symbols.owners.update(found.owners)
                if self.settings.type == "ast":
                    return chunks
            except Exception as exc:  # noqa: BLE001 - any grammar failure → line fallback
                log.warning("AST split failed for a %s file (%s); using lines", language, exc)
        elif self.settings.type == "ast" and (strategy := self._strategies.get(language)):
            return strategy(text, language)
        return split_by_lines(text, self.line_size, self.line_overlap)
