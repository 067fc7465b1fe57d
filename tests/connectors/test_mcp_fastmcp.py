"""MCP connectors against a server written with the SDK's MCPServer (FastMCP), over stdio and HTTP."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from connector_support import connector

from shopfloor.connectors import IDEMPOTENCY_META_KEY, Connectors, McpConnector
from shopfloor.errors import ConnectorError, ToolArgumentsError
from shopfloor.tools import Tool, ToolContext


def ctx(step: int = 1) -> ToolContext:
    return ToolContext(run_id="run-1", step=step, call_id=f"c{step}", idempotency_key=f"run-1:{step}")


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {tool.name: tool for tool in tools}


def stdio_spec(script: Path, **extra: Any) -> Any:
    return connector(name="shop", mcp={"command": [sys.executable, str(script), "stdio"], **extra})


async def test_stdio_tools_have_the_servers_schemas_and_answer(
    pool: Connectors, fastmcp_script: Path
) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script)]))
    assert {"shop__add", "shop__whoami", "shop__fail", "shop__read_resource", "shop__list_prompts"} <= set(
        tools
    )
    add = tools["shop__add"]
    assert add.input_schema["properties"]["a"]["type"] == "integer"
    assert set(add.input_schema["required"]) == {"a", "b"}
    assert add.description == "Add two integers."
    with pytest.raises(ToolArgumentsError):
        add.validate({"a": "one", "b": 2})
    assert await add.call({"a": 2, "b": 40}, ctx()) == {"result": 42}


async def test_a_call_carries_the_idempotency_key_in_meta(pool: Connectors, fastmcp_script: Path) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script)]))
    seen = await tools["shop__whoami"].call({}, ctx(7))
    assert seen["meta"][IDEMPOTENCY_META_KEY] == "run-1:7"


async def test_resources_are_readable_and_prompts_listable(pool: Connectors, fastmcp_script: Path) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script)]))
    reader = tools["shop__read_resource"]
    assert reader.input_schema["properties"]["uri"]["enum"] == ["data://greeting"]
    assert await reader.call({"uri": "data://greeting"}, ctx()) == "hello from a resource"
    prompts = await tools["shop__list_prompts"].call({}, ctx())
    assert prompts == [
        {
            "name": "review",
            "description": "Review some code.",
            "arguments": [{"name": "code", "description": "", "required": True}],
        }
    ]


async def test_a_tool_error_becomes_a_clear_tool_error(pool: Connectors, fastmcp_script: Path) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script)]))
    with pytest.raises(ConnectorError, match=r"shop: tool fail failed: .*deliberate failure: because"):
        await tools["shop__fail"].call({"reason": "because"}, ctx())


async def test_allow_list_keeps_only_the_named_tools(pool: Connectors, fastmcp_script: Path) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script).model_copy(update={"tools": ["add"]})]))
    assert "shop__add" in tools and "shop__whoami" not in tools and "shop__fail" not in tools


async def test_an_allow_list_naming_a_missing_tool_is_an_error(
    pool: Connectors, fastmcp_script: Path
) -> None:
    spec = stdio_spec(fastmcp_script).model_copy(update={"tools": ["add", "substract"]})
    with pytest.raises(ConnectorError, match="substract"):
        await pool.tools([spec])


async def test_secret_env_reaches_the_server_but_never_the_log(
    pool: Connectors, fastmcp_script: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SHOPFLOOR_SECRET_SHOP_TOKEN", "s3cr3t-value-123")
    caplog.set_level(logging.INFO, logger="shopfloor.connectors")
    spec = stdio_spec(fastmcp_script, env={"API_TOKEN": "secret:SHOP_TOKEN"})
    tools = by_name(await pool.tools([spec]))
    assert (await tools["shop__whoami"].call({}, ctx()))["token_set"] is True
    connector_obj = pool.connector(spec)
    assert isinstance(connector_obj, McpConnector)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "starting with token ***" in logged
    assert "s3cr3t-value-123" not in logged


async def test_a_missing_secret_fails_with_its_name(pool: Connectors, fastmcp_script: Path) -> None:
    spec = stdio_spec(fastmcp_script, env={"API_TOKEN": "secret:NOT_THERE"})
    with pytest.raises(ConnectorError, match=r"env\.API_TOKEN.*NOT_THERE"):
        await pool.tools([spec])


async def test_one_session_serves_every_run(pool: Connectors, fastmcp_script: Path) -> None:
    spec = stdio_spec(fastmcp_script)
    first = by_name(await pool.tools([spec]))
    second = by_name(await pool.tools([spec]))
    pid1 = (await first["shop__whoami"].call({}, ctx(1)))["pid"]
    pid2 = (await second["shop__whoami"].call({}, ctx(2)))["pid"]
    assert pid1 == pid2
    connector_obj = pool.connector(spec)
    assert isinstance(connector_obj, McpConnector) and connector_obj.supervisor.starts == 1


async def test_streamable_http(pool: Connectors, fastmcp_http: str) -> None:
    spec = connector(name="web", mcp={"url": fastmcp_http, "headers": {"X-Trace": "t1"}})
    tools = by_name(await pool.tools([spec]))
    assert await tools["web__add"].call({"a": 1, "b": 2}, ctx()) == {"result": 3}
    assert (
        await tools["web__read_resource"].call({"uri": "data://greeting"}, ctx()) == "hello from a resource"
    )
    seen = await tools["web__whoami"].call({}, ctx(3))
    assert seen["meta"][IDEMPOTENCY_META_KEY] == "run-1:3"


async def test_concurrent_calls_share_the_session_and_each_gets_its_answer(
    pool: Connectors, fastmcp_script: Path
) -> None:
    tools = by_name(await pool.tools([stdio_spec(fastmcp_script)]))
    add, slow = tools["shop__add"], tools["shop__slow"]
    answers = await asyncio.gather(
        slow.call({"seconds": 0.5}, ctx(0)), *(add.call({"a": n, "b": 1}, ctx(n)) for n in range(1, 20))
    )
    assert answers == [{"result": "woke"}, *({"result": n + 1} for n in range(1, 20))]
