"""The cloud embedding providers: the real SDKs (openai, voyageai, google-genai) against the
fake API in `tests.fake_providers` on 127.0.0.1, the real Embedder, and a real RepoIndexer
over Milvus Lite for the indexing scenarios. Nothing here touches the internet."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import msgspec
import numpy as np
import pytest

from codectxd.config import EmbeddingSettings, Settings, describe, load_settings
from codectxd.embeddings.base import EmbeddingProvider, create_provider, normalise
from codectxd.embeddings.cache import EmbeddingCache
from codectxd.embeddings.service import Embedder
from codectxd.engine import Engine
from codectxd.errors import ConfigError, ProviderError, SpendLimitReached, redact
from codectxd.snapshot import EMBEDDED, WAITING
from tests.conftest import SAMPLE_REPO as REPO
from tests.conftest import make_settings, write_tree
from tests.fake_providers import FakeProviders, Fault, fake_tokens

KEY = "zz-Secret-7f3a9c11e5"  # no well-known shape: only the configured-key redaction hides it
DAY = 86_400.0

# provider → (model, a reduced dimension it accepts), used where a test covers all three.
CLOUD = {
    "openai": ("text-embedding-3-small", 64),
    "voyage": ("voyage-code-3", 256),
    "gemini": ("gemini-embedding-001", 128),
}
LABELS = {"openai": "OpenAI", "voyage": "Voyage AI", "gemini": "Gemini", "ollama": "Ollama"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    with FakeProviders(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeProviders) -> None:
    fake.reset()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any TCP connection that is not to this machine (an SDK default URL, telemetry)."""
    real = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            assert host in ("127.0.0.1", "::1", "localhost"), f"connection to {address}"
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def settings_for(fake: FakeProviders, provider: str, **overrides: object) -> EmbeddingSettings:
    values: dict[str, object] = {
        "provider": provider,
        "api_key": KEY,
        "base_url": fake.base_url(provider),
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return EmbeddingSettings(**values)  # type: ignore[arg-type]


def provider_for(fake: FakeProviders, provider: str, **overrides: object) -> EmbeddingProvider:
    return create_provider(settings_for(fake, provider, **overrides))


class Sleeps(list[float]):
    """An injectable `sleep` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- wiring ------------------------------------------------------------------------------


def test_importing_codectxd_does_not_import_the_sdks() -> None:
    code = (
        "import sys, codectxd, codectxd.engine, codectxd.app, codectxd.embeddings.base, "
        "codectxd.embeddings.service\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('openai', 'voyageai', 'google')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("provider", "env_var"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("voyage", "VOYAGE_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(short_tmp: Path, provider: str, env_var: str) -> None:
    settings = make_settings(short_tmp, EMBEDDING_PROVIDER=provider)
    with pytest.raises(ConfigError, match=env_var):
        create_provider(settings.embedding)


def test_settings_from_the_environment_reach_the_sdk(fake: FakeProviders, short_tmp: Path) -> None:
    settings = make_settings(
        short_tmp,
        EMBEDDING_PROVIDER="openai",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=fake.base_url("openai"),
        EMBEDDING_MODEL="text-embedding-3-large",
        EMBEDDING_DIMENSION="1024",
    )
    provider = create_provider(settings.embedding)
    assert provider.identity == "openai:text-embedding-3-large:1024"
    provider.embed_documents(["x = 1"])
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert fake.requests[-1].body["dimensions"] == 1024


# --- OpenAI / OpenAI-compatible ----------------------------------------------------------


def test_openai_request_body_and_vectors(fake: FakeProviders) -> None:
    provider = provider_for(fake, "openai")  # default model, native dimension
    assert (provider.model, provider.dimension) == ("text-embedding-3-small", 1536)
    texts = ["def add(a, b): return a + b", "class Cart: pass", "héllo wörld ✓"]
    vectors = provider.embed_documents(texts)
    body = fake.requests[-1].body
    assert body == {
        "model": "text-embedding-3-small",
        "input": texts,
        "encoding_format": "base64",
    }  # no `dimensions` unless configured
    assert vectors.dtype == np.float32 and vectors.shape == (3, 1536)
    for text, vector in zip(texts, vectors):
        np.testing.assert_allclose(vector, normalise(fake.vector(provider.model, text)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = provider.embed_query("where is the cart total")
    assert query.shape == (1536,)


def test_openai_dimensions_only_where_supported(fake: FakeProviders) -> None:
    large = provider_for(fake, "openai", model="text-embedding-3-large", dimension=256)
    assert large.embed_documents(["a"]).shape == (1, 256)
    assert fake.requests[-1].body["dimensions"] == 256
    ada = provider_for(fake, "openai", model="text-embedding-ada-002", dimension=1536)
    assert ada.embed_documents(["a"]).shape == (1, 1536)
    assert "dimensions" not in fake.requests[-1].body
    with pytest.raises(ConfigError, match="cannot produce 1024"):
        provider_for(fake, "openai", model="text-embedding-ada-002", dimension=1024)
    with pytest.raises(ConfigError, match="1..1536"):
        provider_for(fake, "openai", dimension=4096)


def test_compatible_server_dimension_is_detected(fake: FakeProviders) -> None:
    # Ollama: default model, dummy key, no EMBEDDING_DIMENSION: one probe learns it.
    ollama = provider_for(fake, "ollama", api_key="")
    assert ollama.identity == "ollama:nomic-embed-text:768"
    assert fake.count("ollama") == 1 and fake.requests[0].body["encoding_format"] == "float"
    vectors = ollama.embed_documents(["fn main() {}"])
    np.testing.assert_allclose(
        vectors[0], normalise(fake.vector("nomic-embed-text", "fn main() {}")), atol=1e-6
    )
    # An unknown model behind OPENAI_BASE_URL (LM Studio, vLLM): probed too; this server
    # ignores encoding_format=base64 and answers floats, which decode all the same.
    other = create_provider(
        EmbeddingSettings(
            provider="openai", model="mxbai-embed-large", base_url=fake.base_url("ollama")
        )
    )
    assert other.dimension == 1024 and other.max_batch == 32
    assert fake.requests[-1].body["encoding_format"] == "base64"
    assert "dimensions" not in fake.requests[-1].body
    # A configured dimension skips the probe, and is checked against the answers.
    fake.reset()
    wrong = provider_for(fake, "ollama", model="mxbai-embed-large", dimension=512)
    assert fake.count() == 0
    with pytest.raises(ProviderError, match="1024-dimensional vectors .* expected 512") as err:
        wrong.embed_documents(["x"])
    assert not err.value.retryable


@pytest.mark.parametrize(
    ("provider", "model"), [("voyage", "voyage-future-1"), ("gemini", "gemini-embedding-future")]
)
def test_unknown_cloud_models_are_probed(fake: FakeProviders, provider: str, model: str) -> None:
    fake.models[model] = 1280
    try:
        client = provider_for(fake, provider, model=model)
        assert client.identity == f"{provider}:{model}:1280" and fake.count() == 1
        assert client.embed_documents(["x"]).shape == (1, 1280)
    finally:
        del fake.models[model]


def test_probe_failure_says_how_to_skip_it() -> None:
    with pytest.raises(ProviderError, match="cannot learn the dimension.*EMBEDDING_DIMENSION"):
        create_provider(
            EmbeddingSettings(provider="ollama", base_url="http://127.0.0.1:9", timeout_s=2)
        )


def test_ollama_host_forms() -> None:
    from codectxd.embeddings.openai import _base_url

    assert _base_url("", True) == "http://127.0.0.1:11434/v1"
    assert _base_url("127.0.0.1:11434", True) == "http://127.0.0.1:11434/v1"
    assert _base_url("gpu-box", True) == "http://gpu-box:11434/v1"
    assert _base_url("http://gpu-box:11434/", True) == "http://gpu-box:11434/v1"
    assert _base_url("", False) == "https://api.openai.com/v1"
    with pytest.raises(ConfigError, match="http://"):
        _base_url("localhost:1234/v1", False)


# --- Voyage AI ---------------------------------------------------------------------------


def test_voyage_input_types_and_output_dimension(fake: FakeProviders) -> None:
    provider = provider_for(fake, "voyage", dimension=512)
    assert provider.identity == "voyage:voyage-code-3:512"
    docs = provider.embed_documents(["SELECT 1", "print('hi')"])
    body = fake.requests[-1].body
    assert fake.requests[-1].path == "/voyage/v1/embeddings"
    assert body["model"] == "voyage-code-3" and body["input_type"] == "document"
    assert body["output_dimension"] == 512 and body["truncation"] is True
    np.testing.assert_allclose(
        docs[1], normalise(fake.vector("voyage-code-3", "print('hi')", 512)), atol=1e-6
    )
    provider.embed_query("run a query")
    assert fake.requests[-1].body["input_type"] == "query"
    native = provider_for(fake, "voyage", model="voyage-3-lite")
    assert native.embed_documents(["x"]).shape == (1, 512)
    assert fake.requests[-1].body["output_dimension"] is None
    with pytest.raises(ConfigError, match="256, 512, 1024, 2048"):
        provider_for(fake, "voyage", dimension=300)


# --- Gemini ------------------------------------------------------------------------------


def test_gemini_task_types_and_output_dimensionality(fake: FakeProviders) -> None:
    provider = provider_for(fake, "gemini", dimension=768)
    assert provider.identity == "gemini:gemini-embedding-001:768"
    texts = ["fn a() {}", "fn b() {}"]
    vectors = provider.embed_documents(texts)
    request = fake.requests[-1]
    assert request.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert request.headers["x-goog-api-key"] == KEY
    assert [r["taskType"] for r in request.body["requests"]] == ["RETRIEVAL_DOCUMENT"] * 2
    assert {r["outputDimensionality"] for r in request.body["requests"]} == {768}
    assert {r["model"] for r in request.body["requests"]} == {"models/gemini-embedding-001"}
    assert [r["content"]["parts"][0]["text"] for r in request.body["requests"]] == texts
    np.testing.assert_allclose(
        vectors[0], normalise(fake.vector(provider.model, texts[0], 768)), atol=1e-6
    )
    provider.embed_query("where")
    assert fake.requests[-1].body["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    default = provider_for(fake, "gemini", model="text-embedding-004")
    assert default.embed_documents(["x"]).shape == (1, 768)
    assert "outputDimensionality" not in fake.requests[-1].body["requests"][0]


def test_declared_limits_shape_the_batches(fake: FakeProviders) -> None:
    gemini = provider_for(fake, "gemini", dimension=128)
    embedder = Embedder(gemini, None)
    embedder.embed_texts([f"text number {i}" for i in range(150)])
    assert [len(b["requests"]) for b in fake.bodies()] == [100, 50]  # 100 per request max
    # OpenAI refuses inputs over 8191 tokens: a huge chunk is cut (and counted) first.
    fake.reset()
    openai = provider_for(fake, "openai", dimension=64)
    embedder = Embedder(openai, None)
    embedder.embed_texts(["x = 1\n" * 5000, "short"])
    assert embedder.stats.truncated == 1
    assert max(len(t.encode()) for t in fake.texts()) <= 8191 * 2


# --- errors and retries ------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(CLOUD))
def test_retry_after_is_honoured(fake: FakeProviders, provider: str) -> None:
    model, dimension = CLOUD[provider]
    sleeps = Sleeps()
    embedder = Embedder(provider_for(fake, provider, dimension=dimension), None, sleep=sleeps)
    in_30s = formatdate(time.time() + 30, usegmt=True)
    fake.script(
        Fault(status=429, retry_after="7"), Fault(status=503, retry_after=in_30s), Fault(status=500)
    )
    vectors = embedder.embed_texts(["alpha", "beta"])
    assert vectors.shape == (2, dimension) and fake.count() == 4
    assert sleeps[0] >= 7 and 27 <= sleeps[1] <= 31 and sleeps[2] < 7
    assert embedder.stats.retries == 3 and embedder.stats.failed_requests == 3
    assert LABELS[provider] in embedder.stats.last_error


def test_gemini_retry_info_in_the_body(fake: FakeProviders) -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
                ],
            }
        }
    ).encode()
    fake.script(Fault(status=429, body=body))
    with pytest.raises(ProviderError) as err:
        provider_for(fake, "gemini", dimension=128).embed_documents(["x"])
    assert err.value.retryable and err.value.retry_after == 17.0


def test_retry_with_real_sleep(fake: FakeProviders) -> None:
    embedder = Embedder(provider_for(fake, "openai", dimension=64), None)
    fake.script(Fault(status=429, retry_after="1"))
    started = time.monotonic()
    embedder.embed_texts(["needs one retry"])
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5 and fake.count() == 2


@pytest.mark.parametrize("provider", sorted(CLOUD))
def test_transient_failures_are_retryable(fake: FakeProviders, provider: str) -> None:
    model, dimension = CLOUD[provider]
    client = provider_for(fake, provider, dimension=dimension, timeout_s=0.5)
    one_vector_for_two = json.dumps(
        {
            "object": "list",
            "model": model,
            "embeddings": [{"values": [1.0] * dimension}],
            "data": [{"object": "embedding", "index": 0, "embedding": [1.0] * dimension}],
        }
    ).encode()
    faults = {
        "timeout": Fault(delay=2.0),
        "garbage": Fault(body=b"<html>oops</html>"),
        "truncated JSON": Fault(body=b'{"data": [{"embedding": [0.1, '),
        "wrong count": Fault(body=one_vector_for_two),
        "500": Fault(status=500),
    }
    for name, fault in faults.items():
        fake.script(fault)
        with pytest.raises(ProviderError) as err:
            client.embed_documents(["one", "two"])
        assert err.value.retryable, (name, str(err.value))
        assert str(err.value).startswith(LABELS[provider]), str(err.value)
    assert "within 0.5s" in _message_of(client, Fault(delay=2.0), fake)
    assert client.embed_documents(["one", "two"]).shape == (2, dimension)  # recovered


def _message_of(client: EmbeddingProvider, fault: Fault, fake: FakeProviders) -> str:
    fake.script(fault)
    try:
        client.embed_documents(["x"])
    except ProviderError as exc:
        return str(exc)
    raise AssertionError("no error")


@pytest.mark.parametrize("provider", sorted(CLOUD))
def test_bad_key_is_a_clear_error_without_the_key(fake: FakeProviders, provider: str) -> None:
    _, dimension = CLOUD[provider]
    wrong = "zz-Wrong-9d2e44b7aa"
    client = provider_for(fake, provider, api_key=wrong, dimension=dimension)
    sleeps = Sleeps()
    embedder = Embedder(client, None, sleep=sleeps)
    with pytest.raises(ProviderError) as err:
        embedder.embed_texts(["x"])
    exc = err.value
    assert f"{LABELS[provider]} rejected the API key (401)" in str(exc)
    assert not exc.retryable and sleeps == [] and fake.count() == 1
    sent = fake.requests[-1].headers
    assert wrong in sent.get("authorization", "") + sent.get("x-goog-api-key", "")
    text = "".join(traceback.format_exception(exc))
    assert wrong not in text and wrong not in repr(exc) and wrong not in repr(client)
    assert exc.__cause__ is None and exc.__context__ is None
    assert "Incorrect API key provided: ***" in str(exc)  # the server echoed it; redacted


def test_other_client_errors_are_not_retried(fake: FakeProviders) -> None:
    client = provider_for(fake, "voyage", dimension=256)
    for status, words in [
        (400, "rejected the request (400)"),
        (403, "refused the request"),
        (404, "does not know model 'voyage-code-3'"),
    ]:
        message = _message_of(client, Fault(status=status, message="nope"), fake)
        assert words in message
    unknown = provider_for(fake, "openai", model="text-embedding-3-small", dimension=64)
    fake.script(
        Fault(
            status=429,
            message="You exceeded your current quota",
            body=json.dumps(
                {
                    "error": {
                        "message": "You exceeded your current quota",
                        "code": "insufficient_quota",
                    }
                }
            ).encode(),
        )
    )
    with pytest.raises(ProviderError, match="quota exhausted") as err:
        unknown.embed_documents(["x"])
    assert not err.value.retryable
    gemini = provider_for(fake, "gemini", dimension=128)
    fake.script(Fault(status=400, message="API key not valid. Please pass a valid API key."))
    with pytest.raises(ProviderError, match="Gemini rejected the API key") as err:
        gemini.embed_documents(["x"])
    assert not err.value.retryable


def test_redact() -> None:
    assert redact("key my-very-secret-1 leaked", "my-very-secret-1") == "key *** leaked"
    text = "Incorrect API key provided: sk-proj-abc1***********xyz9. See AIzaSyD4-abcdefghijk"
    assert redact(text) == "Incorrect API key provided: ***. See ***"
    assert redact("voyage pa-Xy12345678 and al-Ab12345678") == "voyage *** and ***"
    assert redact("task-queue and risk-assessment stay") == "task-queue and risk-assessment stay"


# --- spend guard -------------------------------------------------------------------------


def test_spend_guard_counts_real_tokens_and_persists(fake: FakeProviders, short_tmp: Path) -> None:
    cache = EmbeddingCache(short_tmp / "embeddings.db")
    now = [1_750_000_000.0]  # 2025-06-15 15:06 UTC
    provider = provider_for(fake, "openai", dimension=64)
    texts = [f"def f{i}(x): return x * {i}" for i in range(8)]
    real = sum(fake_tokens(t) for t in texts[:4])
    embedder = Embedder(
        provider, cache, batch_size=4, max_tokens_per_day=real + 20, clock=lambda: now[0]
    )
    embedder.embed_texts(texts[:4])
    stats = embedder.stats.message()
    assert stats.tokens_today == real and stats.spend_limit == real + 20  # from usage
    assert stats.spend_paused is False
    with pytest.raises(SpendLimitReached) as err:
        embedder.embed_texts(texts[4:])
    message = str(err.value)
    assert f"{real:,} of {real + 20:,} tokens" in message
    assert "EMBEDDING_MAX_TOKENS_PER_DAY" in message and "00:00 UTC (in 8h 53m)" in message
    assert fake.count() == 1 and not err.value.retryable
    assert embedder.stats.message().spend_paused is True
    assert embedder.stats.failed_requests == 0  # nothing was sent
    # A restart reads today's usage back from the cache database.
    again = Embedder(provider, cache, max_tokens_per_day=real + 20, clock=lambda: now[0])
    assert again.stats.message().tokens_today == real
    with pytest.raises(SpendLimitReached):
        again.embed_texts(texts[4:])
    # Searches keep working (counted, never refused).
    again.embed_query("what multiplies")
    # The next UTC day starts from zero.
    now[0] += DAY
    assert again.stats.message().tokens_today == 0
    again.embed_texts(texts[4:])
    assert fake.count() == 3
    cache.close()


# --- indexing with a real RepoIndexer -----------------------------------------------------


@pytest.fixture
def make_engine(short_tmp: Path) -> Iterator:
    engines: list[Engine] = []

    def make(embedder: Embedder) -> tuple[Engine, Path]:
        settings: Settings = make_settings(short_tmp / f"e{len(engines)}")
        engine = Engine(settings, embedder=embedder)
        engines.append(engine)
        root = short_tmp / f"repo{len(engines)}"
        write_tree(root, REPO)
        return engine, root

    yield make
    for engine in engines:
        engine.close()


def cache_in(short_tmp: Path, name: str = "e0") -> EmbeddingCache:
    return EmbeddingCache(short_tmp / name / "data" / "embeddings.db")


def test_429_storm_slows_indexing_which_completes(
    fake: FakeProviders, make_engine, short_tmp: Path
) -> None:
    sleeps = Sleeps()
    embedder = Embedder(
        provider_for(fake, "openai", dimension=64),
        cache_in(short_tmp),
        batch_size=2,
        concurrency=2,
        max_retries=8,
        sleep=sleeps,
    )
    engine, root = make_engine(embedder)
    storm = 10
    fake.script(*[Fault(status=429, retry_after="5")] * storm)
    report = engine.indexer_for(root).full_sync()
    assert (report.indexed, report.failed) == (5, 0)
    chunks = report.chunks_written
    batches = fake.count(status=200)
    assert batches >= (chunks + 1) // 2  # (files are embedded in groups, so maybe a few more)
    assert fake.count() == batches + storm  # one extra request per 429, no SDK retries
    assert len(sleeps) == storm and min(sleeps) >= 5  # every 429 waited its Retry-After
    assert embedder.stats.retries == storm


def test_failed_batches_leave_files_dirty_then_recover(
    fake: FakeProviders, make_engine, short_tmp: Path
) -> None:
    sleeps = Sleeps()
    embedder = Embedder(
        provider_for(fake, "voyage", dimension=256),
        cache_in(short_tmp),
        max_retries=2,
        sleep=sleeps,
    )
    engine, root = make_engine(embedder)
    indexer = engine.indexer_for(root)
    fake.always(Fault(status=503, message="overloaded, try later"))
    report = indexer.full_sync()
    # The first phase needs no provider: every file is stored for keyword search; their
    # embedding failed, so they keep waiting for vectors, with the provider's message.
    assert (report.indexed, report.embedded, report.failed) == (5, 0, 5)
    states = engine.snapshot.load(indexer.collection)
    assert {(s.state, s.dense) for s in states.values()} == {("indexed", WAITING)}
    reason = next(iter(states.values())).reason
    assert "Voyage AI server error (503): overloaded, try later" in reason
    assert engine.snapshot.counts(indexer.collection)["failed"] == 5
    assert len(sleeps) == 2 * fake.count() // 3  # 3 attempts per batch, 2 waits each
    hits = engine.search([root], "parse_config", limit=3, mode="lexical")
    assert hits and hits[0].path == "app/config.py"
    fake.always(None)
    again = indexer.full_sync()
    assert (again.indexed, again.embedded, again.failed) == (0, 5, 0)
    states = engine.snapshot.load(indexer.collection)
    assert {(s.state, s.dense, s.reason) for s in states.values()} == {("indexed", EMBEDDED, "")}
    assert engine.store.count(indexer.collection, "embedded == true") == report.chunks_written


def test_reindex_after_clear_with_warm_cache_calls_nothing(
    fake: FakeProviders, make_engine, short_tmp: Path
) -> None:
    embedder = Embedder(provider_for(fake, "gemini", dimension=128), cache_in(short_tmp))
    engine, root = make_engine(embedder)
    indexer = engine.indexer_for(root)
    first = indexer.full_sync()
    assert first.indexed == 5 and fake.count() > 0
    engine.store.drop_collection(indexer.collection)
    engine.snapshot.clear(indexer.collection)
    fake.reset()
    again = engine.indexer_for(root).full_sync()
    assert again.indexed == 5 and again.chunks_written == first.chunks_written
    assert fake.count() == 0
    hits = engine.search([root], "parse config", limit=3)
    assert hits and fake.count() == 1  # only the query went out


def test_spend_guard_stops_indexing_with_a_clear_message(
    fake: FakeProviders, make_engine, short_tmp: Path
) -> None:
    now = [1_750_000_000.0]
    limit = 130  # the five chunks need ~40-70 tokens each: about two a day
    embedder = Embedder(
        provider_for(fake, "openai", dimension=64),
        cache_in(short_tmp),
        batch_size=1,
        max_tokens_per_day=limit,
        clock=lambda: now[0],
    )
    engine, root = make_engine(embedder)
    indexer = engine.indexer_for(root)
    report = indexer.full_sync()
    assert report.failed > 0 and fake.count() > 0
    problems = engine.snapshot.problems(indexer.collection)
    assert problems and all("EMBEDDING_MAX_TOKENS_PER_DAY" in p.reason for p in problems)
    assert "daily embedding token limit reached" in problems[0].reason
    stats = embedder.stats.message()
    assert stats.spend_paused is True and 0 < stats.tokens_today <= limit
    # Each UTC day sends at most the limit, never the same text twice (what was paid for is
    # cached even though its group of files failed), until the index is complete.
    sent_per_day = [fake.texts()]
    for _ in range(10):
        now[0] += DAY
        before = len(fake.texts())
        report = indexer.full_sync()
        sent_per_day.append(fake.texts()[before:])
        if report.failed == 0:
            break
    assert report.failed == 0 and 2 <= len(sent_per_day) < 10
    assert all(sum(fake_tokens(t) for t in day) <= limit for day in sent_per_day)
    every = [t for day in sent_per_day for t in day]
    assert len(every) == len(set(every))
    assert engine.snapshot.problems(indexer.collection) == []
    assert embedder.stats.message().spend_paused is False


# --- secrets -----------------------------------------------------------------------------


def test_the_key_appears_nowhere(
    fake: FakeProviders, short_tmp: Path, make_engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Servers that echo the key (in 401s, and here even in 429/500 bodies) must not get it
    into logs, errors, tracebacks, status or the snapshot."""
    caplog.set_level(logging.DEBUG)
    for name in (
        "openai",
        "httpx",
        "httpx2",
        "httpcore",
        "httpcore2",
        "voyage",
        "google_genai",
        "urllib3",
        "codectxd",
    ):
        caplog.set_level(logging.DEBUG, logger=name)
    wrong = "zz-Leaky-0b1c2d3e4f"
    seen: list[str] = []
    settings = load_settings(
        {
            "CODECTX_DATA_DIR": str(short_tmp / "d"),
            "CODECTX_RUNTIME_DIR": str(short_tmp / "r"),
            "CODECTX_CONFIG": str(short_tmp / "c.toml"),
            "EMBEDDING_PROVIDER": "openai",
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": fake.base_url("openai"),
        }
    )
    seen += [json.dumps(describe(settings)), repr(settings)]

    def run(embedder: Embedder, texts: list[str]) -> None:
        try:
            embedder.embed_texts(texts)
        except ProviderError as exc:
            seen.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])
            assert exc.__cause__ is None and exc.__context__ is None

    echo = f"slow down, key {KEY} is over its limit"
    for provider in sorted(CLOUD):
        _, dimension = CLOUD[provider]
        client = provider_for(fake, provider, dimension=dimension, timeout_s=0.5)
        seen.append(repr(client))
        embedder = Embedder(client, None, max_retries=1, sleep=Sleeps())
        for fault in (
            Fault(status=429, message=echo),
            Fault(status=500, message=echo),
            Fault(delay=1.5),
        ):
            fake.script(fault, fault)
            run(embedder, [f"{provider} {fault}"])
        run(Embedder(provider_for(fake, provider, api_key=wrong, dimension=dimension), None), ["x"])
        seen.append(msgspec.json.encode(embedder.stats.message()).decode())
    # A failure during indexing lands in the snapshot, the report and the indexer's log.
    embedder = Embedder(provider_for(fake, "voyage", dimension=256), None, max_retries=0)
    engine, root = make_engine(embedder)
    indexer = engine.indexer_for(root)
    fake.always(Fault(status=429, message=echo))
    report = indexer.full_sync()
    fake.always(None)
    assert report.failed == 5
    seen += [p.reason for p in engine.snapshot.problems(indexer.collection)]
    seen += [m for _, m in report.errors]
    records = [r.getMessage() for r in caplog.records]
    records += [
        "".join(traceback.format_exception(*r.exc_info)) for r in caplog.records if r.exc_info
    ]
    assert any("rejected the API key" in r for r in seen)
    assert any("retry 1/1" in r for r in records)
    assert any("left waiting for vectors" in r for r in records)
    everything = "\n".join(seen + records)
    assert "slow down, key ***" in everything  # the echoes were there, redacted
    assert KEY not in everything and wrong not in everything


def test_a_search_while_the_provider_is_down_answers_with_its_keyword_side(
    fake: FakeProviders, make_engine, short_tmp: Path
) -> None:
    """The daemon's concurrent search path: a hybrid search whose query cannot be embedded
    answers from BM25 and says so; a dense-only search fails with the provider's error."""
    import anyio

    from codectxd.search import Target, search_async

    embedder = Embedder(provider_for(fake, "openai", dimension=64), cache_in(short_tmp),
                        max_retries=0)  # fmt: skip
    engine, root = make_engine(embedder)
    engine.indexer_for(root).full_sync()
    targets = [Target(str(root), engine.collection_for(root))]

    async def search(mode: str, query: str) -> tuple[list, list[str]]:  # type: ignore[type-arg]
        warnings: list[str] = []
        hits, _ = await search_async(engine.store, embedder, targets, query,
                                     snapshot=engine.snapshot, mode=mode, warnings=warnings)  # fmt: skip
        return hits, warnings

    hits, warnings = anyio.run(search, "hybrid", "parse_config settings")
    assert hits and hits[0].path == "app/config.py" and warnings == []
    fake.always(Fault(status=503, message="overloaded, try later"))
    hits, warnings = anyio.run(search, "hybrid", "parse_config of the settings")  # not cached
    assert hits and hits[0].path == "app/config.py"
    assert len(warnings) == 1 and "could not be embedded" in warnings[0], warnings
    assert "keyword results only" in warnings[0]
    with pytest.raises(ProviderError, match="overloaded"):
        anyio.run(search, "dense", "parse_config of the settings file")
    fake.always(None)
