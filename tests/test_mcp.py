"""codectx-mcp driven by the official MCP Python client over stdio, against a real daemon."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_tree
from tests.daemon_harness import DaemonProcess

pytest.importorskip("mcp")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

REPO = {
    "api/auth.py": (
        "def issue_session_token(user_id, ttl_seconds=3600):\n"
        '    """Create a signed session token that expires."""\n'
        "    payload = {'uid': user_id, 'exp': now() + ttl_seconds}\n"
        "    return sign(payload)\n"
    ),
    "api/billing/invoice.py": (
        "def render_invoice_pdf(invoice):\n"
        '    """Produce the PDF document for an invoice."""\n'
        "    return pdf.render('invoice.html', invoice=invoice)\n"
    ),
    "web/app.ts": (
        "export function renderInvoiceList(invoices: Invoice[]): string {\n"
        "  return invoices.map((i) => `<li>${i.number}</li>`).join('');\n}\n"
    ),
}


@pytest.fixture(scope="module")
def daemon():  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="cxm", dir="/tmp"))
    proc = DaemonProcess(base).start()
    yield proc
    proc.stop()


def text_of(result: Any) -> str:
    assert not result.is_error, result.content
    return "\n".join(part.text for part in result.content if getattr(part, "type", "") == "text")


async def run_session(daemon: DaemonProcess, steps):  # type: ignore[no-untyped-def]
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "codectxd.mcp"], env=daemon.env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await steps(session)


@pytest.mark.anyio
async def test_tools_end_to_end(daemon: DaemonProcess) -> None:
    root = daemon.base / "repo"
    write_tree(root, REPO)

    async def steps(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"index_codebase", "search_code", "clear_index", "get_indexing_status",
                              "find_symbol", "find_referencing_symbols", "get_symbols_overview"}  # fmt: skip
        schema = tools["search_code"].input_schema
        assert {"path", "query", "limit", "extensionFilter"} <= set(schema["properties"])
        assert "absolute path" in tools["search_code"].description

        started = text_of(await session.call_tool("index_codebase", {"path": str(root)}))
        assert "Started indexing" in started
        daemon.wait_fresh(root)
        status = text_of(await session.call_tool("get_indexing_status", {"path": str(root)}))
        assert "ready" in status and "3 files" in status

        found = text_of(
            await session.call_tool(
                "search_code", {"path": str(root), "query": "create a signed token that expires"}
            )
        )
        assert "api/auth.py:1-4 — issue_session_token" in found
        assert "Index is up to date." in found

        # A subdirectory narrows the search; an extension filter too.
        sub = text_of(
            await session.call_tool(
                "search_code", {"path": str(root / "api" / "billing"), "query": "invoice"}
            )
        )
        assert "api/billing/invoice.py" in sub and "web/app.ts" not in sub
        ts_only = text_of(
            await session.call_tool(
                "search_code", {"path": str(root), "query": "invoice", "extensionFilter": [".ts"]}
            )
        )
        assert "web/app.ts" in ts_only and ".py" not in ts_only.split("```")[0]

        # Serena's symbol tools, answered from the parsed definitions and occurrences.
        symbol = text_of(await session.call_tool(
            "find_symbol", {"path": str(root), "name_path": "render_invoice_pdf"}))  # fmt: skip
        assert "api/billing/invoice.py:1-3 function render_invoice_pdf: def " in symbol, symbol
        fuzzy = text_of(await session.call_tool(
            "find_symbol", {"path": str(root), "name_path": "invoice", "substring_matching": True,
                            "include_kinds": ["function"]}))  # fmt: skip
        assert "render_invoice_pdf" in fuzzy and "renderInvoiceList" in fuzzy, fuzzy
        refs = text_of(await session.call_tool(
            "find_referencing_symbols", {"path": str(root), "name_path": "ttl_seconds"}))  # fmt: skip
        assert "api/auth.py:3 (in issue_session_token): payload = " in refs, refs
        overview = text_of(await session.call_tool(
            "get_symbols_overview", {"path": str(root), "relative_path": "web/app.ts"}))  # fmt: skip
        assert "1 function renderInvoiceList: export function renderInvoiceList(" in overview

        again = text_of(await session.call_tool("index_codebase", {"path": str(root)}))
        assert "already indexed" in again
        forced = text_of(
            await session.call_tool("index_codebase", {"path": str(root), "force": True})
        )
        assert "Re-indexing" in forced

        bad = await session.call_tool("search_code", {"path": "relative/path", "query": "x"})
        assert bad.is_error and "absolute" in str(bad.content)

        cleared = text_of(await session.call_tool("clear_index", {"path": str(root)}))
        assert "Cleared" in cleared
        status = text_of(await session.call_tool("get_indexing_status", {"path": str(root)}))
        assert "not indexed" in status

    await run_session(daemon, steps)


@pytest.mark.anyio
async def test_search_registers_unindexed_repo_and_two_sessions_share_one_index(
    daemon: DaemonProcess,
) -> None:
    root = daemon.base / "repo2"
    write_tree(root, {f"m{i}.py": f"def handler_{i}(event):\n    return {i}\n" for i in range(40)})

    async def first(session: ClientSession) -> str:
        return text_of(
            await session.call_tool("search_code", {"path": str(root), "query": "handler_7"})
        )

    async def second(session: ClientSession) -> str:
        return text_of(await session.call_tool("index_codebase", {"path": str(root)}))

    first_answer = await run_session(daemon, first)
    assert "Index not complete yet" in first_answer or "handler_7" in first_answer
    second_answer = await run_session(daemon, second)
    assert "already indexed" in second_answer  # the second session reuses the first's index
    daemon.wait_fresh(root)
    repos = [r for r in daemon.call("list")["repos"] if r["root"] == str(root)]
    assert len(repos) == 1 and repos[0]["files_indexed"] == 40
    embedded = daemon.call("status")["daemon"]["embedding"]["texts_embedded"]

    async def search_again(session: ClientSession) -> str:
        return text_of(
            await session.call_tool("search_code", {"path": str(root), "query": "handler_7"})
        )

    assert "m7.py" in await run_session(daemon, search_again)
    assert daemon.call("status")["daemon"]["embedding"]["texts_embedded"] == embedded
