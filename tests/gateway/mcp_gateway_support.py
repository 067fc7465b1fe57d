"""Helpers of the MCP gateway tests: an upstream MCP server written with the SDK's MCPServer (FastMCP),
served on loopback, that remembers the Authorization headers it received; the official client."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
from gateway_support import LiveServer
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning

#: the upstream's own credential, configured in [[mcp.upstreams]]: the only one it may ever see
UPSTREAM_TOKEN = "Bearer upstream-own-credential"


class Upstream:
    """A FastMCP server (``echo``, ``read_file``, ``noisy``, ``headers``) on loopback; ``seen``: every
    Authorization header of a tools/call it answered."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        server = MCPServer("docs")

        @server.tool()
        def echo(text: str) -> str:
            """Echo the text."""
            return text

        @server.tool()
        def read_file(path: str) -> dict[str, str]:
            """Pretend to read a file."""
            return {"path": path, "content": f"contents of {path}"}

        @server.tool()
        async def noisy(text: str, ctx: Context) -> str:
            """Send the text as a warning log message, then echo it."""
            session = ctx.request_context.session
            with warnings.catch_warnings():  # (deprecated by 2026-07-28; servers of 2025-11-25 send them)
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await session.send_log_message("warning", f"noisy: {text}", "upstream", ctx.request_id)
            return text

        @server.tool()
        def headers(ctx: Context) -> str:
            """The Authorization header this call carried."""
            return self._record(ctx)

        self.server = server
        self.live = LiveServer(server.streamable_http_app())  # type: ignore[arg-type]
        self.url = f"{self.live.url}/mcp"

    def _record(self, ctx: Context) -> str:
        request = ctx.request_context.request
        value = None if request is None else request.headers.get("authorization")
        self.seen.append(value)
        return value or "-"

    def close(self) -> None:
        self.live.close()


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def upstream_config(upstream: Upstream, *, extra: str = "") -> str:
    return (
        f'[[mcp.upstreams]]\nname = "docs"\nurl = "{upstream.url}"\n'
        f'headers = {{Authorization = "{UPSTREAM_TOKEN}"}}\n' + extra
    )


@contextlib.asynccontextmanager
async def mcp_session(
    url: str, key: str, *, transport: httpx2.AsyncBaseTransport | None = None, modern: bool = False
) -> AsyncIterator[ClientSession]:
    """An initialised session of the official client at ``url`` (the gateway's ``/mcp``) as ``key``;
    ``modern``: the 2026-07-28 revision (``server/discover``, no handshake) instead of ``initialize``."""
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60, transport=transport) as client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await (session.discover() if modern else session.initialize())
        yield session


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the next of ``ports`` in turn (a round-robin balancer without affinity);
    ``counts`` says how many each received."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.counts = dict.fromkeys(ports, 0)
        self._next = 0
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[self._next % len(self.ports)]
        self._next += 1
        self.counts[port] += 1
        request.url = request.url.copy_with(port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def texts(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


Recorder = Callable[[float, float | None, str | None], Any]
