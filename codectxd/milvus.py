"""A connection to Milvus (a Lite file, or a server / Zilliz Cloud by URI) that turns every
failure into a `StoreError` written for the user and survives the engine going away: when
Milvus Lite's child process is killed or a server restarts, it reconnects once and retries."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from codectxd import lite_engine
from codectxd.errors import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Engine processes started before Milvus Lite's failure to start is the user's error.
_LITE_START_ATTEMPTS = 4
#: After a failed open, calls repeat its error this long before one tries again.
_REOPEN_S = 5.0
#: Error texts meaning the engine (Milvus Lite's child process or a server) is gone.
_UNREACHABLE = (
    "fail connecting",
    "unavailable",
    "connection refused",
    "connect failed",
    "broken pipe",
    "socket closed",
    "deadline exceeded",
)


class MilvusConnection:
    """A `pymilvus.MilvusClient`, used through `run`. Thread-safe."""

    def __init__(
        self,
        uri: str,
        token: str = "",
        *,
        on_reconnect: Callable[[], None] | None = None,
        open_now: bool = True,
    ) -> None:
        """Open the store at `uri` in the background: importing pymilvus and starting Milvus
        Lite's engine take a second and a half, and a warm restart needs neither to be fresh
        (searches of a large collection read its image). The first call waits for it.

        Args:
            open_now: start opening now; else at `open_soon` or the first call (the daemon
                scans first: the import and a scan both hold the GIL).

        Raises:
            StoreError: another process has the Milvus Lite file (checked at once, so a
                daemon that cannot have its store says so when it starts).
        """
        self.uri = uri
        #: A Milvus Lite file (an engine process of ours), not a server's address.
        self.local = "://" not in uri
        self._token = token
        self._on_reconnect = on_reconnect
        self._lock = threading.Lock()
        self.reconnects = 0
        self.closed = False
        # At once (and again in `_connect`): a failed open by milvus-lite deletes the other
        # process's lock file.
        if self.local and _locked(self.uri):
            raise self._in_use()
        self._client: Any = None
        self._failed: str | None = None  # the last open's error ...
        self._failed_at = 0.0  # ... and when: calls within _REOPEN_S repeat it
        # A reconnect dropped the client and its open failed: the next open is a reconnect
        # (`on_reconnect` runs: what was loaded in the old engine is not in the new one).
        self._stale = False
        self._opened = threading.Event()
        self._opening = False
        if open_now:
            self.open_soon()

    def open_soon(self) -> None:
        """Start opening the store in the background (once)."""
        with self._lock:
            if self._opening:
                return
            self._opening = True
        try:
            threading.Thread(target=self._open_first, name="milvus-open", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (shutting down, or a limit)
            self._failed = f"cannot open the Milvus store at {self.uri}: {exc}"
            self._opened.set()  # the next call opens it itself

    def _open_first(self) -> None:
        started = time.perf_counter()
        try:
            if not self.closed:  # closed before it began: nothing to open, nor to stop after
                self._client = self._open()
                log.info("opened the Milvus store at %s in %.2f s", self.uri,
                         time.perf_counter() - started)  # fmt: skip
        except StoreError as exc:
            log.warning("%s", exc)
        finally:
            self._opened.set()

    def _open(self) -> Any:
        """A new client; a failure of any kind is recorded (for `_REOPEN_S`) and raised as
        a `StoreError`."""
        try:
            _prepare_pymilvus()
            client = self._connect()
        except Exception as exc:
            if not isinstance(exc, StoreError):
                log.debug("opening the Milvus store failed", exc_info=True)
                exc = StoreError(f"cannot open the Milvus store at {self.uri}: {_reason(exc)}")
            self._failed, self._failed_at = str(exc), time.monotonic()
            raise exc from None
        self._failed = None
        return client

    @property
    def client(self) -> Any:
        """The `MilvusClient`, once open (waits for the open in progress; after a failed
        one, opens again — at most every few seconds, repeating the error in between)."""
        if not self._opened.is_set():
            self.open_soon()
            self._opened.wait()
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is not None:
                return self._client
            if self.closed:
                raise StoreError(f"the Milvus store at {self.uri} is closed")
            if self._failed is not None and time.monotonic() - self._failed_at < _REOPEN_S:
                raise StoreError(self._failed)  # a new one per caller: threads share none
            self._client = client = self._open()
            stale, self._stale = self._stale, False
            log.info("opened the Milvus store at %s", self.uri)
        if stale:
            self.reconnects += 1
            if self._on_reconnect is not None:
                self._on_reconnect()
        return client

    @property
    def open_error(self) -> str | None:
        """The last open's error while there is no client (the next call tries again)."""
        return self._failed if self._client is None else None

    def wait_open(self) -> None:
        """Block until the store is open (raises its `StoreError` if it cannot be)."""
        self.client  # noqa: B018 - the property opens it

    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        # Check first: a failed open by milvus-lite deletes the other process's lock file.
        if self.local and _locked(self.uri):
            raise self._in_use()
        # Milvus Lite's engine process sometimes dies while it starts (seen on a loaded
        # machine, right after another engine stopped): its socket then refuses every connection.
        # Stop it and start a fresh one, a little later each time.
        attempts = _LITE_START_ATTEMPTS if self.local else 1
        for attempt in range(1, attempts + 1):
            try:
                if self.local:
                    lite_engine.start(self.uri)  # else pymilvus starts it, 0.5 s slower
                if self._token:
                    return MilvusClient(uri=self.uri, token=self._token)
                return MilvusClient(uri=self.uri)
            except lite_engine.Locked:  # taken since the check above
                raise self._in_use() from None
            except Exception as exc:
                reason = _reason(exc)
                retry = (
                    isinstance(exc, lite_engine.StartFailed) or "fail connecting" in reason.lower()
                )
                if attempt == attempts or not retry:
                    raise StoreError(
                        f"cannot open the Milvus store at {self.uri}: {reason}"
                    ) from None
                log.warning("the Milvus Lite engine for %s did not answer (%s); starting it "
                            "again", self.uri, reason)  # fmt: skip
                self._release_engine()
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def _in_use(self) -> StoreError:
        return StoreError(
            f"the index at {self.uri} is in use by another process (a running codectxd?); "
            f"use codectx-client to talk to the daemon, or stop it first"
        )

    def _release_engine(self) -> None:
        if self.local:
            # pymilvus never stops Milvus Lite's engine process (nor frees the file lock).
            try:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)
            except Exception:  # noqa: BLE001
                log.debug("stopping the Milvus Lite engine failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            opening = self._opening
            self._opening = True  # never opened from now on
            self.closed = True  # a call failing from now on is not a reason to start an engine
        if opening:
            self._opened.wait()  # an open in progress ends with an engine to stop
        else:
            self._opened.set()  # a call after close fails at once instead of waiting
        with self._lock:
            client = self._client
        if client is None:
            self._release_engine()
            return
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is best effort at shutdown
            log.debug("closing the Milvus client failed", exc_info=True)
        self._release_engine()

    def _reconnect(self, broken: Any) -> None:
        with self._lock:
            if self._client is not broken:
                return  # another thread reconnected already
            if self.closed:
                raise StoreError(f"the Milvus store at {self.uri} is closed")
            log.warning("the Milvus engine at %s is unreachable; reconnecting", self.uri)
            with contextlib.suppress(Exception):
                broken.close()
            self._release_engine()
            self._client, self._stale = None, True
            self._client = self._open()  # failed: the next call opens it, as a reconnect
            self._stale = False
            self.reconnects += 1
        if self._on_reconnect is not None:
            self._on_reconnect()

    def run(self, what: str, fn: Callable[[Any], T]) -> T:
        """`fn(client)`; one reconnect-and-retry when the engine is unreachable.

        Raises:
            StoreError: "`what`: reason" (plus a hint when the disk is full).
        """
        for attempt in (0, 1):
            client = self.client
            try:
                return fn(client)
            except StoreError:
                raise
            except Exception as exc:
                reason = _reason(exc)
                if attempt == 0 and any(t in reason.lower() for t in _UNREACHABLE):
                    self._reconnect(client)
                    continue
                raise StoreError(f"{what}: {reason}{_disk_hint(self.uri)}") from None
        raise AssertionError("unreachable")


def _prepare_pymilvus() -> None:
    """Import pymilvus (it configures its loggers on import: quiet them after) and set it up
    for our use. Idempotent."""
    import pymilvus  # noqa: F401

    from codectxd import milvus_results

    _quiet_library_logs()
    _skip_row_string_check()
    if not milvus_results.install():
        log.debug("pymilvus changed how it builds search results: its own decoder stays")


def _locked(path: str) -> bool:
    """Whether another process holds Milvus Lite's lock on a local database file."""
    import fcntl

    lock_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    try:
        handle = open(lock_path, "r+")  # noqa: SIM115 - closed below; never create it
    except OSError:
        return False
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(handle, fcntl.LOCK_UN)
    except OSError:
        return True
    finally:
        handle.close()
    return False


def _disk_hint(uri: str) -> str:
    """Milvus Lite reports a full disk as an opaque RPC failure: say so when space is short."""
    if "://" in uri:
        return ""
    import shutil

    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(uri))).free
    except OSError:
        return ""
    if free < 64 * 2**20:
        return (
            f" (the disk holding {os.path.dirname(uri)} is full or nearly: "
            f"{free / 2**20:.1f} MB free)"
        )
    return ""


def _quiet_library_logs() -> None:
    """pymilvus logs every failed RPC with a traceback and milvus-lite's in-process gRPC server
    logs unimplemented calls; we turn failures into StoreErrors, so keep their logs quiet."""
    for name in (
        "pymilvus",
        "pymilvus.milvus_client",
        "pymilvus.bulk_writer",
        "grpc._server",
        "milvus_lite",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # milvus_lite 2.5 logs through the root logger; its failures reach users as StoreErrors.
    root = logging.getLogger()
    if not any(getattr(f, "codectx_quiet", False) for f in root.filters):

        def drop_milvus_lite(record: logging.LogRecord) -> bool:
            return "milvus_lite" not in record.pathname

        drop_milvus_lite.codectx_quiet = True  # type: ignore[attr-defined]
        root.addFilter(drop_milvus_lite)


def _reason(exc: BaseException) -> str:
    """A one-line reason from a pymilvus / milvus-lite exception (never a traceback)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:500]


def _skip_row_string_check() -> None:
    """pymilvus (2.6) "checks" each VARCHAR value of a row insert by looping over its
    characters in Python, comparing each one's length with the field's limit: it can never
    fail, and it was a tenth of the first phase's time (sympy: 35.7 → 32.1 s without it). Our
    rows are clipped to the schema's byte limits before they are sent (`store._row_dict`) and
    the server checks them again. Its module switch turns the loop off; a pymilvus without
    the switch is left as it is."""
    from pymilvus.client import entity_helper

    if isinstance(getattr(entity_helper, "CHECK_STR_ARRAY", None), bool):
        entity_helper.CHECK_STR_ARRAY = False
