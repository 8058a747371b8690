"""Where the daemon's socket lives; shared by the daemon and every client."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "codectx"
SOCKET_NAME = "codectxd.sock"
LOCK_NAME = "codectxd.lock"
STATE_NAME = "codectxd.json"


def default_runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$CODECTX_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/codectx`, else a per-user fallback.

    /run/user/<uid> is used when it exists (platformdirs answers it even when it does not,
    e.g. over ssh without a systemd session); otherwise a private dir under the temp dir.
    """
    env = os.environ if env is None else env
    if env.get("CODECTX_RUNTIME_DIR"):
        return Path(env["CODECTX_RUNTIME_DIR"]).expanduser()
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "TemporaryItems" / APP_NAME
    run_user = Path("/run/user") / str(os.getuid())
    if run_user.is_dir() and os.access(run_user, os.W_OK):
        return run_user / APP_NAME
    return Path(env.get("TMPDIR") or "/tmp") / f"{APP_NAME}-{os.getuid()}"


def socket_path(env: Mapping[str, str] | None = None) -> Path:
    """The daemon socket (`$CODECTX_SOCKET` overrides)."""
    env = os.environ if env is None else env
    if env.get("CODECTX_SOCKET"):
        return Path(env["CODECTX_SOCKET"]).expanduser()
    return default_runtime_dir(env) / SOCKET_NAME
