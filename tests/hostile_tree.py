"""Build hostile repository trees for the daemon tests (tests/test_hostile.py).

Each builder writes real files (or FIFOs, sockets, devices, symlinks...) under a repository
root and returns `Expect`ations: for every hostile entry, either the skip reasons the daemon may
report for it, or a unique marker word that must be searchable afterwards (with the line the
marker is on, to check line numbers). Nothing here talks to the daemon.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Skip reasons documented in docs/protocol.md (`status` section).
SKIP_REASONS = frozenset(
    {
        "too_large",
        "binary",
        "secret",
        "minified",
        "unsupported",
        "unreadable",
        "symlink",
        "symlink_outside",
        "symlink_loop",
        "not_regular",
        "bad_path",
    }
)


@dataclass(frozen=True)
class Expect:
    """What the daemon must do with one hostile entry.

    Attributes:
        path: repository-relative path ("/" separated) as the daemon reports it; for names that
            are not valid UTF-8 this is the lossy (U+FFFD) form.
        reasons: acceptable skip reasons; empty means the file must be indexed.
        marker: for indexed files, a unique identifier inside the file (lexical search finds it).
        line: for indexed files, the 1-based line the marker is on (None: not checked).
        absent: markers that must NOT be searchable (content the daemon must not index/leak).
    """

    path: str
    reasons: frozenset[str] = frozenset()
    marker: str | None = None
    line: int | None = None
    absent: tuple[str, ...] = ()

    @property
    def indexed(self) -> bool:
        return not self.reasons


def skipped(path: str, *reasons: str, absent: tuple[str, ...] = ()) -> Expect:
    unknown = set(reasons) - SKIP_REASONS
    assert not unknown, unknown
    return Expect(path, frozenset(reasons), absent=absent)


def indexed(path: str, marker: str, line: int | None = None) -> Expect:
    return Expect(path, marker=marker, line=line)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _func(name: str, body: str = "return 1") -> str:
    return f"def {name}():\n    {body}\n"


# --- content ------------------------------------------------------------------------------


def binary_files(root: Path) -> list[Expect]:
    """Files with a source extension but binary content, and true binaries."""
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64
    _write(root / "bin/blob.py", b"def looks_like_code():\n    pass\n\x00\x01\x02\xff" * 50)
    _write(root / "bin/program.c", elf)
    _write(root / "bin/image.png", b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    # NUL bytes past the 8 KiB binary probe: indexed (the text around them is code).
    tail = "def late_nul_marker_qz():\n    return 'x'\n"
    _write(root / "bin/late_nul.py", ("# padding line\n" * 700) + tail + "\x00\n")
    return [
        skipped("bin/blob.py", "binary", absent=("looks_like_code",)),
        skipped("bin/program.c", "binary"),
        skipped("bin/image.png", "unsupported"),
        indexed("bin/late_nul.py", "late_nul_marker_qz", line=701),
    ]


def huge_file(root: Path, size: int = 100 * 1024 * 1024) -> list[Expect]:
    """A sparse 100 MB source file: must be skipped from its size alone (never read)."""
    path = root / "huge/generated_tables.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"def huge_file_marker_qz():\n    return 1\n")
        handle.truncate(size)
    return [skipped("huge/generated_tables.py", "too_large", absent=("huge_file_marker_qz",))]


def minified_js(root: Path) -> list[Expect]:
    """One 300 KB line of JavaScript (not named *.min.js, so content detection must catch it)."""
    body = ";".join(f"var minified_marker_{i}=function(a,b){{return a+b*{i}}}" for i in range(6000))
    _write(root / "web/bundle.js", body)
    return [skipped("web/bundle.js", "minified", absent=("minified_marker_17",))]


def encodings(root: Path) -> list[Expect]:
    """Latin-1, invalid UTF-8, mixed encodings, UTF-16 with a BOM, a UTF-8 BOM."""
    _write(
        root / "enc/latin1.py",
        "# Fran\xe7ais: caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1")
        + b"def latin1_marker_qz():\n    return 'na\xefve'\n",
    )
    _write(
        root / "enc/invalid_utf8.py",
        b"# \xc3\x28 \xa0\xa1 \xe2\x28\xa1 \xf0\x28\x8c\xbc \xff\xfe\n"
        b"def invalid_utf8_marker_qz():\n    return b'\\xff'\n",
    )
    _write(
        root / "enc/mixed.py",
        "# utf-8: na\u00efve \u2603\n".encode()
        + "# latin-1: na\xefve\n".encode("latin-1")
        + b"def mixed_encoding_marker_qz():\n    return 2\n",
    )
    _write(root / "enc/utf8_bom.py", b"\xef\xbb\xbfdef utf8_bom_marker_qz():\n    return 3\n")
    utf16 = "def utf16_marker_qz():\n    return 4\n".encode("utf-16")  # with BOM, has NULs
    _write(root / "enc/utf16.py", utf16)
    return [
        indexed("enc/latin1.py", "latin1_marker_qz", line=2),
        indexed("enc/invalid_utf8.py", "invalid_utf8_marker_qz", line=2),
        indexed("enc/mixed.py", "mixed_encoding_marker_qz", line=3),
        indexed("enc/utf8_bom.py", "utf8_bom_marker_qz", line=1),
        # UTF-16 text contains NUL bytes: "binary" is an acceptable outcome; so is indexing
        # it decoded. Either way the daemon must not crash or stall on it.
        Expect("enc/utf16.py", frozenset({"binary"})),
    ]


def line_endings(root: Path) -> list[Expect]:
    """CRLF files and characters str.splitlines() treats as line breaks (\\f, \\v, U+2028)."""
    crlf = ("# header\r\n" * 9) + "def crlf_marker_qz(a, b):\r\n    return a + b\r\n"
    _write(root / "eol/crlf.py", crlf)  # the def is on line 10
    mixed = "# one\r\n# two\n# three\r\n" + "\n" * 6 + "def mixed_eol_marker_qz():\n    pass\n"
    _write(root / "eol/mixed_eol.py", mixed)  # line 10
    odd = (
        "# form feed \x0c here\n# vertical tab \x0b here\n"
        "X = 'line separator \u2028 and paragraph \u2029 and NEL \x85'\n"
        "# \x1c\x1d\x1e group separators\n" + "\n" * 5 + "def odd_breaks_marker_qz():\n    pass\n"
    )
    _write(root / "eol/odd_breaks.py", odd)  # line 10
    return [
        indexed("eol/crlf.py", "crlf_marker_qz", line=10),
        indexed("eol/mixed_eol.py", "mixed_eol_marker_qz", line=10),
        indexed("eol/odd_breaks.py", "odd_breaks_marker_qz", line=10),
    ]


def empty_files(root: Path) -> list[Expect]:
    """Empty and whitespace-only files: no chunks, no crash (they count as indexed)."""
    _write(root / "empty/empty.py", b"")
    _write(root / "empty/blank.py", b"   \n\t\n\r\n \x0c \n")
    _write(root / "empty/newlines.ts", b"\n" * 5000)
    _write(root / "empty/sibling.py", _func("beside_empty_marker_qz"))
    return [indexed("empty/sibling.py", "beside_empty_marker_qz", line=1)]


# --- file system oddities -------------------------------------------------------------------


def symlinks(root: Path, outside: Path) -> list[Expect]:
    """Loops, self links, dangling links, and links pointing outside the repository."""
    outside.mkdir(parents=True, exist_ok=True)
    _write(outside / "secret_module.py", _func("outside_file_marker_qz"))
    _write(outside / "pkg/inner.py", _func("outside_dir_marker_qz"))
    links = root / "links"
    links.mkdir(parents=True, exist_ok=True)
    os.symlink("loop_b.py", links / "loop_a.py")
    os.symlink("loop_a.py", links / "loop_b.py")
    os.symlink("self.py", links / "self.py")
    os.symlink(".", links / "here")  # a directory loop
    os.symlink("..", links / "up")
    os.symlink("does/not/exist.py", links / "dangling.py")
    os.symlink(str(outside / "secret_module.py"), links / "outside_file.py")
    os.symlink(str(outside / "pkg"), links / "outside_dir")
    os.symlink("../../" + outside.name + "/secret_module.py", links / "relative_out.py")
    os.symlink("/etc/passwd", links / "passwd.py")
    _write(links / "real.py", _func("real_beside_links_marker_qz"))
    os.symlink("real.py", links / "inside_link.py")
    absent = ("outside_file_marker_qz", "outside_dir_marker_qz")
    link_reasons = ("symlink", "symlink_loop")
    return [
        skipped("links/loop_a.py", *link_reasons),
        skipped("links/loop_b.py", *link_reasons),
        skipped("links/self.py", *link_reasons),
        skipped("links/here", *link_reasons),
        skipped("links/up", *link_reasons),
        skipped("links/dangling.py", *link_reasons),
        skipped("links/outside_file.py", "symlink_outside", absent=absent),
        skipped("links/outside_dir", "symlink_outside", absent=absent),
        skipped("links/passwd.py", "symlink_outside", absent=("root:x:0:0",)),
        skipped("links/inside_link.py", "symlink"),
        indexed("links/real.py", "real_beside_links_marker_qz", line=1),
    ]


def special_files(root: Path) -> list[Expect]:
    """A FIFO and a Unix socket (and, as root, a character device) with source names.

    Returns the expectations and keeps the socket open through `_SOCKETS` (a bound socket
    file stays a socket even after close, but keeping it open also covers a live peer).
    """
    sdir = root / "special"
    sdir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(sdir / "pipe.py")
    os.mkfifo(sdir / "named_pipe")  # no extension: unsupported before it is ever opened
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sdir / "server.py"))
    sock.listen(1)
    _SOCKETS.append(sock)
    out = [
        skipped("special/pipe.py", "not_regular"),
        skipped("special/named_pipe", "unsupported", "not_regular"),
        skipped("special/server.py", "not_regular"),
    ]
    if is_root():
        os.mknod(sdir / "zero.py", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
        out.append(skipped("special/zero.py", "not_regular"))
    _write(sdir / "ordinary.py", _func("beside_fifo_marker_qz"))
    out.append(indexed("special/ordinary.py", "beside_fifo_marker_qz", line=1))
    return out


_SOCKETS: list[socket.socket] = []


def close_sockets() -> None:
    while _SOCKETS:
        _SOCKETS.pop().close()


def bad_names(root: Path) -> list[Expect]:
    """Names with a newline, a carriage return, bytes that are not UTF-8 (file and directory)."""
    base = os.fsencode(root / "names")
    os.makedirs(base, exist_ok=True)
    entries = {
        b"new\nline.py": "newline_name_marker_qz",
        b"carriage\rreturn.py": "cr_name_marker_qz",
        b"latin\xe9.py": "latin1_name_marker_qz",
        b"bad\xff\xfebytes.py": "badbytes_name_marker_qz",
    }
    out: list[Expect] = []
    for name, marker in entries.items():
        with open(os.path.join(base, name), "wb") as handle:
            handle.write(_func(marker).encode())
        shown = name.decode("utf-8", "replace")
        out.append(skipped(f"names/{shown}", "bad_path", absent=(marker,)))
    bad_dir = os.path.join(base, b"dir\xff")
    os.makedirs(bad_dir, exist_ok=True)
    with open(os.path.join(bad_dir, b"inside.py"), "wb") as handle:
        handle.write(_func("inside_bad_dir_marker_qz").encode())
    out.append(skipped("names/dir\ufffd", "bad_path", absent=("inside_bad_dir_marker_qz",)))
    _write(root / "names/plain.py", _func("plain_name_marker_qz"))
    out.append(indexed("names/plain.py", "plain_name_marker_qz", line=1))
    return out


#: Valid (UTF-8, no newline) names full of characters that need quoting somewhere:
#: Milvus filter strings, LIKE patterns, globs, shells. name → marker.
SPECIAL_NAMES = {
    "under_score_dir/snake_case_module.py": "underscore_dir_marker_qz",
    "100%/percent.py": "percent_dir_marker_qz",
    'quote"dir/dq.py': "double_quote_marker_qz",
    "single'quote.py": "single_quote_marker_qz",
    "back\\slash.py": "backslash_marker_qz",
    "back\\nslash_n.py": "backslash_n_marker_qz",
    "space dir/with space.py": "space_name_marker_qz",
    "brackets[1]/star*q?.py": "glob_chars_marker_qz",
    "ünïcödé/日本語.py": "unicode_name_marker_qz",
    "emoji_\U0001f600.py": "emoji_name_marker_qz",
    "-dash/--flag.py": "dash_name_marker_qz",
    "tab\there.py": "tab_name_marker_qz",
}


def special_names(root: Path) -> list[Expect]:
    out = []
    for rel, marker in SPECIAL_NAMES.items():
        _write(root / rel, _func(marker))
        out.append(indexed(rel, marker, line=1))
    return out


def unreadable(root: Path) -> list[Expect]:
    """A file and a directory the daemon's user cannot read (meaningless as root)."""
    _write(root / "perm/locked.py", _func("locked_file_marker_qz"))
    _write(root / "perm/locked_dir/inner.py", _func("locked_dir_marker_qz"))
    _write(root / "perm/open.py", _func("unlocked_marker_qz"))
    os.chmod(root / "perm/locked.py", 0)
    os.chmod(root / "perm/locked_dir", 0)
    return [
        skipped("perm/locked.py", "unreadable", absent=("locked_file_marker_qz",)),
        skipped("perm/locked_dir", "unreadable", absent=("locked_dir_marker_qz",)),
        indexed("perm/open.py", "unlocked_marker_qz", line=1),
    ]


def restore_permissions(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o755)


# --- big trees -------------------------------------------------------------------------------


def deep_tree(root: Path, depth: int = 200) -> list[Expect]:
    """A chain of `depth` nested directories with a source file at the bottom and midway."""
    path = root / "deep"
    for level in range(depth):
        path = path / f"d{level}"
        if level == depth // 2:
            _write(path / "middle.py", _func("deep_middle_marker_qz"))
    _write(path / "bottom.py", _func("deep_bottom_marker_qz"))
    rel = path.relative_to(root).as_posix()
    mid = "/".join(rel.split("/")[: depth // 2 + 2]) + "/middle.py"
    return [
        indexed(f"{rel}/bottom.py", "deep_bottom_marker_qz", line=1),
        indexed(mid, "deep_middle_marker_qz", line=1),
    ]


def beyond_path_max(root: Path, components: int = 20, name_len: int = 250) -> str:
    """Nest directories until the absolute path exceeds PATH_MAX (4096), using dir fds (a plain
    os.makedirs would fail with ENAMETOOLONG). Returns the relative path of the deepest dir."""
    parts: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(components):
            name = f"{i:03d}" + "x" * (name_len - 3)
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            parts.append(name)
        leaf = os.open("too_deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, _func("beyond_path_max_marker_qz").encode())
        os.close(leaf)
    finally:
        os.close(fd)
    return "/".join(parts)


def remove_beyond_path_max(root: Path, first: str) -> None:
    """rmtree cannot always delete what beyond_path_max built; walk it with dir fds."""

    def rm(dir_fd: int, name: str) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
        try:
            for child in os.listdir(fd):
                rm(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(FileNotFoundError):
            rm(fd, first)
    finally:
        os.close(fd)


def wide_tree(root: Path, files: int = 20_000, sources: int = 50) -> list[Expect]:
    """`files` entries in one directory, mostly of types codectx does not index."""
    wide = root / "wide"
    wide.mkdir(parents=True, exist_ok=True)
    exts = (".png", ".bin", ".dat", ".o", ".class", ".jpg", ".woff2", ".pdf")
    for i in range(files - sources):
        (wide / f"asset_{i:06d}{exts[i % len(exts)]}").write_bytes(b"x")
    for i in range(sources):
        (wide / f"src_{i:04d}.py").write_text(_func(f"wide_source_{i}_marker_qz"))
    return [
        indexed(f"wide/src_{i:04d}.py", f"wide_source_{i}_marker_qz", line=1)
        for i in (0, sources // 2, sources - 1)
    ]


def big_tree(root: Path, files: int, per_dir: int = 500, source_every: int = 20) -> int:
    """`files` small files spread over directories of `per_dir`; every `source_every`-th is a
    Python file. Returns the number of Python files."""
    n_sources = 0
    for start in range(0, files, per_dir):
        directory = root / f"pkg{start // per_dir:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(files, start + per_dir)):
            if i % source_every == 0:
                (directory / f"m{i}.py").write_text(f"def big_tree_{i}():\n    return {i}\n")
                n_sources += 1
            else:
                (directory / f"f{i}.dat").write_bytes(b"d")
    return n_sources


# --- churn -----------------------------------------------------------------------------------


class Churner:
    """A thread that rewrites (in place and by rename), truncates, deletes, recreates and swaps
    files for FIFOs as fast as it can.

    Afterwards `settle()` writes the final content of every file (some deleted for good), so
    the index must converge to exactly `final_markers()` / `gone_markers()`.
    """

    def __init__(self, root: Path, n_files: int = 40) -> None:
        self.root = root / "churn"
        self.root.mkdir(parents=True, exist_ok=True)
        self.n = n_files
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churner", daemon=True)
        self.errors: list[BaseException] = []
        for i in range(self.n):
            self._write(i, 0)

    def path(self, i: int) -> Path:
        return self.root / f"c{i:03d}.py"

    @staticmethod
    def marker(i: int, generation: int | str) -> str:
        return f"churn_{i}_gen_{generation}_qz"

    def _unfifo(self, path: Path) -> None:
        """Opening a FIFO for writing would block until a reader comes: remove it first."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                path.unlink()

    def _write(self, i: int, generation: int | str, atomic: bool = False) -> None:
        text = f"def {self.marker(i, generation)}():\n    return {i}\n" + "# pad\n" * (i % 7)
        path = self.path(i)
        self._unfifo(path)
        if atomic:  # how editors save: write a temp file, rename over
            tmp = path.with_name(f".{path.name}.tmp{generation}")
            tmp.write_text(text)
            os.replace(tmp, path)
        else:
            path.write_text(text)

    def _run(self) -> None:
        generation = 0
        try:
            while not self._stop.is_set():
                generation += 1
                for i in range(self.n):
                    op = (i + generation) % 5
                    path = self.path(i)
                    if op == 0:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    elif op == 1:
                        self._write(i, generation, atomic=True)
                    elif op == 2:
                        self._unfifo(path)
                        with open(path, "w") as handle:  # truncate, then write in two steps
                            handle.write("def half")
                            handle.flush()
                            handle.write(f"_{self.marker(i, generation)}():\n    pass\n")
                    elif op == 3 and generation % 3 == 0:
                        # Swapped for a FIFO: a reader that opens it without O_NONBLOCK hangs.
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                        os.mkfifo(path)
                    else:
                        self._write(i, generation)
                self.rounds = generation
                time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)

    def start(self) -> Churner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def settle(self) -> None:
        """Final state: files with i % 4 == 0 deleted, the others hold generation 'final'."""
        for i in range(self.n):
            if i % 4 == 0:
                with contextlib.suppress(FileNotFoundError):
                    self.path(i).unlink()
            else:
                self._write(i, "final")
        for leftover in self.root.glob(".*.tmp*"):
            leftover.unlink()

    def final_markers(self) -> dict[str, str]:
        return {f"churn/c{i:03d}.py": self.marker(i, "final") for i in range(self.n) if i % 4 != 0}

    def deleted_paths(self) -> list[str]:
        return [f"churn/c{i:03d}.py" for i in range(self.n) if i % 4 == 0]


@contextlib.contextmanager
def churning(root: Path, n_files: int = 40) -> Iterator[Churner]:
    churner = Churner(root, n_files).start()
    try:
        yield churner
    finally:
        churner.stop()
