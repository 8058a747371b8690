"""``python -m bench.standin start``: the real ``codectxd`` with a stand-in for the model's math.

Used only to *prepare* the large generated repositories whose index is a precondition of a
measurement, not the measurement itself (the 10,000-file repository of the freshness suite and
the warm restart, the memory suite's three resting repositories). Embedding ~30,000 chunks with
the local model takes most of an hour on 2 cores; what those suites measure (save → searchable
with lexical probes, restart → fresh, resting RSS) depends on the number of files, chunks and
rows, not on the values of the stored vectors.

Everything is the real daemon — scanner, splitter, tokenizer, embedding cache, store, snapshot —
except ``LocalOnnxProvider._encode``: it returns a deterministic unit vector per text (from its
blake2b hash) instead of running the ONNX session. The provider keeps its name, model and
dimension, so the collection is exactly the one the real daemon uses; the daemons that measure
are always started with ``python -m codectxd`` and embed every new text with the real model.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np


def _standin_vectors(texts: list[str], dimension: int) -> np.ndarray:
    out = np.empty((len(texts), dimension), dtype=np.float32)
    for row, text in enumerate(texts):
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        out[row] = np.random.default_rng(seed).standard_normal(dimension)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def install() -> None:
    """Replace the local model's inference with stand-in vectors (this process only)."""
    from codectxd.embeddings.local import LocalOnnxProvider

    def _encode(self: LocalOnnxProvider, texts: list[str]) -> np.ndarray:
        self._tokenizer.encode_batch(texts)  # keep the tokenizer's share of the work
        return _standin_vectors(texts, self.dimension)

    LocalOnnxProvider._encode = _encode  # type: ignore[method-assign]


def main() -> int:
    install()
    from codectxd.cli import main as codectxd_main

    return int(codectxd_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
