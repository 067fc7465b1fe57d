"""The MCP gateway at ``/mcp`` of a ``shopfloor serve`` app on loopback, driven by the official ``mcp``
client: registered agents and an upstream FastMCP server's tools, per identity, with OAuth metadata."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, LiveServer
from mcp.shared.exceptions import MCPError
from mcp_gateway_support import UPSTREAM_TOKEN, Upstream, mcp_session, texts, upstream_config, write_config

from shopfloor.config import load_settings
from shopfloor.gateway import build_server
from shopfloor.security import build_audit_log

POLICY = """
[[mcp.policies]]
roles = ["platform-admin"]
tools = ["*"]

[[mcp.policies]]
roles = ["ai-developer"]
tools = ["docs__read_file", "agent__*"]
arguments = {path = ["/data"]}
"""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def _serve(live: list[LiveServer], agent_dir: Path, keys: Keys) -> str:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    url = live[-1].url
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.post("/v1/agents", json={"path": str(agent_dir)}).status_code == 201
        pay = "name: pay\ninstructions: hi\nmodel: test\npermissions:\n  team: payments\n"
        assert api.post("/v1/agents", json={"spec": pay}).status_code == 201
    return url


@pytest.fixture
def served(
    upstream: Upstream, fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path
) -> str:
    # (the upstream first: it stops after the gateway, whose session to it it would otherwise wait on)
    write_config(Path(os.environ["SHOPFLOOR_HOME"]), upstream_config(upstream))
    return _serve(live, agent_dir, keys)


async def test_agents_and_upstream_tools_through_the_official_client(
    served: str, keys: Keys, upstream: Upstream
) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async with mcp_session(f"{served}/mcp", keys.admin) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        wanted = {"agent__ticker", "agent__pay", "docs__echo", "docs__read_file", "docs__headers"}
        assert wanted <= set(listed)
        assert listed["docs__echo"].input_schema["properties"]["text"]["type"] == "string"
        assert listed["agent__ticker"].input_schema["required"] == ["task"]
        echoed = await session.call_tool("docs__echo", {"text": "hello"})
        assert not echoed.is_error and echoed.structured_content == {"result": "hello"}
        ran = await session.call_tool("agent__ticker", {"task": "ticks=2"}, progress_callback=on_progress)
        assert not ran.is_error, texts(ran)
        assert texts(ran) == "done after 2 ticks"
        assert ran.structured_content is not None and ran.structured_content["status"] == "completed"
        # the run's events came back as progress notifications while it ran
        assert progress and all("run " in (message or "") for _, message in progress)
        assert [done for done, _ in progress] == sorted(done for done, _ in progress)
        # the upstream sees its own configured credential, never the caller's key
        seen = await session.call_tool("docs__headers", {})
        assert seen.structured_content == {"result": UPSTREAM_TOKEN}
        with pytest.raises(MCPError, match="no tool 'nope__x' is available"):
            await session.call_tool("nope__x", {})
    assert upstream.seen == [UPSTREAM_TOKEN]
    run_id = ran.structured_content["run_id"]
    async with httpx.AsyncClient(base_url=served, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        run = (await api.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "completed" and run["task"] == "ticks=2" and run["caller"].startswith("key:")


async def test_a_principal_sees_and_calls_only_what_its_roles_allow(
    served: str, keys: Keys, settings: object
) -> None:
    async with mcp_session(f"{served}/mcp", keys.developer) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        # ai-developer of team research: its team's agent and the upstream, not team payments' agent
        assert "agent__ticker" in names and "docs__echo" in names and "agent__pay" not in names
        with pytest.raises(MCPError, match="no tool 'agent__pay' is available to key:"):
            await session.call_tool("agent__pay", {"task": "x"})
    with build_audit_log(load_settings()) as audit:
        denied = [e for e in audit.entries() if e.kind == "permission.denied"]
    assert any(e.details["permission"] == "runs:start" for e in denied)
    # a viewer lacks routes:call: refused before any MCP message is read
    viewer = {"Authorization": f"Bearer {keys.viewer}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=served, timeout=30) as client:
        response = await client.post(
            "/mcp", headers=viewer, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        )
    assert response.status_code == 403 and "lacks the permission 'routes:call'" in response.text


@pytest.fixture
def with_policy(
    upstream: Upstream, fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path
) -> str:
    # (the upstream first: it stops after the gateway, whose session to it it would otherwise wait on)
    write_config(Path(os.environ["SHOPFLOOR_HOME"]), upstream_config(upstream, extra=POLICY))
    return _serve(live, agent_dir, keys)


async def test_policies_hide_tools_and_restrict_path_arguments(with_policy: str, keys: Keys) -> None:
    async with mcp_session(f"{with_policy}/mcp", keys.developer) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert names == {"docs__read_file", "agent__ticker"}
        with pytest.raises(MCPError, match="no tool 'docs__echo' is available"):
            await session.call_tool("docs__echo", {"text": "x"})
        read = await session.call_tool("docs__read_file", {"path": "/data/reports/q3.csv"})
        assert not read.is_error and read.structured_content == {
            "path": "/data/reports/q3.csv",
            "content": "contents of /data/reports/q3.csv",
        }
        for path in ("/etc/passwd", "/data/../etc/passwd", "/database/x", "data/x"):
            with pytest.raises(MCPError, match=r"argument 'path'.* is not under /data"):
                await session.call_tool("docs__read_file", {"path": path})
        with pytest.raises(MCPError, match="must be a path string"):
            await session.call_tool("docs__read_file", {"path": ["/data/x"]})
    async with mcp_session(f"{with_policy}/mcp", keys.admin) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"docs__echo", "docs__read_file", "docs__headers", "agent__pay"} <= names
        assert not (await session.call_tool("docs__read_file", {"path": "/etc/hosts"})).is_error


def test_oauth_resource_metadata_and_the_401_challenge(served: str, keys: Keys) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            metadata = client.get(path).json()
            assert metadata["resource"] == f"{served}/mcp"
            assert metadata["bearer_methods_supported"] == ["header"]
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        missing = client.post("/mcp", json=body)
        assert missing.status_code == 401
        expected = f'Bearer resource_metadata="{served}/.well-known/oauth-protected-resource/mcp"'
        assert missing.headers["www-authenticate"] == expected
        bad_key = {"Authorization": "Bearer sf_000000000000_" + "A" * 43}
        forged = client.post("/mcp", json=body, headers=bad_key)
        assert forged.status_code == 401
        assert forged.headers["www-authenticate"] == expected + ', error="invalid_token"'
        assert "A" * 43 not in forged.text
        # a browser page of another origin (DNS rebinding) is refused
        other = client.post(
            "/mcp",
            json=body,
            headers={"Authorization": f"Bearer {keys.admin}", "Origin": "http://evil.example"},
        )
        assert other.status_code == 403 and "Origin" in other.text


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_protocol_versions_are_negotiated(served: str, keys: Keys, version: str) -> None:
    headers = {"Authorization": f"Bearer {keys.admin}", "Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    with httpx.Client(base_url=served, timeout=30, headers=headers) as client:
        answer = client.post("/mcp", json=initialize)
        assert answer.status_code == 200, answer.text
        assert f'"protocolVersion":"{version}"' in answer.text.replace(" ", "")
        assert "mcp-session-id" not in answer.headers  # stateless: no process holds a session
        listed = client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={"MCP-Protocol-Version": version},
        )
        assert listed.status_code == 200 and "docs__echo" in listed.text


async def test_the_stateless_2026_revision_works_without_a_handshake(served: str, keys: Keys) -> None:
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with mcp_session(f"{served}/mcp", keys.developer, modern=True) as session:
        assert session.discover_result is not None
        assert "2026-07-28" in session.discover_result.supported_versions
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "agent__ticker" in names and "agent__pay" not in names
        ran = await session.call_tool("agent__ticker", {"task": "ticks=1"}, progress_callback=on_progress)
        assert texts(ran) == "done after 1 ticks" and progress


def test_the_hosts_the_gateway_answers() -> None:
    from shopfloor.config import Settings
    from shopfloor.gateway.mcpgate import allowed_hosts

    def hosts(server: dict[str, object], mcp: dict[str, object], resource: str | None = None) -> object:
        settings = Settings.model_validate({"home": "/tmp/x", "server": server, "mcp": mcp})
        return allowed_hosts(settings, resource)

    loopback = {"localhost", "127.0.0.1", "::1", "[::1]"}
    assert hosts({}, {}) == loopback  # the default [server] host is 127.0.0.1
    assert hosts({}, {}, "https://mcp.example.com/mcp") == loopback | {"mcp.example.com"}
    assert hosts({"host": "0.0.0.0"}, {}) is None  # reachable by any name: the balancer's or the Host's
    assert hosts({"host": "0.0.0.0"}, {"allowed_hosts": ["MCP.example.com"]}) == {"mcp.example.com"}


async def test_a_host_of_another_site_is_refused(served: str, keys: Keys) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": f"Bearer {keys.admin}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=served, timeout=30) as client:
        rebound = await client.post("/mcp", headers={**headers, "Host": "evil.example:8080"}, json=body)
        assert rebound.status_code == 421, rebound.text
        local = await client.post("/mcp", headers={**headers, "Host": "localhost:8080"}, json=body)
        assert local.status_code == 200, local.text
