"""What the MCP conformance test puts around the gateway: the suite's fixture tools on an upstream MCP
server (the SDK's low-level ``Server``), a source that serves them under the names the suite calls, and a
front that adds the caller's credential (the suite's client sends none, as a client behind an API gateway
that authenticates for it)."""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPDeprecationWarning

from shopfloor.connectors import McpTool
from shopfloor.gateway.mcpgate import CallOutcome, GatewayTool, McpGateway, Progress, ToolSource

#: a 1x1 red PNG and a 1-sample WAV, base64
RED_PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
SILENCE = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA=="

_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}
#: the tools of the suite's reference server that a tool gateway can relay (see the baseline file for
#: those it cannot: the ones asking the client for sampling or elicitation)
FIXTURE_TOOLS = {
    "test_simple_text": "Returns a simple text",
    "test_image_content": "Returns an image",
    "test_audio_content": "Returns audio",
    "test_embedded_resource": "Returns an embedded resource",
    "test_multiple_content_types": "Returns text, an image and a resource",
    "test_tool_with_logging": "Logs three messages while it runs",
    "test_tool_with_progress": "Reports progress three times",
    "test_error_handling": "Always fails",
}
JSON_SCHEMA_TOOL = types.Tool(
    name="json_schema_2020_12_tool",
    description="Tool with JSON Schema 2020-12 features",
    input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    },
)


def _text(text: str) -> types.TextContent:
    return types.TextContent(text=text)


def _resource(uri: str, mime_type: str, text: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(
        resource=types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    )


async def _list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    tools = [
        types.Tool(name=name, description=text, input_schema=_NO_ARGS) for name, text in FIXTURE_TOOLS.items()
    ]
    return types.ListToolsResult(tools=[*tools, JSON_SCHEMA_TOOL])


async def _call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    content: list[Any]
    match params.name:
        case "test_simple_text":
            content = [_text("This is a simple text response for testing.")]
        case "test_image_content":
            content = [types.ImageContent(data=RED_PIXEL, mime_type="image/png")]
        case "test_audio_content":
            content = [types.AudioContent(data=SILENCE, mime_type="audio/wav")]
        case "test_embedded_resource":
            content = [
                _resource("test://embedded-resource", "text/plain", "This is an embedded resource content.")
            ]
        case "test_multiple_content_types":
            content = [
                _text("Multiple content types test:"),
                types.ImageContent(data=RED_PIXEL, mime_type="image/png"),
                _resource(
                    "test://mixed-content-resource", "application/json", '{"test": "data", "value": 123}'
                ),
            ]
        case "test_tool_with_logging":
            for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
                with warnings.catch_warnings():  # (deprecated by 2026-07-28, part of 2025-11-25)
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await ctx.session.send_log_message("info", message, None, ctx.request_id)
                await asyncio.sleep(0.05)
            content = [_text("Tool with logging executed successfully")]
        case "test_tool_with_progress":
            for done in (0.0, 50.0, 100.0):
                await ctx.session.report_progress(done, 100.0, f"{done:g}% done")
                await asyncio.sleep(0.05)
            content = [_text("Tool with progress executed successfully")]
        case "test_error_handling":
            message = "This tool intentionally returns an error for testing"
            return types.CallToolResult(content=[_text(message)], is_error=True)
        case "json_schema_2020_12_tool":
            content = [_text(f"received {sorted(params.arguments or {})}")]
        case _:
            raise ValueError(f"unknown tool {params.name}")
    return types.CallToolResult(content=content)


def fixture_server() -> Server[Any]:
    """The upstream: the suite's fixture tools as its reference server answers them."""
    return Server("conformance-fixtures", version="1.0.0", on_list_tools=_list_tools, on_call_tool=_call_tool)


class Unprefixed(ToolSource):
    """An upstream's tools under the upstream's own names (``test_simple_text``, not
    ``fixtures__test_simple_text``), since the suite calls its fixtures by fixed names; every call goes
    through the upstream source as any ``SERVER__TOOL`` call does."""

    def __init__(self, inner: ToolSource) -> None:
        self.inner = inner

    async def tools(self) -> list[GatewayTool]:
        listed = await self.inner.tools()
        return [
            dataclasses.replace(tool, name=tool.target.remote_name)
            if isinstance(tool.target, McpTool)
            else tool
            for tool in listed
        ]

    async def call(
        self, tool: GatewayTool, args: dict[str, Any], *, caller: str, progress: Progress
    ) -> CallOutcome:
        return await self.inner.call(tool, args, caller=caller, progress=progress)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Fronted:
    """An ASGI app: the gateway's paths with ``Authorization: Bearer KEY`` added to each request, its
    startup and shutdown on the lifespan; 404 elsewhere."""

    def __init__(self, gateway: McpGateway, key: str) -> None:
        self.gateway = gateway
        self._credential = (b"authorization", f"Bearer {key}".encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.gateway.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.gateway.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] not in self.gateway.paths:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [item for item in scope["headers"] if item[0] != b"authorization"]
        await self.gateway({**scope, "headers": [*headers, self._credential]}, receive, send)
