"""The Neovim plugin (editors/nvim) in real headless Neovim against a real daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess

NVIM = shutil.which("nvim")
PLUGIN = Path(__file__).resolve().parent.parent / "editors" / "nvim"
DRIVER = Path(__file__).resolve().parent / "nvim" / "run_search.lua"

pytestmark = pytest.mark.skipif(NVIM is None, reason="neovim not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def daemon():  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="cxn", dir="/tmp"))
    proc = DaemonProcess(base).start()
    yield proc
    proc.stop()


def run_nvim(daemon: DaemonProcess, root: Path, query: str, command: str = "CodectxSearch") -> dict:
    out = daemon.base / f"nvim-{abs(hash((root, query, command)))}.json"
    env = {
        **daemon.env,
        "CODECTX_TEST_ROOT": str(root),
        "CODECTX_TEST_QUERY": query,
        "CODECTX_TEST_OUT": str(out),
        "CODECTX_TEST_COMMAND": command,
    }
    proc = subprocess.run(
        [
            NVIM,
            "--headless",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "--cmd",
            f"set rtp+={PLUGIN}",
            "--cmd",
            f"source {PLUGIN}/plugin/codectx.lua",
            "-c",
            f"luafile {DRIVER}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.exists(), f"nvim failed: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


def test_search_fills_quickfix(daemon: DaemonProcess) -> None:
    root = daemon.base / "repo"
    write_tree(
        root,
        {
            "README.md": "# Shop\n",
            ".git/HEAD": "ref: refs/heads/main\n",
            "src/shipping.py": (
                "def estimate_delivery_days(distance_km, express=False):\n"
                '    """How long a parcel takes to arrive."""\n'
                "    days = distance_km // 500 + 1\n    return max(1, days - 1) if express else days\n"
            ),
            "src/tax.go": "package tax\n\nfunc VatRate(country string) float64 {\n\treturn 0.2\n}\n",
        },
    )
    daemon.call("add", {"path": str(root)})
    daemon.wait_fresh(root)
    result = run_nvim(daemon, root, "how long does delivery of a parcel take")
    assert result["title"] == "codectx: how long does delivery of a parcel take"
    first = result["qf"][0]
    assert first["file"].endswith("src/shipping.py")
    assert first["lnum"] == 1 and first["end_lnum"] == 4
    assert first["text"].startswith("estimate_delivery_days: def estimate_delivery_days")
    assert any("results" in m for m in result["messages"])
    assert any("ready" in m and "files" in m for m in result["messages"])
    symbol = run_nvim(daemon, root, "VatRate", "CodectxSymbol")
    assert symbol["title"] == "codectx: definitions of VatRate"
    assert [(q["file"].endswith("src/tax.go"), q["lnum"]) for q in symbol["qf"]] == [(True, 3)]
    assert symbol["qf"][0]["text"] == "function VatRate: func VatRate(country string) float64 {"
    refs = run_nvim(daemon, root, "distance_km", "CodectxRefs")
    assert refs["title"] == "codectx: references to distance_km"
    assert [q["lnum"] for q in refs["qf"]] == [1, 3]
    assert refs["qf"][1]["text"] == "days = distance_km // 500 + 1 [estimate_delivery_days]"


def test_unregistered_repo_is_added_on_demand(daemon: DaemonProcess) -> None:
    root = daemon.base / "fresh"
    write_tree(
        root,
        {
            "README.md": "# x\n",
            ".git/HEAD": "ref\n",
            "lib/util.lua": "local function trim_whitespace(s)\n  return s\nend\n",
        },
    )
    result = run_nvim(daemon, root, "trim_whitespace")
    roots = [r["root"] for r in daemon.call("list")["repos"]]
    assert str(root) in roots  # registered by the plugin
    daemon.wait_fresh(root)
    result = run_nvim(daemon, root, "trim_whitespace")
    assert result["qf"] and result["qf"][0]["file"].endswith("lib/util.lua")
