"""Bytecode for the thin client, written by the daemon when Python would not write it.

`codectx-client` is a short process that editors start per keystroke and agents per hook.
Imported from source, its modules cost ~15 ms of compiling per start, more than the search
it sends. pip compiles a regular install; an editable install (the test command's
`pip install -e .`) is compiled by Python on first import, unless PYTHONDONTWRITEBYTECODE is
set (containers, CI images), and then every start compiles again. So the daemon compiles the
client's package once at start, stale files only, as pip does at install time. A read-only
install is left alone; nothing here can fail the daemon.
"""

from __future__ import annotations

import compileall
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def compile_client() -> bool:
    """Write missing or stale bytecode for `codectx_client`; False when it could not."""
    try:
        import codectx_client
    except ImportError:  # pragma: no cover - installed together
        return False
    package = Path(codectx_client.__file__).parent
    try:
        return bool(compileall.compile_dir(package, maxlevels=0, quiet=2))
    except OSError as exc:  # a read-only install: Python compiles in memory as before
        log.debug("client bytecode not written: %s", exc)
        return False
