"""Run the real daemon as a subprocess on private temp dirs, and talk to it over its socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from codectx_client import protocol
from codectx_client.connection import ClientError, Connection, connect


class DaemonProcess:
    def __init__(self, base: Path, **env: str) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.runtime_dir = base / "run"
        self.socket = self.runtime_dir / "codectxd.sock"
        self.log = base / "daemon.log"
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith(("CODECTX_", "EMBEDDING_", "MILVUS_", "CHUNK_", "SPLITTER_")):
                del self.env[key]
        self.env.update(
            CODECTX_DATA_DIR=str(self.data_dir),
            CODECTX_RUNTIME_DIR=str(self.runtime_dir),
            CODECTX_CONFIG=str(base / "config.toml"),
            CODECTX_EMBED_THREADS="1",
            CODECTX_LOG_LEVEL="debug",
            CODECTX_SOCKET=str(self.socket),
        )
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> DaemonProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "codectxd", "start"], env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                with self.connect() as conn:
                    conn.call("ping", timeout_s=5)
                    status = conn.call("status", timeout_s=30)
                if status["daemon"]["model"]:
                    return self
            except ClientError:
                time.sleep(0.1)
        raise RuntimeError(f"daemon did not answer in {timeout_s}s:\n{self.log_text()}")

    def connect(self) -> Connection:
        return connect(self.socket)

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 60.0
    ) -> Any:
        """One request; its result must match the method's result type (the protocol's)."""
        with self.connect() as conn:
            result = conn.call(method, params, timeout_s=timeout_s)
        protocol.typed_result(method, result)
        return result

    def wait_fresh(self, root: Path, timeout_s: float = 120.0) -> dict[str, Any]:
        """Until the repo has finished its first index and has nothing pending."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = next(r for r in self.call("list")["repos"] if r["root"] == str(root))
            if info["state"] == "ready" and info["files_pending"] == 0 and info["last_sync"]:
                result = self.call("search", {"query": "x", "repos": [str(root)], "limit": 1})
                if result["fresh"]:
                    return info
            time.sleep(0.1)
        raise TimeoutError(f"{root} not fresh after {timeout_s}s: {info}\n{self.log_text()}")

    def wait_ready(self, root: Path, timeout_s: float = 300.0) -> dict[str, Any]:
        """Until the repo is fresh and fully embedded too (both phases done)."""
        deadline = time.monotonic() + timeout_s
        info = self.wait_fresh(root, timeout_s)
        while not (info["state"] == "ready" and info["embedded"] == 1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{root} not embedded after {timeout_s}s: {info}")
            time.sleep(0.1)
            info = self.info(root)
        return self.wait_fresh(root, max(1.0, deadline - time.monotonic()))

    def info(self, root: Path) -> dict[str, Any]:
        return next(r for r in self.call("list")["repos"] if r["root"] == str(root))

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(
        self, *argv: str, cwd: Path | None = None, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `codectx-client` executable (as a user would)."""
        return subprocess.run(
            [sys.executable, "-m", "codectx_client", *argv],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
