"""A fake embedding API on 127.0.0.1 that speaks the OpenAI, Ollama, Voyage AI and Gemini
wire formats, so tests drive the real SDKs over real HTTP.

One threaded server answers all four, each under its own path prefix (`base_url(provider)`):

- OpenAI  ``POST {base}/embeddings`` with ``{model, input, dimensions?, encoding_format}``;
  answers ``{object, data: [{object, index, embedding}], model, usage}``, embeddings as
  base64 little-endian float32 when asked (what the openai SDK asks for by default), else
  lists of floats. Errors: ``{"error": {"message", "type", "code"}}``.
- Ollama  the same path and body, but (like the real Ollama) it ignores ``encoding_format``
  and always answers lists of floats; any key is accepted.
- Voyage  ``POST {base}/embeddings`` with ``{input, model, input_type, truncation,
  output_dtype, output_dimension, encoding_format}`` (the voyageai SDK sends base64);
  answers ``{object, data: [{object, embedding, index}], model, usage: {total_tokens}}``.
  Errors: ``{"detail": "..."}`` (the SDK requires that key on 4xx answers).
- Gemini  ``POST {base}/{version}/models/{model}:batchEmbedContents`` with ``{requests:
  [{model, content: {parts: [{text}]}, taskType?, outputDimensionality?}]}``; answers
  ``{embeddings: [{values}]}``; key in ``x-goog-api-key``. Errors: ``{"error": {"code",
  "message", "status"}}``.

Vectors are deterministic per (model, text), deliberately not unit length (so tests see the
client normalise them); reduced dimensions are the prefix of the full vector, like the
Matryoshka-trained models. Every request is recorded (provider, path, headers, parsed body,
status answered). Failures are injected with `Fault`s: `script()` queues one per request,
`always()` applies one to every request until cleared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

#: Native dimension of every model the fake knows; any other model gets a 404.
MODELS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "voyage-code-3": 1024,
    "voyage-3.5": 1024,
    "voyage-3": 1024,
    "voyage-3-large": 1024,
    "voyage-3-lite": 512,
    "gemini-embedding-001": 3072,
    "text-embedding-004": 768,
}
PREFIXES = {
    "openai": "/openai/v1",
    "ollama": "/ollama/v1",
    "voyage": "/voyage/v1",
    "gemini": "/gemini",
}
_GEMINI_PATH = re.compile(r"^/gemini/(v1beta|v1)/models/([^/:]+):(batchEmbedContents)$")


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) a normal answer.

    Attributes:
        status: HTTP status to answer with a provider-shaped error body (0: answer normally).
        retry_after: a Retry-After header value ("2", or an HTTP date).
        headers: more response headers.
        delay: seconds to wait before answering (beyond a client timeout: a timeout).
        body: raw bytes to send instead of the normal body (malformed JSON, garbage).
        message: the error message in the body.
    """

    status: int = 0
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None
    message: str = "injected failure"


@dataclass
class Recorded:
    provider: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


def fake_tokens(text: str) -> int:
    """The token count the fake reports in `usage` (deliberately unlike codectx's estimate)."""
    return len(text) // 5 + 1


class FakeProviders:
    """The fake API server. Use as a context manager, or call `start()` / `close()`.

    Args:
        api_key: when set, requests must carry it (Bearer or x-goog-api-key), else 401 whose
            message echoes the key received — worse than real servers, to test redaction.
        models: model → native dimension (default `MODELS`).
    """

    def __init__(self, api_key: str = "", models: dict[str, int] | None = None) -> None:
        self.api_key = api_key
        self.models = dict(MODELS if models is None else models)
        self.requests: list[Recorded] = []
        self._faults: deque[Fault | None] = deque()
        self._always: Fault | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life ---------------------------------------------------------------------------

    def start(self) -> FakeProviders:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers sleeping in a `delay`
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        """The base URL to configure for `provider` (EMBEDDING_BASE_URL)."""
        return self.url + PREFIXES[provider]

    # --- control ------------------------------------------------------------------------

    def script(self, *faults: Fault | None) -> None:
        """Queue faults, consumed one per request in order (None: answer that one normally)."""
        with self._lock:
            self._faults.extend(faults)

    def always(self, fault: Fault | None) -> None:
        """Apply `fault` to every request (after the script runs out); None: stop."""
        with self._lock:
            self._always = fault

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always = None
            self.requests.clear()

    def count(self, provider: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (provider is None or r.provider == provider)
                and (status is None or r.status == status)
            )

    def bodies(self, provider: str | None = None) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if provider is None or r.provider == provider]

    def texts(self, provider: str | None = None) -> list[str]:
        """Every input text received (all requests, in order)."""
        out: list[str] = []
        for body in self.bodies(provider):
            if not isinstance(body, dict):
                continue
            if "requests" in body:
                out += [p["text"] for r in body["requests"] for p in r["content"]["parts"]]
            elif isinstance(body.get("input"), list):
                out += body["input"]
            elif isinstance(body.get("input"), str):
                out.append(body["input"])
        return out

    def vector(self, model: str, text: str, dimension: int | None = None) -> np.ndarray:
        """The raw (unnormalised) vector the fake answers for `text`."""
        native = self.models[model]
        seed = int.from_bytes(
            hashlib.blake2b(f"{model}\0{text}".encode(), digest_size=8).digest(), "little"
        )
        full = np.random.default_rng(seed).standard_normal(native).astype(np.float32) * 3 + 0.5
        return full[: dimension or native]

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            return self._always

    def _record(self, item: Recorded) -> None:
        with self._lock:
            self.requests.append(item)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeProviders

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        provider = next(
            (name for name, prefix in PREFIXES.items() if self.path.startswith(prefix + "/")), ""
        )
        record = Recorded(
            provider, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        fake._record(record)
        fault = fake._next_fault()
        if fault is not None and fault.delay:
            fake._closing.wait(fault.delay)
        try:
            status, headers, payload = self._answer(fake, provider, body, fault)
        except _Reject as reject:
            status, headers, payload = (
                reject.status,
                {},
                _error_body(provider, reject.status, reject.message),
            )
        record.status = status
        self._send(status, headers, payload)

    def _answer(
        self, fake: FakeProviders, provider: str, body: Any, fault: Fault | None
    ) -> tuple[int, dict[str, str], bytes]:
        if not provider:
            raise _Reject(404, f"no such path {self.path}")
        if fake.api_key and provider != "ollama":
            presented = (
                self.headers.get("x-goog-api-key")
                if provider == "gemini"
                else (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            )
            if presented != fake.api_key:
                raise _Reject(
                    401,
                    f"Incorrect API key provided: {presented}. You can find "
                    f"your API key in your account settings.",
                )
        if fault is not None and (fault.status or fault.body is not None):
            headers = dict(fault.headers)
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            if fault.body is not None:
                return fault.status or 200, headers, fault.body
            return fault.status, headers, _error_body(provider, fault.status, fault.message)
        if not isinstance(body, dict):
            raise _Reject(400, "the body is not a JSON object")
        if provider == "gemini":
            return 200, {}, self._gemini(fake, body)
        if not self.path.endswith("/embeddings"):
            raise _Reject(404, f"no such path {self.path}")
        return 200, {}, self._openai_like(fake, provider, body)

    def _openai_like(self, fake: FakeProviders, provider: str, body: dict[str, Any]) -> bytes:
        model = body.get("model")
        if model not in fake.models:
            raise _Reject(404, f"The model `{model}` does not exist")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise _Reject(400, "input must be a non-empty list of strings")
        if provider == "voyage":
            dimension = body.get("output_dimension")
            if body.get("input_type") not in (None, "query", "document"):
                raise _Reject(400, "bad input_type")
        else:
            dimension = body.get("dimensions")
            if dimension is not None and not str(model).startswith("text-embedding-3"):
                raise _Reject(400, "This model does not support specifying dimensions.")
        if dimension is not None and not 0 < int(dimension) <= fake.models[model]:
            raise _Reject(400, f"bad dimension {dimension}")
        as_base64 = body.get("encoding_format") == "base64" and provider != "ollama"
        data = []
        for index, text in enumerate(texts):
            vector = fake.vector(model, text, dimension)
            embedding: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if as_base64
                else [float(x) for x in vector]
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(fake_tokens(t) for t in texts)
        usage: dict[str, int] = (
            {"total_tokens": tokens}
            if provider == "voyage"
            else {"prompt_tokens": tokens, "total_tokens": tokens}
        )
        return json.dumps({"object": "list", "data": data, "model": model, "usage": usage}).encode()

    def _gemini(self, fake: FakeProviders, body: dict[str, Any]) -> bytes:
        match = _GEMINI_PATH.match(self.path)
        if match is None:
            raise _Reject(404, f"no such path {self.path}")
        model = match.group(2)
        if model not in fake.models:
            raise _Reject(
                404,
                f"models/{model} is not found for API version "
                f"{match.group(1)}, or is not supported for embedContent.",
            )
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise _Reject(400, "requests must be a non-empty list")
        if len(requests) > 100:
            raise _Reject(
                400,
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
            )
        out = []
        for item in requests:
            if item.get("model") != f"models/{model}":
                raise _Reject(400, "request model does not match the URL")
            text = "".join(part.get("text", "") for part in item["content"]["parts"])
            dimension = item.get("outputDimensionality")
            if dimension is not None and not 0 < int(dimension) <= fake.models[model]:
                raise _Reject(400, f"bad outputDimensionality {dimension}")
            out.append({"values": [float(x) for x in fake.vector(model, text, dimension)]})
        return json.dumps({"embeddings": out}).encode()

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error_body(provider: str, status: int, message: str) -> bytes:
    if provider == "voyage":
        return json.dumps({"detail": message}).encode()
    if provider == "gemini":
        return json.dumps(
            {
                "error": {
                    "code": status,
                    "message": message,
                    "status": _GOOGLE_STATUS.get(status, "UNKNOWN"),
                }
            }
        ).encode()
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": "invalid_api_key" if status == 401 else None,
            }
        }
    ).encode()
