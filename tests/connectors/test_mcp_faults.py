"""Servers that break the protocol, hang, crash or never start: each call fails with a clear
ConnectorError in bounded time, the worker goes on, and the supervisor restarts the server."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_support import connector, free_port, stop, wait_for_port
from mcp_test_servers import BROKEN_HTTP_SERVER

from shopfloor.connectors import Connectors, McpConnector
from shopfloor.errors import ConnectorError, ToolError
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import Tool, ToolContext

CTX = ToolContext(run_id="run-1", step=1, call_id="c1", idempotency_key="run-1:1")


def broken(script: Path, fault: str, timeout: float = 20.0) -> ConnectorSpec:
    return connector(name="bad", mcp={"command": [sys.executable, str(script), fault]}, timeout=timeout)


async def act(pool: Connectors, spec: ConnectorSpec) -> Tool:
    tools = {tool.name: tool for tool in await pool.tools([spec])}
    return tools["bad__act"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "garbage",
            r"bad: tool act: failed, the server wrote something that is not a JSON-RPC message: "
            r"'this is not json at all'",
        ),
        ("oversized", r"bad: tool act: failed, the server sent a message over 4194304 bytes"),
        (
            "exit",
            r"bad: tool act: failed, the server exited with code 5; its stderr ended with: fatal: giving up",
        ),
        ("unknown", r"bad: tool act: the server answered error -32601: Method not found"),
        ("badresult", r"bad: tool act: the server's answer is not a valid MCP result"),
    ],
)
async def test_protocol_faults_fail_the_call_clearly(
    pool: Connectors, broken_script: Path, fault: str, message: str
) -> None:
    tool = await act(pool, broken(broken_script, fault))
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=message) as caught:
        await tool.call({}, CTX)
    assert isinstance(caught.value, ToolError)
    assert time.monotonic() - started < 10


async def test_a_crashed_server_is_restarted_for_the_next_call(pool: Connectors, broken_script: Path) -> None:
    spec = broken(broken_script, "exit")
    tool = await act(pool, spec)
    supervisor = pool.connector(spec)
    assert isinstance(supervisor, McpConnector)
    first_pid = supervisor.supervisor.pid
    with pytest.raises(ConnectorError, match="exited with code 5"):
        await tool.call({}, CTX)
    # The supervisor brings up a fresh process (after its backoff); listing tools works again.
    tools = await pool.tools([spec])
    assert [t.name for t in tools] == ["bad__act"]
    assert supervisor.supervisor.starts == 2
    assert supervisor.supervisor.pid not in (None, first_pid)


async def test_a_hung_server_times_out_and_is_replaced(pool: Connectors, broken_script: Path) -> None:
    spec = broken(broken_script, "hang", timeout=1.5)
    tool = await act(pool, spec)
    mcp = pool.connector(spec)
    assert isinstance(mcp, McpConnector)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=r"bad: tool act: no answer within 1.5 s"):
        await tool.call({}, CTX)
    assert time.monotonic() - started < 6
    # The ping after the timeout found the server hung: a new process serves the next listing.
    await mcp.supervisor.session(10)
    await pool.tools([spec])
    assert mcp.supervisor.starts == 2


async def test_a_server_that_cannot_start_fails_each_call_quickly(
    pool: Connectors, broken_script: Path
) -> None:
    spec = broken(broken_script, "die-at-start")
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=r"exited with code 7.*cannot start: missing configuration"):
        await pool.tools([spec])
    assert time.monotonic() - started < 10


async def test_tools_with_invalid_or_huge_schemas_are_left_out(
    pool: Connectors, broken_script: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tools = await pool.tools([broken(broken_script, "badschema")])
    assert [tool.name for tool in tools] == ["bad__act"]
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "'invalid' left out: its input schema is invalid" in logged
    assert "'huge' left out: its input schema has" in logged


async def test_a_flood_of_stderr_reaches_the_log_bounded(
    pool: Connectors, broken_script: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.connectors")
    tool = await act(pool, broken(broken_script, "noisy"))
    assert await tool.call({}, CTX) == "fine"
    await asyncio.sleep(0.5)  # the stderr reader catches up
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stderr: noise line")]
    assert len(lines) == 1000 and lines[0] == "stderr: noise line 0"
    assert any("more than 1000 lines" in r.getMessage() for r in caplog.records)


async def test_a_server_that_pages_forever_is_cut_off(pool: Connectors, broken_script: Path) -> None:
    started = time.monotonic()
    assert await pool.tools([broken(broken_script, "pages")]) == []
    assert time.monotonic() - started < 10


async def test_restarts_back_off(
    pool: Connectors, broken_script: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shopfloor.connectors")
    with pytest.raises(ConnectorError):
        await pool.tools([broken(broken_script, "die-at-start")])
    await asyncio.sleep(2.0)
    attempts = [r for r in caplog.records if r.getMessage().startswith("MCP server bad stopped")]
    # 0.2 s doubling: starts at about 0, 0.2, 0.6, 1.4 s (each start takes a little too), never a busy loop
    assert 2 <= len(attempts) <= 5, len(attempts)


async def test_a_missing_command_names_it(pool: Connectors) -> None:
    spec = connector(name="bad", mcp={"command": ["/nonexistent/mcp-server"]}, timeout=5)
    with pytest.raises(ConnectorError, match="/nonexistent/mcp-server"):
        await pool.tools([spec])


async def test_concurrent_calls_to_a_crashing_server_all_fail_and_the_loop_lives(
    pool: Connectors, broken_script: Path
) -> None:
    tool = await act(pool, broken(broken_script, "exit"))
    results = await asyncio.gather(*(tool.call({}, CTX) for _ in range(4)), return_exceptions=True)
    assert all(isinstance(result, ConnectorError) for result in results)
    assert await asyncio.sleep(0, "alive") == "alive"


@pytest.fixture
def broken_http(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The hand-written HTTP server with the fault ``request.param``: its URL."""
    script = tmp_path / "broken_http.py"
    script.write_text(BROKEN_HTTP_SERVER)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), str(port), request.param])
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("broken_http", "message"),
    [
        ("garbage", r"bad: tool act: the server answered error -32700: Failed to parse JSON response"),
        ("oversized", r"bad: tool act: the server answered error -32700: .*over 4194304 bytes"),
        ("status500", r"bad: tool act: the server answered error -32603: Server returned an error response"),
        ("unknown", r"bad: tool act: the server answered error -32601: Method not found"),
    ],
    indirect=["broken_http"],
)
async def test_http_faults_fail_the_call_clearly(pool: Connectors, broken_http: str, message: str) -> None:
    spec = connector(name="bad", mcp={"url": broken_http}, timeout=20)
    tool = await act(pool, spec)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=message):
        await tool.call({}, CTX)
    assert time.monotonic() - started < 10
    # The connection survives a bad answer: the next request is served.
    assert [t.name for t in await pool.tools([spec])] == ["bad__act"]


@pytest.mark.parametrize("broken_http", ["expire"], indirect=True)
async def test_an_expired_http_session_is_replaced_and_the_call_goes_through(
    pool: Connectors, broken_http: str
) -> None:
    spec = connector(name="bad", mcp={"url": broken_http}, timeout=20)
    tool = await act(pool, spec)
    assert await tool.call({}, CTX) == "served in session s2"
    mcp = pool.connector(spec)
    assert isinstance(mcp, McpConnector) and mcp.supervisor.starts == 2
