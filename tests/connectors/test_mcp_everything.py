"""MCP connectors against ``@modelcontextprotocol/server-everything`` from npm (the MCP project's
reference server; no one here wrote it), over stdio and over Streamable HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from connector_support import connector

from shopfloor.agent import AgentLoop
from shopfloor.connectors import Connectors
from shopfloor.errors import ConnectorError
from shopfloor.models import TestModel
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import ToolContext

pytestmark = pytest.mark.slow
CTX = ToolContext(run_id="run-1", step=1, call_id="c1", idempotency_key="run-1:1")


def stdio(everything_bin: Path, **extra: object) -> ConnectorSpec:
    node = shutil.which("node")
    assert node is not None
    return connector(name="everything", mcp={"command": [node, str(everything_bin), "stdio"]}, **extra)


async def check_everything(pool: Connectors, spec: ConnectorSpec) -> None:
    tools = {tool.name: tool for tool in await pool.tools([spec])}
    assert "everything__echo" in tools
    echo = tools["everything__echo"]
    assert "message" in echo.input_schema["properties"]
    out = await echo.call({"message": "hello shopfloor"}, CTX)
    assert "hello shopfloor" in str(out)
    total = await tools["everything__get-sum"].call({"a": 2, "b": 40}, CTX)
    assert "42" in str(total)
    reader = tools["everything__read_resource"]
    assert await reader.call({"uri": "demo://resource/static/document/architecture.md"}, CTX)
    prompts = await tools["everything__list_prompts"].call({}, CTX)
    assert any(prompt["name"] == "simple-prompt" for prompt in prompts)
    with pytest.raises(ConnectorError, match="everything: tool echo"):
        await echo.connector.call_tool("echo", {"message": 5}, CTX)  # type: ignore[attr-defined]


async def test_stdio(pool: Connectors, everything_bin: Path) -> None:
    await check_everything(pool, stdio(everything_bin))


async def test_streamable_http(pool: Connectors, everything_http: str) -> None:
    await check_everything(pool, connector(name="everything", mcp={"url": everything_http}))


async def test_allow_list(pool: Connectors, everything_bin: Path) -> None:
    tools = await pool.tools([stdio(everything_bin, tools=["echo", "get-sum"])])
    names = {tool.name for tool in tools}
    assert {"everything__echo", "everything__get-sum"} <= names
    assert not any(name.startswith("everything__get-tiny") for name in names)


async def test_the_server_gets_its_env_and_secrets_but_not_the_workers_environment(
    pool: Connectors, everything_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOOR_SECRET_EVERYTHING", "tok-123")
    monkeypatch.setenv("WORKER_ONLY_SETTING", "not for servers")
    spec = stdio(everything_bin).model_copy(
        update={
            "mcp": stdio(everything_bin).mcp.model_copy(update={"env": {"API_TOKEN": "secret:EVERYTHING"}})
        }  # type: ignore[union-attr]
    )
    tools = {tool.name: tool for tool in await pool.tools([spec])}
    env = str(await tools["everything__get-env"].call({}, CTX))
    assert "tok-123" in env
    assert "WORKER_ONLY_SETTING" not in env and "SHOPFLOOR_SECRET_EVERYTHING" not in env


@pytest.mark.parametrize("decision", ["one_shot", "two_phase"])
async def test_a_schema_driven_model_calls_the_servers_tools(
    pool: Connectors, everything_bin: Path, decision: str
) -> None:
    tools = await pool.tools([stdio(everything_bin, tools=["echo", "get-sum"])])
    server_tools = [tool for tool in tools if tool.name in ("everything__echo", "everything__get-sum")]
    loop = AgentLoop(model=TestModel(), tools=server_tools, decision=decision)
    result = await loop.run("echo, then add", run_id=f"run-{decision}")
    assert result.status == "completed", result.error
    assert [step.tool for step in result.steps] == ["everything__echo", "everything__get-sum"]
    assert all(step.error is None for step in result.steps), [step.error for step in result.steps]
