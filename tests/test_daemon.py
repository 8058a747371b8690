"""The real daemon as a subprocess, driven through its real Unix socket and the real client."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from codectx_client import protocol as p
from codectx_client.connection import RemoteError
from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess

REPO = {
    "src/billing.py": (
        "def compute_invoice_total(lines, tax_rate):\n"
        '    """Sum line amounts and add tax."""\n'
        "    subtotal = sum(l.amount for l in lines)\n    return subtotal * (1 + tax_rate)\n"
    ),
    "src/mailer.ts": (
        "export async function sendWelcomeEmail(user: User): Promise<void> {\n"
        "  await smtp.send({ to: user.email, subject: 'Welcome!' });\n}\n"
    ),
    "lib/geometry.rs": (
        "pub fn circle_area(radius: f64) -> f64 {\n    std::f64::consts::PI * radius * radius\n}\n"
    ),
    ".env": "SECRET_TOKEN=hunter2\n",
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cxd", dir="/tmp"))
    proc = DaemonProcess(base).start()
    yield proc
    proc.stop()


@pytest.fixture
def repo(daemon: DaemonProcess, request: pytest.FixtureRequest) -> Path:
    root = daemon.base / f"repo_{request.node.name[:40]}"
    write_tree(root, REPO)
    daemon.call("add", {"path": str(root)})
    daemon.wait_ready(root)
    return root


def raw_exchange(sock_path: Path, payload: bytes, read: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(payload)
        if not read:
            return b""
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
            if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
                return data


def decode_frame(data: bytes) -> dict:
    (length,) = struct.unpack(">I", data[:4])
    return msgspec.msgpack.decode(data[4 : 4 + length])


def test_socket_permissions_and_ping(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.runtime_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    pong = daemon.call("ping")
    assert pong["protocol"] == p.PROTOCOL_VERSION and pong["pid"] == daemon.proc.pid


def test_add_search_json_contract(daemon: DaemonProcess, repo: Path) -> None:
    out = daemon.client("search", "add tax to the invoice amount", "--repo", str(repo), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"results", "fresh", "pending", "embedded"}
    assert doc["fresh"] is True and doc["pending"] == 0 and doc["embedded"] == {str(repo): 1.0}
    first = doc["results"][0]
    assert set(first) == {
        "repo",
        "path",
        "start_line",
        "end_line",
        "symbol",
        "language",
        "score",
        "content",
        "file_kind",
    }
    assert first["file_kind"] == "code"
    assert first["path"] == "src/billing.py" and first["symbol"] == "compute_invoice_total"
    assert first["repo"] == str(repo) and first["start_line"] == 1
    # Secrets are never indexed.
    secret = daemon.call(
        "search", {"query": "SECRET_TOKEN hunter2", "repos": [str(repo)], "mode": "lexical"}
    )
    assert all(r["path"] != ".env" for r in secret["results"])
    human = daemon.client("search", "area of a circle", cwd=repo)
    assert human.returncode == 0 and "lib/geometry.rs:1-3  circle_area" in human.stdout


def test_read_your_writes(daemon: DaemonProcess, repo: Path) -> None:
    target = repo / "src" / "billing.py"
    target.write_text(
        'def refund_payment(payment):\n    """Give the customer their money back."""\n'
        "    return gateway.reverse(payment.id)\n"
    )
    result = daemon.call(
        "search",
        {
            "query": "give the customer their money back",
            "repos": [str(repo)],
            "limit": 3,
            "wait_s": 20,
            "wait_paths": [str(target)],
        },
    )
    hit = result["results"][0]
    assert hit["path"] == "src/billing.py" and hit["symbol"] == "refund_payment"
    old = daemon.call(
        "search", {"query": "compute_invoice_total", "repos": [str(repo)], "mode": "lexical"}
    )
    assert all("compute_invoice_total" not in r["content"] for r in old["results"])
    # Deleting is read-your-writes too.
    target.unlink()
    result = daemon.call(
        "search",
        {
            "query": "refund payment",
            "repos": [str(repo)],
            "wait_s": 20,
            "wait_paths": [str(target)],
        },
    )
    assert all(r["path"] != "src/billing.py" for r in result["results"])


def test_watcher_picks_up_changes_without_wait(daemon: DaemonProcess, repo: Path) -> None:
    (repo / "pkg" / "deep").mkdir(parents=True)
    (repo / "pkg" / "deep" / "tokens.go").write_text(
        'package deep\n\nfunc RotateAccessToken(old string) string {\n\treturn old + "x"\n}\n'
    )
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline and not found:
        result = daemon.call(
            "search", {"query": "RotateAccessToken", "repos": [str(repo)], "mode": "lexical"}
        )
        found = [r for r in result["results"] if r["path"] == "pkg/deep/tokens.go"]
        time.sleep(0.1)
    assert found, daemon.log_text()


def test_status_reports_skips_and_settings(daemon: DaemonProcess, repo: Path) -> None:
    (repo / "blob.py").write_bytes(b"\x00\x01binary")
    daemon.call(
        "search",
        {"query": "x", "repos": [str(repo)], "wait_s": 20, "wait_paths": [str(repo / "blob.py")]},
    )
    status = daemon.call("status", {"repo": str(repo)})
    item = status["repos"][0]
    assert item["skipped"].get("secret") == 1 and item["skipped"].get("binary") == 1
    reasons = {pr["path"]: pr["reason"] for pr in item["problems"]}
    assert reasons["blob.py"] == "binary" and reasons[".env"] == "secret"
    d = status["daemon"]
    assert d["provider"] == "local" and d["dimension"] == 384
    assert d["memory"]["budget_mb"] > 0 and d["metrics"]["search_ms"]["count"] > 0
    assert "api_key" in d["settings"]["embedding"]
    human = daemon.client("status")
    assert human.returncode == 0 and str(repo) in human.stdout and "binary 1" in human.stdout


def test_bad_requests_keep_the_daemon_alive(daemon: DaemonProcess) -> None:
    sock = daemon.socket
    # Not msgpack at all: error reply, same connection still usable.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        garbage = b"\xc1\xc1\xc1"
        s.sendall(struct.pack(">I", len(garbage)) + garbage)
        reply = decode_frame(s.recv(65536))
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
        s.sendall(p.request("ping", id=7))
        reply = decode_frame(s.recv(65536))
        assert reply["ok"] is True and reply["id"] == 7
    # Unknown method, wrong types, wrong version: error replies that carry the id.
    reply = decode_frame(raw_exchange(sock, p.request("frobnicate", id=3)))
    assert (reply["id"], reply["error"]["code"]) == (3, "unknown_method")
    reply = decode_frame(raw_exchange(sock, p.request("search", {"query": 5}, id=4)))
    assert reply["error"]["code"] == "bad_request" and "query" in reply["error"]["message"]
    reply = decode_frame(raw_exchange(sock, p.encode({"v": 99, "id": 5, "method": "ping"})))
    assert reply["error"]["code"] == "version_mismatch"
    # Lua-style numbers (floats) and an empty array for params are accepted.
    reply = decode_frame(
        raw_exchange(sock, p.encode({"v": 1.0, "id": 6, "method": "list", "params": []}))
    )
    assert reply["ok"] is True
    # Oversized frame: error reply, then the connection is closed.
    reply = decode_frame(raw_exchange(sock, struct.pack(">I", p.MAX_FRAME_BYTES + 1)))
    assert reply["error"]["code"] == "frame_too_large"
    # Truncated frame, then hang up.
    raw_exchange(sock, struct.pack(">I", 1000) + b"\x80" * 10, read=False)
    # A client error surfaces as RemoteError with the stable code.
    with pytest.raises(RemoteError) as info:
        daemon.call("search", {"query": "x", "repos": ["/definitely/not/registered"]})
    assert info.value.code == "not_found"
    with pytest.raises(RemoteError) as info:
        daemon.call("add", {"path": "/"})
    assert info.value.code == "bad_request" and "system" in str(info.value)
    assert daemon.call("ping")["pid"] == daemon.proc.pid


def test_concurrent_clients(daemon: DaemonProcess, repo: Path) -> None:
    errors: list[BaseException] = []
    latencies: list[float] = []

    def worker() -> None:
        try:
            with daemon.connect() as conn:
                for _ in range(5):
                    started = time.perf_counter()
                    result = conn.call("search", {"query": "circle area", "repos": [str(repo)]})
                    latencies.append(time.perf_counter() - started)
                    assert result["results"]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(latencies) == 250


def test_subscribe_streams_progress(daemon: DaemonProcess) -> None:
    root = daemon.base / "repo_subscribe"
    write_tree(root, {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(30)})
    events: list[dict] = []
    with daemon.connect() as conn:
        stream = conn.subscribe({})
        daemon.call("add", {"path": str(root)})
        conn.sock.settimeout(60)
        for message in stream:
            events.append(message)
            if message["event"] == "synced" and message["data"]["repo"] == str(root):
                break
    typed = [p.typed_event(e) for e in events]  # every frame matches its Event type
    assert all(t.id == events[0]["id"] for t in typed)
    kinds = {e["event"] for e in events}
    assert {"progress", "state", "synced"} <= kinds
    synced = next(e for e in events if e["event"] == "synced")
    assert synced["data"]["indexed"] == 30
    assert daemon.call("ping")  # the closed subscription did not hurt the daemon


def test_client_cli_commands(daemon: DaemonProcess, repo: Path) -> None:
    listed = json.loads(daemon.client("list", "--json").stdout)
    assert str(repo) in [r["root"] for r in listed["repos"]]
    out = daemon.client("reindex", "--repo", str(repo))
    assert out.returncode == 0 and f"reindexing {repo}" in out.stdout
    daemon.wait_fresh(repo)
    out = daemon.client("clear")
    assert out.returncode == 2 and "--repo" in out.stderr
    out = daemon.client("remove", str(repo))
    assert out.returncode == 0 and "removed" in out.stdout
    listed = json.loads(daemon.client("list", "--json").stdout)
    assert str(repo) not in [r["root"] for r in listed["repos"]]
    out = daemon.client("search", "x", "--repo", str(repo))
    assert out.returncode == 1 and "not_found" in out.stderr


def test_second_daemon_refuses(daemon: DaemonProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "codectxd", "start"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"already running (pid {daemon.proc.pid}" in out.stderr
    assert daemon.call("ping")["pid"] == daemon.proc.pid  # the socket was not stolen


def test_client_without_daemon(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp)
    out = proc.client("search", "anything")
    assert out.returncode == 3
    assert "not running" in out.stderr and "codectxd start" in out.stderr


def test_restart_processes_exactly_what_changed(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(root, {f"pkg/m{i}.py": f"def func_{i}(x):\n    return x + {i}\n" for i in range(20)})
    proc = DaemonProcess(short_tmp).start()
    try:
        proc.call("add", {"path": str(root)})
        proc.wait_fresh(root)
        embedded = proc.call("status")["daemon"]["embedding"]["texts_embedded"]
        assert embedded == 20
        started = time.monotonic()
        assert proc.stop() == 0
        assert time.monotonic() - started < 5
        assert not proc.socket.exists()
    finally:
        proc.kill()
    (root / "pkg/m1.py").write_text("def func_1(x):\n    return x * 100\n")
    (root / "pkg/m2.py").unlink()
    (root / "pkg/new.py").write_text("def brand_new():\n    return 'new'\n")
    os.utime(root / "pkg/m3.py", ns=(time.time_ns(), time.time_ns()))  # touched, same content
    proc = DaemonProcess(short_tmp).start()
    try:
        info = proc.wait_fresh(root)
        report = info["last_report"]["full"]
        assert report["files_read"] == 3  # m1, new, m3 (hashed, unchanged)
        assert (report["indexed"], report["removed"], report["unchanged"]) == (2, 1, 18)
        assert proc.call("status")["daemon"]["embedding"]["texts_embedded"] == 2
        assert info["files_indexed"] == 20
    finally:
        proc.stop()


@pytest.mark.skipif(not os.path.exists("/usr/bin/git"), reason="git not installed")
def test_branch_switch_converges_and_switching_back_embeds_nothing(short_tmp: Path) -> None:
    root = short_tmp / "repo"
    write_tree(
        root,
        {
            f"src/mod{i}.py": f"def handler_{i}(event):\n    return event.id + {i}\n"
            for i in range(150)
        },
    )

    def git(*args: str) -> None:
        subprocess.run(
            ["git", *args],
            cwd=root,
            check=True,
            capture_output=True,
            env={
                **os.environ,
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t",
            },
        )

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "base")
    git("checkout", "-q", "-b", "feature")
    for i in range(0, 150, 2):
        (root / f"src/mod{i}.py").write_text(f"def feature_handler_{i}(event):\n    return {i}\n")
    for i in range(1, 40, 2):
        (root / f"src/mod{i}.py").unlink()
    write_tree(
        root, {f"src/extra/e{i}.py": f"def extra_{i}():\n    return {i}\n" for i in range(30)}
    )
    git("add", "-A")
    git("commit", "-qm", "feature")
    git("checkout", "-q", "main")
    proc = DaemonProcess(short_tmp).start()
    try:
        proc.call("add", {"path": str(root)})
        proc.wait_fresh(root)
        git("checkout", "-q", "feature")
        time.sleep(0.5)
        info = proc.wait_fresh(root)
        assert info["files_indexed"] == 150 - 20 + 30
        hits = proc.call(
            "search", {"query": "feature_handler_10", "mode": "lexical", "repos": [str(root)]}
        )["results"]
        assert hits and hits[0]["path"] == "src/mod10.py"
        embedded = proc.call("status")["daemon"]["embedding"]["texts_embedded"]
        git("checkout", "-q", "main")
        time.sleep(0.5)
        info = proc.wait_fresh(root)
        assert info["files_indexed"] == 150
        assert proc.call("status")["daemon"]["embedding"]["texts_embedded"] == embedded
        rows = proc.call(
            "search", {"query": "feature_handler_10", "mode": "lexical", "repos": [str(root)]}
        )["results"]
        assert all("feature_handler" not in r["content"] for r in rows)
    finally:
        proc.stop()


def test_sigint_and_state_file(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp).start()
    state = json.loads((proc.runtime_dir / "codectxd.json").read_text())
    assert state["pid"] == proc.proc.pid and state["socket"] == str(proc.socket)
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(20) == 0
    assert not (proc.runtime_dir / "codectxd.json").exists()
    assert "shutting down" in proc.log_text()


def test_refuses_unsafe_runtime_dir(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp)
    proc.runtime_dir.mkdir(mode=0o777)
    os.chmod(proc.runtime_dir, 0o777)
    out = subprocess.run(
        [sys.executable, "-m", "codectxd", "start"],
        env=proc.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "chmod 700" in out.stderr


def test_client_imports_stay_light() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import codectx_client.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {
        line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line
    }
    for heavy in (
        "codectxd",
        "pymilvus",
        "numpy",
        "anyio",
        "asyncio",
        "onnxruntime",
        "tree_sitter",
        "watchfiles",
        "psutil",
    ):
        assert heavy not in modules, heavy


def test_polling_mode_picks_up_changes(short_tmp: Path) -> None:
    """With file events off (network file systems), periodic scans keep the index fresh."""
    root = short_tmp / "repo"
    write_tree(root, {"a.py": "def alpha():\n    return 1\n"})
    proc = DaemonProcess(short_tmp, CODECTX_WATCH="poll", CODECTX_POLL_INTERVAL_S="1").start()
    try:
        proc.call("add", {"path": str(root)})
        info = proc.wait_fresh(root)
        assert info["watching"] == "polling"
        (root / "b.py").write_text("def bravo_polled():\n    return 2\n")
        deadline = time.monotonic() + 30
        hits: list = []
        while time.monotonic() < deadline and not hits:
            time.sleep(0.3)
            hits = proc.call("search", {"query": "bravo_polled", "mode": "lexical"})["results"]
        assert hits and hits[0]["path"] == "b.py"
        assert "polling" in proc.client("status").stdout
    finally:
        proc.stop()


def test_install_service_writes_the_unit(short_tmp: Path) -> None:
    env = {**DaemonProcess(short_tmp).env, "HOME": str(short_tmp)}
    out = subprocess.run(
        [sys.executable, "-m", "codectxd", "install-service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    unit = short_tmp / ".config/systemd/user/codectxd.service"
    text = unit.read_text()
    assert "ExecStart=" in text and "@CODECTXD@" not in text and " start" in text
    assert "systemctl --user enable --now codectxd" in out.stdout
    shipped = (Path(__file__).parent.parent / "systemd/codectxd.service").read_text()
    assert text.replace(text.split("ExecStart=")[1].split("\n")[0], "@CODECTXD@ start") == shipped
