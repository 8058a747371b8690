"""Bytecode for our own packages, written by the daemon when Python would not write it.

`codectx-client` is a short process that editors start per keystroke and agents per hook.
Imported from source, its modules cost ~15 ms of compiling per start, more than the search
it sends; the daemon's own 11k lines cost ~160 ms of every restart. pip compiles a regular
install; an editable install (the test command's `pip install -e .`) is compiled by Python on
first import, unless PYTHONDONTWRITEBYTECODE is set (containers, CI images), and then every
start compiles again. So the daemon compiles both packages once at start, stale files only,
as pip does at install time. A read-only install is left alone; nothing here can fail the
daemon (Python then compiles in memory, as before).
"""

from __future__ import annotations

import compileall
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def compile_packages() -> bool:
    """Write missing or stale bytecode for `codectx_client` and `codectxd`; False when some
    could not be written."""
    import codectx_client
    import codectxd

    ok = True
    for package in (codectx_client, codectxd):
        try:
            ok &= bool(compileall.compile_dir(Path(str(package.__file__)).parent, quiet=2))
        except Exception as exc:  # noqa: BLE001 - a read-only install, anything: never fatal
            log.debug("bytecode for %s not written: %s", package.__name__, exc)
            ok = False
    return ok
