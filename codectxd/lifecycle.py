"""Daemon life: runtime dir checks, single-instance lock, signals, graceful shutdown, detach."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from codectx_client.paths import LOCK_NAME, SOCKET_NAME, STATE_NAME
from codectxd import __version__
from codectxd.config import Settings
from codectxd.errors import AlreadyRunningError, ConfigError

log = logging.getLogger(__name__)

SHUTDOWN_DEADLINE_S = 5.0
MAX_SOCKET_PATH = 100  # sun_path is 104-108 bytes depending on the OS


def prepare_runtime_dir(path: Path) -> None:
    """Create the runtime dir 0700, or refuse one that others could tamper with."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot create the runtime directory {path}: {exc.strerror}") from None
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"refusing to start: the runtime directory {path} belongs to uid {info.st_uid}, "
            f"not to you (uid {os.getuid()}); set CODECTX_RUNTIME_DIR to a directory of yours"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"refusing to start: the runtime directory {path} is accessible to other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); fix it with: chmod 700 {path}"
        )
    socket_path = path / SOCKET_NAME
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"the socket path {socket_path} is too long for a Unix socket "
            f"(max {MAX_SOCKET_PATH} bytes); set CODECTX_RUNTIME_DIR to a shorter directory"
        )


def read_state(runtime_dir: Path) -> dict[str, Any] | None:
    """The running daemon's state file (pid, socket, version), if any."""
    try:
        data = json.loads((runtime_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def single_instance(runtime_dir: Path) -> Iterator[None]:
    """Hold the lock file for the daemon's lifetime; a second daemon gets a clear error."""
    lock_path = runtime_dir / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            state = read_state(runtime_dir) or {}
            raise AlreadyRunningError(
                f"codectxd is already running (pid {state.get('pid', '?')}, socket "
                f"{state.get('socket', runtime_dir / SOCKET_NAME)})"
            ) from None
        state_path = runtime_dir / STATE_NAME
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "socket": str(runtime_dir / SOCKET_NAME),
                    "version": __version__,
                    "started": time.time(),
                }
            )
        )
        tmp.replace(state_path)
        try:
            yield
        finally:
            # Remove the socket and state before releasing the lock (dmypy does the same), so
            # a client never finds a socket without a daemon behind it after a clean stop.
            for name in (SOCKET_NAME, STATE_NAME):
                with contextlib.suppress(FileNotFoundError):
                    (runtime_dir / name).unlink()
    finally:
        os.close(fd)


def setup_logging(level: str, log_file: Path | None = None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO.
    for name in ("httpx", "watchfiles", "urllib3", "google_genai", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def _watch_signals(daemon_exit: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if daemon_exit.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("received %s: shutting down", signal.Signals(signum).name)
            daemon_exit.set()


async def serve(settings: Settings) -> None:
    """Run the daemon until shutdown is requested (by a client or a signal)."""
    from codectxd.app import Daemon
    from codectxd.server import Server

    started = time.monotonic()
    daemon = await anyio.to_thread.run_sync(Daemon, settings)
    server = Server(daemon.dispatch, daemon.socket_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, daemon.should_exit)
        listener = await server.listen()
        tg.start_soon(server.serve, listener)
        log.info("codectxd %s listening on %s (pid %d)", __version__, server.path, os.getpid())
        await daemon.run(tg)
        log.info("started in %.2fs", time.monotonic() - started)
        await daemon.should_exit.wait()
        log.info("shutting down")
        with anyio.move_on_after(SHUTDOWN_DEADLINE_S) as scope:
            await daemon.close()
        if scope.cancelled_caught:
            log.warning(
                "shutdown deadline passed; exiting with work in progress "
                "(it will be redone on the next start)"
            )
        tg.cancel_scope.cancel()
    log.info("stopped")


def run_foreground(settings: Settings, log_file: Path | None = None) -> int:
    setup_logging(settings.daemon.log_level, log_file)
    prepare_runtime_dir(settings.paths.runtime_dir)
    with single_instance(settings.paths.runtime_dir):
        anyio.run(serve, settings)
    return 0


def detach(settings: Settings, argv: list[str], timeout_s: float = 60.0) -> tuple[int, str]:
    """Start the daemon in the background and wait until it answers; (pid, log file)."""
    from codectx_client.connection import ClientError, connect

    prepare_runtime_dir(settings.paths.runtime_dir)
    state = read_state(settings.paths.runtime_dir)
    if state and _alive(int(state.get("pid", 0))):
        raise AlreadyRunningError(
            f"codectxd is already running (pid {state['pid']}, socket {state.get('socket')})"
        )
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    log_file = settings.paths.data_dir / "codectxd.log"
    with open(os.devnull, "rb") as devnull, open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "codectxd", *argv, "start", "--log-file", str(log_file)],
            stdin=devnull,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    socket_path = settings.paths.runtime_dir / SOCKET_NAME
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace").splitlines()[-15:]
            raise ConfigError("the daemon exited during start-up:\n  " + "\n  ".join(tail))
        try:
            with connect(socket_path) as conn:
                conn.call("ping", timeout_s=5)
            return proc.pid, str(log_file)
        except ClientError:
            time.sleep(0.1)
    raise ConfigError(f"the daemon did not answer within {timeout_s:.0f}s; see {log_file}")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
