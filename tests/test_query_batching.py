"""Concurrent search queries share one inference of the real local model (QueryBatcher)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from codectxd.embeddings.local import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, LocalOnnxProvider
from codectxd.embeddings.queries import QueryBatcher, RecentQueries
from codectxd.embeddings.service import Embedder
from codectxd.errors import ProviderError


@pytest.fixture(scope="module")
def model() -> LocalOnnxProvider:
    return LocalOnnxProvider(DEFAULT_LOCAL_MODEL, LOCAL_MODELS[DEFAULT_LOCAL_MODEL], threads=1)


class _Gate:
    """Holds the first batch inside the model call until released, so the queries sent
    meanwhile are seen waiting (an observable state, not a sleep)."""

    def __init__(self, run: object) -> None:
        self.run = run
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.sizes.append(len(texts))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.run(texts)  # type: ignore[operator]


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _in_threads(batcher: QueryBatcher, texts: list[str]) -> tuple[dict[str, object], list]:
    results: dict[str, object] = {}
    threads = []
    for text in texts:

        def one(text: str = text) -> None:
            try:
                results[text] = batcher.embed(text)
            except BaseException as exc:  # noqa: BLE001 - checked by the test
                results[text] = exc

        threads.append(threading.Thread(target=one))
        threads[-1].start()
    return results, threads


def test_queries_sent_while_one_is_embedded_go_as_one_batch(model: LocalOnnxProvider) -> None:
    gate = _Gate(model.embed_queries)
    batcher = QueryBatcher(gate, max_batch=16)
    first, first_threads = _in_threads(batcher, ["where is the cart total computed"])
    assert gate.entered.wait(30)
    texts = [f"parse the config value number {i}" for i in range(10)] + ["loadUserSettings"]
    results, threads = _in_threads(batcher, texts)
    _until(lambda: batcher.waiting >= len(texts))  # all queued behind the first batch
    gate.release.set()
    for thread in first_threads + threads:
        thread.join(30)
    assert gate.sizes == [1, len(texts)]
    assert (batcher.batches, batcher.queries) == (2, len(texts) + 1)
    for text in texts + ["where is the cart total computed"]:
        vector = (results | first)[text]
        alone = model.embed_query(text)
        assert isinstance(vector, np.ndarray) and vector.shape == alone.shape
        # Padding to the batch's longest query changes int8 activations' scale a little only.
        assert float(vector @ alone) > 0.995, text


def test_a_batch_larger_than_the_cap_is_split_and_leadership_passes_on(
    model: LocalOnnxProvider,
) -> None:
    gate = _Gate(model.embed_queries)
    batcher = QueryBatcher(gate, max_batch=4)
    _, first_threads = _in_threads(batcher, ["first query"])
    assert gate.entered.wait(30)
    texts = [f"query number {i}" for i in range(9)]
    results, threads = _in_threads(batcher, texts)
    _until(lambda: batcher.waiting >= len(texts))
    gate.release.set()
    for thread in first_threads + threads:
        thread.join(30)
    assert gate.sizes == [1, 4, 4, 1]
    assert all(isinstance(results[t], np.ndarray) for t in texts)
    assert batcher.waiting == 0
    assert isinstance(batcher.embed("alone afterwards"), np.ndarray)  # nobody left leading


def test_a_failed_batch_fails_each_of_its_queries_and_the_next_one_works(
    model: LocalOnnxProvider,
) -> None:
    calls = []

    def flaky(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 2:
            raise ProviderError("inference failed")
        return model.embed_queries(texts)

    gate = _Gate(flaky)
    batcher = QueryBatcher(gate)
    _, first_threads = _in_threads(batcher, ["first"])
    assert gate.entered.wait(30)
    results, threads = _in_threads(batcher, ["second", "third"])
    _until(lambda: batcher.waiting >= 2)
    gate.release.set()
    for thread in first_threads + threads:
        thread.join(30)
    assert all(isinstance(results[t], ProviderError) for t in ("second", "third"))
    assert isinstance(batcher.embed("fourth"), np.ndarray)


def test_embedder_batches_local_queries_and_keeps_recent_ones(model: LocalOnnxProvider) -> None:
    embedder = Embedder(model, None)
    vector = embedder.embed_query("where are overlapping search hits merged")
    assert vector is embedder.embed_query("where are overlapping search hits merged")
    recent = RecentQueries(size=2)
    for text in ("a", "b", "c"):
        recent.put(text, np.zeros(1))
    assert recent.get("a") is None and recent.get("c") is not None
