"""Data generation and statistics for ``bench/milvus_lines.py``, free of any Milvus import.

Everything here is deterministic for a given seed and source directory: the corpus is cut from
real ``.py`` files (by default the running interpreter's site-packages), dense vectors are
seeded random unit vectors, queries are drawn from the corpus and from stored vectors.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import statistics
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

DIM = 384
CHUNK_LINES = 60
MIN_CHARS = 300
MAX_CHARS = 1600
N_PKGS = 20
VECTOR_BLOCK = 512
#: Share of rows tagged "python" is 6/10; the rest spread over four other languages.
LANGUAGES = ("python",) * 6 + ("go", "rust", "typescript", "java")

_DEF_RE = re.compile(r"^\s*(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", re.M)
_IDENT_RE = re.compile(r"[A-Za-z_]\w{3,}")

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk of a real source file.

    Attributes:
        rel: File path relative to the source directory.
        start: First line (1-based).
        end: Last line (inclusive).
        symbol: First ``def``/``class`` name in the chunk, or ``""``.
        content: The chunk text, at most ``MAX_CHARS`` characters.
    """

    rel: str
    start: int
    end: int
    symbol: str
    content: str


def default_source() -> Path:
    """Return the running interpreter's site-packages (``purelib``) directory."""
    return Path(sysconfig.get_paths()["purelib"])


def stable_hash(text: str) -> int:
    """Return a 32-bit hash of ``text`` that does not depend on ``PYTHONHASHSEED``."""
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "little")


def list_sources(src: Path) -> list[Path]:
    """List every ``.py`` file under ``src``, sorted for determinism.

    Args:
        src: Directory to walk.

    Returns:
        Absolute file paths in sorted order.
    """
    found: list[Path] = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(names) if name.endswith(".py"))
    return found


def cut_file(path: Path, rel: str) -> list[Piece]:
    """Cut one file into ``CHUNK_LINES``-line pieces, skipping short ones.

    Args:
        path: File to read.
        rel: Path to record in each piece.

    Returns:
        The pieces; empty if the file cannot be read as UTF-8.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    pieces: list[Piece] = []
    for start in range(0, len(lines), CHUNK_LINES):
        text = "\n".join(lines[start : start + CHUNK_LINES])
        if len(text) < MIN_CHARS:
            continue
        text = text[:MAX_CHARS]
        match = _DEF_RE.search(text)
        end = min(start + CHUNK_LINES, len(lines))
        pieces.append(Piece(rel, start + 1, end, match.group(1) if match else "", text))
    return pieces


@dataclass(frozen=True, slots=True)
class Corpus:
    """A deterministic set of source pieces plus everything derived from it.

    Rows beyond ``len(pieces)`` reuse pieces under ``pkg_<k>/c<copy>/...`` paths, so any row
    count works and every path keeps a handful of rows.

    Attributes:
        src: Directory the pieces came from.
        seed: Seed for file order, vectors and queries.
        pieces: The pieces, in row order.
        files: Number of files read.
    """

    src: Path
    seed: int
    pieces: tuple[Piece, ...]
    files: int

    @classmethod
    def build(cls, src: Path, limit: int, seed: int) -> Corpus:
        """Read shuffled source files until ``limit`` pieces are collected.

        Args:
            src: Directory with ``.py`` files.
            limit: Maximum number of pieces.
            seed: Seed of the file shuffle.

        Returns:
            The corpus.

        Raises:
            ValueError: If ``src`` holds no usable ``.py`` file.
        """
        files = list_sources(src)
        random.Random(seed).shuffle(files)
        pieces: list[Piece] = []
        used = 0
        for path in files:
            if len(pieces) >= limit:
                break
            used += 1
            pieces.extend(cut_file(path, path.relative_to(src).as_posix()))
        if not pieces:
            raise ValueError(f"no usable .py files under {src}")
        return cls(src, seed, tuple(pieces[:limit]), used)

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able summary, including a fingerprint of the piece list."""
        digest = hashlib.sha256()
        for piece in self.pieces:
            digest.update(f"{piece.rel}:{piece.start}:{len(piece.content)}\n".encode())
        return {
            "src": str(self.src),
            "seed": self.seed,
            "files": self.files,
            "pieces": len(self.pieces),
            "mean_chars": round(statistics.fmean(len(p.content) for p in self.pieces), 1),
            "fingerprint": digest.hexdigest()[:16],
        }

    def row_path(self, index: int) -> str:
        """Return the stored ``path`` of row ``index``."""
        piece = self.pieces[index % len(self.pieces)]
        copy = index // len(self.pieces)
        prefix = f"pkg_{stable_hash(piece.rel) % N_PKGS}"
        return f"{prefix}/c{copy}/{piece.rel}" if copy else f"{prefix}/{piece.rel}"

    def rows(self, start: int, count: int, prefix: str = "r") -> list[Row]:
        """Build ``count`` rows starting at row index ``start``.

        Args:
            start: Index of the first row.
            count: Number of rows.
            prefix: Prefix of the primary key (keeps ids of different phases apart).

        Returns:
            Rows matching the benchmark schema (without the BM25 output field).
        """
        vecs = vectors(start, count, self.seed)
        out: list[Row] = []
        for k in range(count):
            index = start + k
            piece = self.pieces[index % len(self.pieces)]
            path = self.row_path(index)
            out.append(
                {
                    "id": f"{prefix}{index:09d}",
                    "path": path,
                    "language": LANGUAGES[stable_hash(path) % len(LANGUAGES)],
                    "ext": Path(piece.rel).suffix.lstrip(".") or "py",
                    "symbol": piece.symbol,
                    "start_line": piece.start,
                    "end_line": piece.end,
                    "content": piece.content,
                    "lexical": f"{path} {piece.symbol}\n{piece.content}",
                    "dense": vecs[k].tolist(),
                }
            )
        return out

    def text_queries(self, count: int, seed: int) -> list[str]:
        """Draw BM25 queries of 2-3 identifiers from random pieces.

        Args:
            count: Number of queries.
            seed: Seed of the draw.

        Returns:
            The query strings.
        """
        rnd = random.Random(seed)
        out: list[str] = []
        for _ in range(count * 50):
            if len(out) >= count:
                break
            idents = _IDENT_RE.findall(self.pieces[rnd.randrange(len(self.pieces))].content)
            if len(idents) >= 3:
                out.append(" ".join(rnd.sample(idents, rnd.choice((2, 3)))))
        return out or ["import"]


def vectors(start: int, count: int, seed: int) -> np.ndarray:
    """Return the unit vectors of rows ``[start, start + count)``.

    Vectors are generated in blocks of ``VECTOR_BLOCK`` rows seeded by ``(seed, block)``, so
    any row's vector can be rebuilt without generating the rows before it.

    Args:
        start: First row index.
        count: Number of rows.
        seed: Corpus seed.

    Returns:
        A ``(count, DIM)`` float32 array of unit vectors.
    """
    out = np.empty((count, DIM), dtype=np.float32)
    done = 0
    while done < count:
        block, offset = divmod(start + done, VECTOR_BLOCK)
        take = min(VECTOR_BLOCK - offset, count - done)
        rng = np.random.default_rng([seed, block])
        chunk = rng.standard_normal((VECTOR_BLOCK, DIM)).astype(np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[done : done + take] = chunk[offset : offset + take]
        done += take
    return out


def dense_queries(n_rows: int, count: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """Return queries that are a stored row's vector plus noise, renormalised.

    Args:
        n_rows: Rows to draw from (``[0, n_rows)``).
        count: Number of queries.
        seed: Seed of the draw (the stored vectors use ``seed`` too).
        noise: Noise norm relative to the unit vector.

    Returns:
        A ``(count, DIM)`` float32 array.
    """
    rng = np.random.default_rng([seed, 1])
    ids = rng.integers(0, max(n_rows, 1), size=count)
    blocks = {
        int(b): vectors(int(b) * VECTOR_BLOCK, VECTOR_BLOCK, seed)
        for b in np.unique(ids // VECTOR_BLOCK)
    }
    base = np.stack([blocks[int(i) // VECTOR_BLOCK][int(i) % VECTOR_BLOCK] for i in ids])
    noisy = base + noise * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(DIM)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.astype(np.float32)


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Summarise latencies given in seconds.

    Args:
        seconds: Latencies of single calls.

    Returns:
        ``p50``, ``p95``, ``p99``, ``mean`` and ``max`` in milliseconds, plus the count ``n``.
    """
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "max": float(ms.max()),
        "n": int(ms.size),
    }


def rss_mb(proc: psutil.Process) -> dict[str, Any]:
    """Return the RSS of ``proc`` and of all its descendants, in MiB.

    Args:
        proc: The benchmark process.

    Returns:
        ``self_mb``, ``children_mb`` and the children's process names.
    """
    own = proc.memory_info().rss / 2**20
    kids = 0.0
    names: list[str] = []
    for child in proc.children(recursive=True):
        try:
            kids += child.memory_info().rss / 2**20
            names.append(child.name())
        except psutil.Error:
            continue
    return {"self_mb": round(own, 1), "children_mb": round(kids, 1), "children": names}


def cpu_seconds(proc: psutil.Process) -> tuple[float, float]:
    """Return user+system CPU seconds of ``proc`` and of its descendants."""
    own = proc.cpu_times()
    kids = 0.0
    for child in proc.children(recursive=True):
        try:
            times = child.cpu_times()
            kids += times.user + times.system
        except psutil.Error:
            continue
    return own.user + own.system, kids


def disk_bytes(path: Path) -> int:
    """Return the size of a file, or the total size of a directory tree (0 if missing)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
