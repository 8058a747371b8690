import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from codectxd.config import ScanSettings
from codectxd.ignore import IgnoreRules, is_secret_name
from codectxd.scanner import FileEntry, Scanner, Skipped
from tests.conftest import write_tree


def scan(root: Path, **kw):  # type: ignore[no-untyped-def]
    return Scanner(root, ScanSettings(**kw)).scan()


def test_nested_gitignore_deepest_rule_wins(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".gitignore": "*.txt\nsecret_dir/\ngen_*.py\n",
            "a.py": "x=1",
            "a.txt": "log",
            "pkg/.gitignore": "!keep.txt\n*.tmp.py\n",
            "pkg/keep.txt": "kept",
            "pkg/b.py": "b=1",
            "pkg/c.tmp.py": "c",
            "pkg/deeper/.gitignore": "!c2.tmp.py\n",
            "pkg/deeper/c2.tmp.py": "c2",
            "pkg/deeper/gen_x.py": "g",
            "secret_dir/s.py": "s",
            ".codectxignore": "pkg/b.py\n",
            "node_modules/lib/index.js": "x",
            "build/out.py": "o",
        },
    )
    result = scan(tmp_path)
    paths = [f.path for f in result.files]
    assert paths == ["a.py", "pkg/deeper/c2.tmp.py", "pkg/keep.txt"]


def test_ignore_file_added_after_a_scan_applies_once_invalidated(tmp_path: Path) -> None:
    # The scan remembers which directories have no ignore file (it saw their listing): one
    # created later counts once the watcher's path invalidates that directory.
    write_tree(tmp_path, {"pkg/a.py": "a = 1", "pkg/b.py": "b = 1"})
    scanner = Scanner(tmp_path, ScanSettings())
    assert [f.path for f in scanner.scan().files] == ["pkg/a.py", "pkg/b.py"]
    (tmp_path / "pkg" / ".gitignore").write_text("b.py\n")
    scanner.rules.invalidate("pkg")
    assert [f.path for f in scanner.scan().files] == ["pkg/a.py"]
    (tmp_path / "pkg" / ".gitignore").unlink()
    scanner.rules.invalidate("pkg")
    assert [f.path for f in scanner.scan().files] == ["pkg/a.py", "pkg/b.py"]


def test_ignore_files_themselves_are_not_source(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "*.log\n", "a.py": "x"})
    result = scan(tmp_path)
    assert [f.path for f in result.files] == ["a.py"]
    assert [(s.path, s.reason) for s in result.skipped] == [(".gitignore", "unsupported")]


def test_repo_can_reinclude_a_default_ignored_dir(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "!build/\n", "build/gen.py": "x", "dist/d.py": "y"})
    assert [f.path for f in scan(tmp_path).files] == ["build/gen.py"]


def test_info_exclude_and_user_patterns(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".git/info/exclude": "local_*.py\n",
            "local_a.py": "a",
            "b.py": "b",
            "c.gen.go": "package c",
            "d.go": "package d",
        },
    )
    result = Scanner(tmp_path, ScanSettings(ignore=("*.gen.go",))).scan()
    assert [f.path for f in result.files] == ["b.py", "d.go"]


def test_secrets_sizes_and_kinds(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".env": "KEY=1",
            ".env.local": "KEY=2",
            "config/id_rsa": "-----BEGIN",
            "certs/server.key": "k",
            "certs/ca.pem": "p",
            "ok.py": "print(1)",
            "big.py": "x" * 5000,
            "image.png": b"\x89PNG",
            "data.bin": b"\x00\x01",
        },
    )
    os.mkfifo(tmp_path / "pipe.py")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.py"))
    try:
        result = scan(tmp_path, max_file_bytes=4000)
    finally:
        sock.close()
    assert [f.path for f in result.files] == ["ok.py"]
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons[".env"] == reasons[".env.local"] == reasons["config/id_rsa"] == "secret"
    assert reasons["certs/server.key"] == reasons["certs/ca.pem"] == "secret"
    assert reasons["big.py"] == "too_large"
    assert reasons["pipe.py"] == reasons["s.py"] == "not_regular"
    assert reasons["image.png"] == "unsupported"


def test_secret_names() -> None:
    for name in (
        ".env",
        ".env.production",
        "id_ed25519",
        "id_rsa.pub",
        "tls.key",
        ".npmrc",
        "credentials.json",
        "prod.tfvars",
    ):
        assert is_secret_name(name), name
    for name in ("env.py", "keys.py", "environment.ts", "key_test.go", "monkey.py"):
        assert not is_secret_name(name), name


def test_symlinks_not_followed_by_default(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    repo = tmp_path / "repo"
    write_tree(outside, {"o.py": "o"})
    write_tree(repo, {"real/r.py": "r"})
    (repo / "link_out").symlink_to(outside)
    (repo / "link_in.py").symlink_to(repo / "real" / "r.py")
    (repo / "loop").symlink_to(repo)
    result = scan(repo)
    assert [f.path for f in result.files] == ["real/r.py"]
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {"link_out": "symlink_outside", "link_in.py": "symlink", "loop": "symlink"}
    followed = scan(repo, follow_symlinks=True)
    assert [f.path for f in followed.files] == ["link_in.py", "real/r.py"]
    followed_reasons = {s.path: s.reason for s in followed.skipped}
    assert followed_reasons["link_out"] == "symlink_outside"
    assert followed_reasons["loop"] == "symlink_loop"


def test_follow_mode_link_reasons(tmp_path: Path) -> None:
    """Following links: file loops are `symlink_loop`, a dangling link is `unreadable`."""
    write_tree(tmp_path, {"real.py": "r"})
    os.symlink("loop_b.py", tmp_path / "loop_a.py")
    os.symlink("loop_a.py", tmp_path / "loop_b.py")
    os.symlink("self.py", tmp_path / "self.py")
    os.symlink("does/not/exist.py", tmp_path / "dangling.py")
    scanner = Scanner(tmp_path, ScanSettings(follow_symlinks=True))
    expected = {
        "loop_a.py": "symlink_loop",
        "loop_b.py": "symlink_loop",
        "self.py": "symlink_loop",
        "dangling.py": "unreadable",
    }
    assert {s.path: s.reason for s in scanner.scan().skipped} == expected
    for rel, reason in expected.items():  # the watcher's single-path check agrees
        found = scanner.check_file(rel)
        assert isinstance(found, Skipped) and found.reason == reason, rel


def test_paths_through_a_symlinked_parent_are_refused(tmp_path: Path) -> None:
    """A directory replaced by a link after the scan: its queued paths are never read through
    it (the watcher reports `sub/mod.py` while `sub` already points elsewhere)."""
    outside = tmp_path / "outside"
    repo = tmp_path / "repo"
    write_tree(outside, {"mod.py": "o", "pkg/p.py": "p"})
    write_tree(repo, {"real/r.py": "r", "sub/mod.py": "s"})
    os.rename(repo / "sub", repo / "sub_old")
    os.symlink(str(outside), repo / "sub")
    os.symlink("real", repo / "alias")
    scanner = Scanner(repo, ScanSettings())
    for rel, reason in (
        ("sub/mod.py", "symlink_outside"),
        ("sub/pkg/p.py", "symlink_outside"),
        ("alias/r.py", "symlink"),
    ):
        found = scanner.check_file(rel)
        assert isinstance(found, Skipped) and found.reason == reason, (rel, found)
    sub = scanner.scan("sub/pkg")
    assert not sub.files and [(s.path, s.reason) for s in sub.skipped] == [
        ("sub/pkg", "symlink_outside")
    ]
    assert [(s.path, s.reason) for s in scanner.scan("alias").skipped] == [("alias", "symlink")]
    # Following links: inside the repository is fine, outside never.
    follow = Scanner(repo, ScanSettings(follow_symlinks=True))
    assert isinstance(follow.check_file("alias/r.py"), FileEntry)
    assert [f.path for f in follow.scan("alias").files] == ["alias/r.py"]
    found = follow.check_file("sub/mod.py")
    assert isinstance(found, Skipped) and found.reason == "symlink_outside"


def test_odd_names(tmp_path: Path) -> None:
    write_tree(tmp_path, {"ok.py": "x", "sp ace.py": "y", "ünï.py": "z"})
    (tmp_path / "new\nline.py").write_text("n")
    os.close(os.open(os.fsencode(tmp_path) + b"/bad\xff.py", os.O_CREAT | os.O_WRONLY))
    result = scan(tmp_path)
    assert [f.path for f in result.files] == ["ok.py", "sp ace.py", "ünï.py"]
    assert sorted(s.reason for s in result.skipped) == ["bad_path", "bad_path"]


def test_unreadable_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    write_tree(tmp_path, {"locked/a.py": "a", "b.py": "b"})
    (tmp_path / "locked").chmod(0)
    try:
        result = scan(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert [f.path for f in result.files] == ["b.py"]
    assert {s.path: s.reason for s in result.skipped} == {"locked": "unreadable"}


def test_ignore_check_then_check_file_matches_scan(tmp_path: Path) -> None:
    """A watcher path is checked against the ignore rules once (`RepoIndexer.relevant`), then
    classified by `check_file`; together they say what a scan says."""
    write_tree(
        tmp_path,
        {
            ".gitignore": "out/\n",
            "a.py": "a",
            "out/b.py": "b",
            ".env": "x",
            "node_modules/m.js": "m",
        },
    )
    scanner = Scanner(tmp_path, ScanSettings())
    names = ["a.py", "out/b.py", "node_modules/m.js", ".env", "missing.py"]
    assert [n for n in names if scanner.rules.is_ignored(n)] == ["out/b.py", "node_modules/m.js"]
    assert isinstance(scanner.check_file("a.py"), FileEntry)
    assert scanner.check_file("missing.py") is None
    skipped = scanner.check_file(".env")
    assert isinstance(skipped, Skipped) and skipped.reason == "secret"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_matches_git_check_ignore(tmp_path: Path) -> None:
    """Our nested-ignore decision equals git's on a tree with tricky rules."""
    files = {
        ".gitignore": "*.o\n/root_only.txt\ndocs/**/draft*\n!docs/keep/draft_ok.md\nlogs/\n",
        "root_only.txt": "",
        "sub/root_only.txt": "",
        "a.o": "",
        "sub/b.o": "",
        "docs/x/draft1.md": "",
        "docs/keep/draft_ok.md": "",
        "docs/keep/draft_no.md": "",
        "logs/today.txt": "",
        "sub/logs/x.txt": "",
        "sub/.gitignore": "!b.o\n*.txt\n!important.txt\n",
        "sub/important.txt": "",
        "sub/other.txt": "",
        "sub/deep/.gitignore": "other.md\n",
        "sub/deep/other.md": "",
        "sub/deep/fine.md": "",
        "weird [x].md": "",
        "space dir/file.md": "",
        "#hash.md": "",
    }
    write_tree(tmp_path, files)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=tmp_path,
        input="\0".join(files),
        capture_output=True,
        text=True,
    ).stdout
    git_ignored = {p for p in out.split("\0") if p}
    rules = IgnoreRules(tmp_path)
    ours = {p for p in files if rules.is_ignored(p)}
    assert ours == git_ignored


def test_file_kinds_from_path_size_attributes_and_header(tmp_path: Path) -> None:
    from codectxd.kinds import generated_header, kind_of_path

    assert kind_of_path("src/app.py", 100, "python") == "code"
    assert kind_of_path("tests/unit/helpers.py", 100, "python") == "test"
    assert kind_of_path("pkg/parser_test.go", 100, "go") == "test"
    assert kind_of_path("web/cart.spec.ts", 100, "typescript") == "test"
    assert kind_of_path("conftest.py", 100, "python") == "test"
    assert kind_of_path("README.md", 100, "markdown") == "doc"
    assert kind_of_path("fixtures/big.json", 50_000, "json") == "data"
    assert kind_of_path("config/small.json", 300, "json") == "code"  # configuration
    assert kind_of_path("bench/results/run.json", 3_000, "json") == "data"  # small, but results
    assert kind_of_path("tests/fixtures/user.yaml", 200, "yaml") == "data"
    assert kind_of_path("data/loader.py", 200, "python") == "code"
    assert kind_of_path("frontend/package.json", 50_000, "json") == "code"
    assert kind_of_path("table.csv", 10, "csv") == "data"
    assert generated_header("// Code generated by stringer; DO NOT EDIT.\npackage x\n")
    assert generated_header('"""@generated by a tool"""\n')
    assert not generated_header("# ids generated by the server are unique\nx = 1\n")
    write_tree(
        tmp_path,
        {
            ".gitattributes": "gen/** linguist-generated\nthird/** linguist-vendored=true\n",
            "gen/a.py": "a = 1\n",
            "third/b.py": "b = 1\n",
            "src/c.py": "c = 1\n",
            # A later line overrides an earlier one; a deeper file overrides the root's.
            "sub/.gitattributes": "*.py linguist-generated\nkeep.py -linguist-generated\n",
            "sub/keep.py": "k = 1\n",
            "sub/made.py": "m = 1\n",
        },
    )
    kinds = {f.path: f.kind for f in scan(tmp_path).files}
    assert kinds == {
        "gen/a.py": "generated",
        "third/b.py": "generated",
        "src/c.py": "code",
        "sub/keep.py": "code",
        "sub/made.py": "generated",
    }
