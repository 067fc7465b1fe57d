"""The MCP gateway's upstream tool source against a real FastMCP server: stable names, the list cached
for its TTL (a clock the test moves), the last list served while the upstream cannot be listed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from mcp_gateway_support import Upstream

from shopfloor.connectors import Secrets, connector_kinds
from shopfloor.gateway.mcpgate import UpstreamTools, upstream_specs
from shopfloor.spec import ConnectorSpec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def _source(url: str, clock: Clock) -> UpstreamTools:
    spec = ConnectorSpec.model_validate({"name": "docs", "mcp": {"url": url}, "timeout": 10})
    return UpstreamTools(connector_kinds().get("mcp")(spec, Secrets(None)), ttl=60.0, clock=clock)


async def test_the_tool_list_is_cached_for_its_ttl(upstream: Upstream) -> None:
    clock = Clock()
    source = _source(upstream.url, clock)
    try:
        first = {tool.name for tool in await source.tools()}
        assert {"docs__echo", "docs__read_file", "docs__headers"} <= first and "docs__added" not in first

        @upstream.server.tool()
        def added(text: str) -> str:
            """A tool the server gained after the gateway listed it."""
            return text

        clock.now += 59.0
        assert {tool.name for tool in await source.tools()} == first  # within the TTL: the cached list
        clock.now += 2.0
        assert {tool.name for tool in await source.tools()} == first | {"docs__added"}
        found = await source.find("docs__added")
        assert found is not None and found.permission == "routes:call"
    finally:
        await source.aclose()


async def test_an_upstream_that_cannot_be_listed_serves_its_last_list(upstream: Upstream) -> None:
    clock = Clock()
    source = _source(upstream.url, clock)
    try:
        listed = await source.tools()
        upstream.close()
        clock.now += 120.0
        assert await source.tools() == listed
        assert source.last_error is not None and "docs" in source.last_error
    finally:
        await source.aclose()


def test_upstream_names_are_checked() -> None:
    from shopfloor.config import Settings
    from shopfloor.errors import ConfigError

    def settings(*upstreams: dict[str, object]) -> Settings:
        return Settings.model_validate({"home": "/tmp/x", "mcp": {"upstreams": list(upstreams)}})

    with pytest.raises(ConfigError, match=r"mcp.upstreams\[0\] \(agent\): the name 'agent' is the agents"):
        upstream_specs(settings({"name": "agent", "url": "http://127.0.0.1:1/mcp"}))
    with pytest.raises(ConfigError, match=r"mcp.upstreams\[1\] \(a\): another upstream has that name"):
        upstream_specs(settings({"name": "a", "url": "http://h/mcp"}, {"name": "a", "url": "http://h/mcp"}))
    with pytest.raises(ConfigError, match=r"mcp.upstreams\[0\] \(a\): mcp: .*either command"):
        upstream_specs(settings({"name": "a"}))


async def test_the_upstream_log_messages_reach_the_server_log(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    source = _source(upstream.url, Clock())
    caplog.set_level(logging.INFO, logger="shopfloor.connectors")

    async def ignore(done: float, total: float | None, message: str) -> None:
        del done, total, message

    try:
        tool = await source.find("docs__noisy")
        assert tool is not None
        outcome = await source.call(tool, {"text": "disk almost full"}, caller="key:x", progress=ignore)
        assert not outcome.is_error and outcome.blocks[0].text == "disk almost full"
        deadline = time.monotonic() + 30
        while not any("docs/upstream: noisy: disk almost full" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            await asyncio.sleep(0.05)
        logged = next(r for r in caplog.records if "noisy: disk" in r.getMessage())
        assert logged.levelno == logging.WARNING
    finally:
        await source.aclose()
