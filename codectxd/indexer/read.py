"""Reading one file of a repository safely: never through a symlink the scan would refuse,
never a FIFO or device, never more than the size limit; binary and minified text are skips."""

from __future__ import annotations

import errno
import os
import stat

from codectxd.scanner import FileEntry, Scanner

_BINARY_PROBE_BYTES = 8192


class Skip(Exception):
    """The file is not indexed, for `reason` (a stable skip-reason code)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    @property
    def message(self) -> str:
        """What the snapshot records: `reason` or `reason: detail`."""
        return self.reason + (f": {self.detail}" if self.detail else "")


def read_file(scanner: Scanner, entry: FileEntry) -> bytes:
    """The bytes of `entry`.

    Raises:
        Skip: the file must not be indexed (symlink, not regular, too large, binary,
            unreadable).
        FileNotFoundError: it is gone (the caller removes it).
    """
    path = scanner.root / entry.path
    try:
        data = _read(scanner, entry)
    except OSError as exc:
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, f"{entry.path} is gone") from None
        raise Skip(_failure_reason(scanner, entry, exc), exc.strerror or str(exc)) from None
    if b"\x00" in data[:_BINARY_PROBE_BYTES]:
        raise Skip("binary")
    return data


def _read(scanner: Scanner, entry: FileEntry) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not scanner.settings.follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    path = scanner.root / entry.path
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        # O_NOFOLLOW only guards the last component: a parent directory may have become a
        # symlink (to outside the repository) since the scan. Check what was opened.
        real = _opened_path(fd, st) or os.path.realpath(path)
        reason = scanner.resolved_reason(entry.path, real)
        if reason is not None:
            raise Skip(reason, "reached through a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise Skip("not_regular")
        limit = scanner.settings.max_file_bytes
        if st.st_size > limit:
            raise Skip("too_large", f"{st.st_size} bytes > {limit}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Skip("too_large", f"more than {limit} bytes")
    return data


def _failure_reason(scanner: Scanner, entry: FileEntry, exc: OSError) -> str:
    """The skip reason of a file that exists but cannot be read."""
    if exc.errno != errno.ELOOP:  # O_NOFOLLOW met a link, or a loop was followed
        return "unreadable"
    if scanner.settings.follow_symlinks:
        return "symlink_loop"
    real = os.path.realpath(scanner.root / entry.path)
    return scanner.resolved_reason(entry.path, real) or "symlink"


def _opened_path(fd: int, st: os.stat_result) -> str | None:
    """The real path of an open file, from /proc (Linux); None where it cannot be known."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if st.st_nlink == 0:  # unlinked since it was opened
        real = real.removesuffix(" (deleted)")
    return real if real.startswith("/") else None


def looks_minified(text: str) -> bool:
    """Generated / minified text: long lines that would make useless chunks."""
    if len(text) < 2000:
        return False
    lines = text.count("\n") + 1
    if len(text) / lines > 300:
        return True
    return any(len(line) > 5000 for line in text.split("\n"))
