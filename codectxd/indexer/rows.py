"""One file's way into the store: read and split (`prepare`), the texts the model embeds, and
the rows written, with real vectors or zeros until the chunk is embedded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from codectxd.indexer.read import Skip, looks_minified, read_file
from codectxd.kinds import DATA, GENERATED, generated_header
from codectxd.languages import extension_of
from codectxd.lexical import identifier_parts, lexical_text
from codectxd.scanner import FileEntry, Scanner
from codectxd.snapshot import EMBEDDED, LEXICAL, WAITING, Definition, IndexedFile, pack_positions
from codectxd.snapshot import FileSymbols as StoredSymbols
from codectxd.splitter import Chunk, FileSymbols, Splitter
from codectxd.store import Row


def chunk_id(repo: str, path: str, chunk: Chunk, content_hash: str, embedded: bool = True) -> str:
    """A chunk's row id, derived from what the row holds: the repository, path, lines and
    content, and whether the vector is real (so the embedded row replaces the keyword-only
    one without either missing from searches: see `Store.replace_files`)."""
    raw = f"{repo}\x00{path}\x00{chunk.start_line}\x00{chunk.end_line}\x00{content_hash}"
    digest = hashlib.blake2b(raw.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return digest if embedded else digest + "k"


def embedding_text(path: str, chunk: Chunk) -> str:
    """What the embedding model reads for a chunk: the file path, the symbol spelled out in
    words, then the code.

    The path gives the model context the code alone lacks (module and package names); the
    words let a question in English meet `applyDiscountCode` (a sentence model tokenises
    identifiers into word pieces it barely understands).
    """
    words = " ".join(identifier_parts(chunk.symbol.replace(",", " "))) if chunk.symbol else ""
    header = f"{path} {words}" if words else path
    return f"{header}\n{chunk.content}"


@dataclass(slots=True)
class Prepared:
    """A file read and split: what a group commits for it."""

    entry: FileEntry  # size is what was read
    hash: str
    kind: str  # the path's kind, or generated when its first lines say so
    chunks: list[Chunk]
    symbols: FileSymbols = field(default_factory=FileSymbols)  # definitions, occurrences

    def texts(self) -> list[str]:
        return [embedding_text(self.entry.path, chunk) for chunk in self.chunks]


@dataclass(slots=True, frozen=True)
class Unchanged:
    """Read, and its content is what the snapshot records (only its stat changed)."""

    hash: str


def file_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare(
    scanner: Scanner,
    splitter: Splitter,
    entry: FileEntry,
    recorded_hash: str | None,
    with_symbols: bool = True,
) -> Prepared | Unchanged:
    """Read, hash and split one file. `Unchanged` when its hash is `recorded_hash`. Without
    `with_symbols` (the second phase: the first stored them) the chunks are the same and the
    symbols are left empty, at about half the cost of the split.

    Raises:
        Skip: the file is not indexed (binary, too large, minified, a kind not indexed...).
        FileNotFoundError: it is gone.
    """
    data = read_file(scanner, entry)
    digest = file_hash(data)
    if digest == recorded_hash:
        return Unchanged(digest)
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    if looks_minified(text):
        raise Skip("minified")
    kind = entry.kind
    if kind != DATA and generated_header(text):
        kind = GENERATED
        if kind in scanner.settings.skip_kinds:
            raise Skip(GENERATED, "its header says it is generated")
    sized = FileEntry(entry.path, len(data), entry.mtime_ns, entry.language, entry.kind)
    symbols = FileSymbols()
    chunks = splitter.split(text, entry.language, symbols if with_symbols else None)
    return Prepared(sized, digest, kind, chunks, symbols)


def rows(key: str, group: list[Prepared], vectors: np.ndarray, real: np.ndarray) -> list[Row]:
    """The rows of a group; chunk i (in group order) gets `vectors[i]`, real when `real[i]`."""
    out: list[Row] = []
    position = 0
    for prepared in group:
        path = prepared.entry.path
        ext = extension_of(path)
        for chunk in prepared.chunks:
            chunk_hash = hashlib.blake2b(
                chunk.content.encode("utf-8", "surrogatepass"), digest_size=16
            ).hexdigest()
            out.append(
                Row(
                    id=chunk_id(key, path, chunk, chunk_hash, bool(real[position])),
                    path=path,
                    language=prepared.entry.language,
                    ext=ext,
                    start_line=chunk.start_line,
                    end_line=chunk.end_line,
                    symbol=chunk.symbol,
                    kind=chunk.kind,
                    content=chunk.content,
                    content_hash=chunk_hash,
                    lexical=lexical_text(f"{path} {chunk.symbol}\n{chunk.content}"),
                    dense=vectors[position],
                    embedded=bool(real[position]),
                    file_kind=prepared.kind,
                )
            )
            position += 1
    return out


def symbols(group: list[Prepared]) -> dict[str, StoredSymbols]:
    """Each file's definitions and identifier occurrences, as the snapshot records them."""
    return {
        p.entry.path: StoredSymbols(
            definitions=[
                Definition(s.name, p.entry.path, s.start_line, s.end_line, s.qualified, s.kind,
                           s.def_line, s.signature, p.entry.language)
                for s in p.symbols.definitions
            ],
            occurrences={
                n: (pack_positions(flat), "\0".join(p.symbols.owners[n]))
                for n, flat in p.symbols.occurrences.items()
            },
        )
        for p in group
    }  # fmt: skip


def records(
    group: list[Prepared], real: np.ndarray, lexical_only: tuple[str, ...]
) -> list[IndexedFile]:
    """The snapshot records of a committed group: embedded when every chunk's vector is real,
    lexical-only by kind, waiting for the embedding otherwise."""
    out: list[IndexedFile] = []
    position = 0
    for prepared in group:
        n = len(prepared.chunks)
        if prepared.kind in lexical_only:
            dense = LEXICAL
        else:
            dense = EMBEDDED if bool(real[position : position + n].all()) else WAITING
        position += n
        entry = prepared.entry
        out.append(
            IndexedFile(entry.path, entry.size, entry.mtime_ns, prepared.hash, n, dense,
                        prepared.kind)
        )  # fmt: skip
    return out
