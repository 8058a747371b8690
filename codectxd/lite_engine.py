"""Milvus Lite's engine process, started without its fixed half-second wait.

milvus-lite 2.5 starts its engine and then sleeps 0.5 s to see whether the process dies; the
engine opens its socket after ~30 ms (docs/decisions.md §12). Every daemon start, and every
store a test opens, paid the difference. Here the same process is started the same way and
watched until its socket appears; it is then registered with milvus-lite's server manager,
where pymilvus looks a `.db` file up, so pymilvus connects to it and `release_server` stops
it as before. A milvus-lite whose internals differ is left to start its own engine.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import subprocess
import time
from typing import Any, NoReturn

log = logging.getLogger(__name__)

#: How long the engine may take to open its socket before it counts as failed to start.
SOCKET_TIMEOUT_S = 20.0
_POLL_S = 0.005


class StartFailed(Exception):
    """The engine process exited, or never opened its socket, while it started."""


class Locked(Exception):
    """Another process holds the file's lock (a running codectxd, or a script)."""


def start(db_path: str) -> bool:
    """Start the engine for the Milvus Lite file `db_path` unless one runs already; False when
    this path does not apply (pymilvus then starts the engine the library's own way).

    Raises:
        StartFailed: the engine did not come up (it is stopped; starting again may work).
        Locked: another process has the file.
    """
    try:
        from milvus_lite import server as lite_server
        from milvus_lite.server_manager import server_manager_instance as manager
    except ImportError:
        return False
    servers = getattr(manager, "_servers", None)
    lock = getattr(manager, "_lock", None)
    if not isinstance(servers, dict) or lock is None:
        return False
    key = str(pathlib.Path(db_path).absolute().resolve())  # the manager's own key
    with lock:
        if key in servers:
            return True
        server = lite_server.Server(key)
        try:
            if not _has_layout(server) or not server.init():
                _disarm(server)
                return False
            _start(server)
        except BaseException:
            _disarm(server)
            raise
        servers[key] = server
    return True


_LAYOUT = ("args", "init", "stop", "uds_path", "_bin_path", "_lock_path", "_uds_path", "_work_dir",
           "_p", "_lock_fd")  # fmt: skip


def _has_layout(server: Any) -> bool:
    """Whether milvus-lite's Server is the one this module was written against."""
    return all(hasattr(server, name) for name in _LAYOUT)


def _disarm(server: Any) -> None:
    """milvus-lite's Server deletes its lock file when it is stopped, and stops when it is
    collected: one that is not (or no longer) running must not, or it would delete the file
    another process holds."""
    server.stop = lambda: None


def _start(server: Any) -> None:
    """Server.start, waiting for the socket instead of a fixed 0.5 s."""
    handle = open(server._lock_path, "a")  # noqa: SIM115 - held while the engine runs
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise Locked(f"{server._lock_path} is locked by another process") from None
    server._lock_fd = handle
    library_path = str(server._bin_path)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")}
    inherited = os.environ.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = env["DYLD_LIBRARY_PATH"] = f"{library_path}:{inherited}"
    started = time.monotonic()
    server._p = subprocess.Popen(args=server.args, env=env, cwd=str(server._work_dir))
    while True:
        ready = os.path.exists(server._uds_path)
        status = server._p.poll()
        if status is not None:
            _stop_failed(server, f"its process exited while starting (status {status})")
        if ready:
            break
        if time.monotonic() - started > SOCKET_TIMEOUT_S:
            server._p.kill()
            server._p.wait()
            _stop_failed(server, f"it did not open its socket within {SOCKET_TIMEOUT_S:.0f} s")
        time.sleep(_POLL_S)
    log.debug("Milvus Lite engine answering after %.3f s", time.monotonic() - started)


def _stop_failed(server: Any, reason: str) -> NoReturn:
    server._p = None
    server.stop()  # ours: frees the lock, removes the socket path and the lock file
    _disarm(server)
    raise StartFailed(reason)
