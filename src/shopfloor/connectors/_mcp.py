"""An MCP server as a connector: its tools, a tool that reads its resources, one that lists its prompts.

Every failure of a call becomes a ``ConnectorError`` (a ``ToolError``, which the agent loop hands
back to the model): a timeout, the server gone, an error answer, a result that does not parse.
A call carries the run's idempotency key and the trace context in ``params._meta``, so a server
that accepts a key can make a re-executed step a no-op.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import jsonschema
from mcp import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST, CallToolResult, PaginatedRequestParams, RequestParamsMeta
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from shopfloor.connectors._base import Connector, Secrets, tool_name
from shopfloor.connectors._supervise import McpSupervisor
from shopfloor.errors import ConnectorError
from shopfloor.spec import ConnectorSpec
from shopfloor.telemetry import open_span
from shopfloor.tools import Tool, ToolContext

__all__ = ["IDEMPOTENCY_META_KEY", "McpConnector", "McpTool"]

#: the ``_meta`` key of a tools/call that carries the step's idempotency key
IDEMPOTENCY_META_KEY = "io.shopfloor/idempotency-key"
_MAX_LISTED = 1000
_MAX_PAGES = 100
_MAX_OUTPUT_CHARS = 200_000
_MAX_URI_ENUM = 100
_MAX_SCHEMA_CHARS = 64_000
_MAX_DESCRIPTION_CHARS = 4_000
_CONNECTION_CLOSED = -32000


class _SessionExpired(Exception):
    """The HTTP server answered 404 to a request of a session it no longer knows."""


def _bounded(value: Any) -> Any:
    """``value`` if its JSON is small enough for a step record, else a truncated text of it."""
    text = json.dumps(value, default=str)
    if len(text) <= _MAX_OUTPUT_CHARS:
        return value
    return {"truncated": True, "chars": len(text), "text": text[:_MAX_OUTPUT_CHARS]}


def _content(blocks: list[Any]) -> Any:
    """One text block as its text (or the JSON it holds); otherwise the blocks as JSON (binary data
    by its size only)."""
    dumped = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in blocks]
    for item in dumped:
        for key in ("data", "blob"):
            holder = item.get("resource", item)
            if isinstance(holder.get(key), str):
                holder[key] = f"<{len(holder[key])} base64 characters>"
    if len(dumped) == 1 and dumped[0].get("type") == "text":
        return _text(dumped[0]["text"])
    return dumped


def _text(text: str) -> Any:
    """A text that holds a JSON object or array (what servers write for structured data) as that value."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


class McpConnector(Connector):
    def __init__(self, spec: ConnectorSpec, secrets: Secrets) -> None:
        super().__init__(spec, secrets)
        assert spec.mcp is not None
        self.supervisor = McpSupervisor(spec.name, spec.mcp, secrets)

    async def _request(self, what: str, send: Any) -> Any:
        """Run ``send(session)`` on the live session within the connector's timeout; every failure
        becomes a ConnectorError naming the connector and ``what`` was asked.

        An HTTP server that no longer knows the session (it expired, or the server restarted)
        answers 404 before doing anything: the request goes once more, on a fresh session."""
        for retry in (True, False):
            try:
                return await self._attempt(what, send)
            except _SessionExpired:
                self.supervisor.restart("the server ended the session")
                if not retry:
                    raise ConnectorError(f"{self.name}: {what}: the server ended the session twice") from None
        raise AssertionError("unreachable")

    async def _attempt(self, what: str, send: Any) -> Any:
        timeout = self.spec.timeout
        where = f"{self.name}: {what}"
        session = await self.supervisor.session(timeout)
        try:
            async with asyncio.timeout(timeout):
                return await send(session)
        except TimeoutError:
            await self._check_alive(session)
            raise ConnectorError(f"{where}: no answer within {timeout:g} s") from None
        except MCPError as exc:
            if exc.error.code == INVALID_REQUEST and exc.error.message == "Session terminated":
                raise _SessionExpired from None
            if exc.error.code == _CONNECTION_CLOSED:
                reason = self.supervisor.ended_reason() or "the connection closed"
                self.supervisor.restart(reason)
                raise ConnectorError(f"{where}: failed, {reason}") from None
            message = self.secrets.scrub(exc.error.message)[:1000]
            raise ConnectorError(f"{where}: the server answered error {exc.error.code}: {message}") from None
        except ValidationError as exc:
            raise ConnectorError(
                f"{where}: the server's answer is not a valid MCP result: {exc.errors()[0]['msg']}"
            ) from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            self.supervisor.restart(f"{type(exc).__name__}: {exc}")
            raise ConnectorError(
                f"{where}: the connection failed: {self.secrets.scrub(str(exc))[:300]}"
            ) from None

    async def _check_alive(self, session: ClientSession) -> None:
        """After a timeout: a server that does not answer a ping either is hung, and is restarted."""
        try:
            async with asyncio.timeout(2.0):
                await session.send_ping()
        except TimeoutError:
            self.supervisor.restart("the server stopped answering (a ping timed out)")
        except Exception as exc:  # any failure of the ping means the session is unusable: say which
            reason = self.secrets.scrub(f"{type(exc).__name__}: {exc}")[:300]
            self.supervisor.restart(f"the server failed a ping after a timeout ({reason})")

    async def call_tool(self, tool: str, args: dict[str, Any], ctx: ToolContext) -> Any:
        result = await self.call_tool_result(tool, args, ctx)
        output = _content(result.content) if result.structured_content is None else result.structured_content
        if result.is_error:
            text = output if isinstance(output, str) else json.dumps(output)
            raise ConnectorError(f"{self.name}: tool {tool} failed: {self.secrets.scrub(text)[:2000]}")
        return _bounded(output)

    async def call_tool_result(
        self, tool: str, args: dict[str, Any], ctx: ToolContext, *, progress: ProgressFnT | None = None
    ) -> CallToolResult:
        """The server's answer to ``tools/call`` as it sent it (content blocks, structured content, error
        flag), for a caller that relays it whole (the MCP gateway); its progress notifications go to
        ``progress``. Failures of the exchange are ``ConnectorError`` as for ``call_tool``."""
        attributes = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": tool,
            "shopfloor.connector": self.name,
        }
        with open_span(f"tools/call {tool}", attributes, kind=SpanKind.CLIENT):
            # The server's spans join the run's trace through ``_meta.traceparent``.
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            meta = cast(RequestParamsMeta, {IDEMPOTENCY_META_KEY: ctx.idempotency_key, **carrier})

            async def send(session: ClientSession) -> Any:
                return await session.call_tool(tool, args, progress_callback=progress, meta=meta)

            result: CallToolResult = await self._request(f"tool {tool}", send)
        return result

    async def _listed(self, method: str, field: str) -> list[Any]:
        """Every page of ``list_tools``, ``list_resources``... up to ``_MAX_LISTED`` items."""
        items: list[Any] = []
        cursor: str | None = None
        for _page in range(_MAX_PAGES):  # a server that pages forever (empty pages) is cut off too
            params = PaginatedRequestParams(cursor=cursor) if cursor else None

            async def send(session: ClientSession, params: Any = params) -> Any:
                return await getattr(session, method)(params=params)

            page = await self._request(method.replace("_", " "), send)
            items.extend(getattr(page, field))
            cursor = page.next_cursor
            if not cursor or len(items) >= _MAX_LISTED:
                break
        return items[:_MAX_LISTED]

    async def capabilities(self) -> Any:
        session = await self.supervisor.session(self.spec.timeout)
        return session.server_capabilities

    async def list_prompts(self) -> list[dict[str, Any]]:
        """The server's prompts: name, description and arguments of each."""
        prompts = await self._listed("list_prompts", "prompts")
        return [
            {
                "name": prompt.name,
                "description": prompt.description or "",
                "arguments": [
                    {"name": arg.name, "description": arg.description or "", "required": bool(arg.required)}
                    for arg in prompt.arguments or []
                ],
            }
            for prompt in prompts
        ]

    async def read_resource(self, uri: str) -> Any:
        async def send(session: ClientSession) -> Any:
            return await session.read_resource(uri)

        result = await self._request(f"resource {uri}", send)
        return _bounded(
            _content(result.contents) if len(result.contents) != 1 else _resource(result.contents[0])
        )

    def _usable(self, item: Any) -> bool:
        """Whether a listed tool can be offered: its schema valid and of a bounded size."""
        size = len(json.dumps(item.input_schema))
        try:
            jsonschema.Draft202012Validator.check_schema(item.input_schema)
        except jsonschema.SchemaError as exc:
            problem = f"its input schema is invalid: {exc.message[:200]}"
        else:
            problem = f"its input schema has {size} characters (at most {_MAX_SCHEMA_CHARS})"
            if size <= _MAX_SCHEMA_CHARS:
                return True
        self.supervisor.logger.warning("MCP server %s: tool %r left out: %s", self.name, item.name, problem)
        return False

    async def tools(self) -> list[Tool]:
        listed = [item for item in await self._listed("list_tools", "tools") if self._usable(item)]
        tools: list[Tool] = self.allowed(
            (McpTool(self, item.name, item.description or "", item.input_schema) for item in listed),
            lambda tool: tool.remote_name if isinstance(tool, McpTool) else tool.name,
        )
        capabilities = await self.capabilities()
        if capabilities is not None and capabilities.resources is not None:
            resources = await self._listed("list_resources", "resources")
            templates = await self._listed("list_resource_templates", "resource_templates")
            tools.append(_ResourceTool(self, resources, has_templates=bool(templates)))
        if capabilities is not None and capabilities.prompts is not None:
            tools.append(_PromptsTool(self))
        return tools

    async def aclose(self) -> None:
        await self.supervisor.aclose()


def _resource(item: Any) -> Any:
    dumped = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(dumped.get("blob"), str):
        dumped["blob"] = f"<{len(dumped['blob'])} base64 characters>"
    return dumped.get("text", dumped)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The server's input schema without the keys that only describe the schema itself."""
    cleaned = {k: v for k, v in schema.items() if k not in ("$schema", "title")}
    cleaned.setdefault("type", "object")
    cleaned.setdefault("properties", {})
    return cleaned


class McpTool(Tool):
    """A tool of an MCP server, named ``CONNECTOR__TOOL`` for the agent."""

    kind = "extension"

    def __init__(self, connector: McpConnector, remote_name: str, description: str, schema: dict[str, Any]):
        self.connector = connector
        self.remote_name = remote_name
        self.name = tool_name(connector.name, remote_name)
        self.description = (description or remote_name)[:_MAX_DESCRIPTION_CHARS]
        self.input_schema = _clean_schema(schema)
        #: the schema as the server listed it (``$schema`` and all), for a gateway that relays it
        self.server_schema = schema

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.call_tool(self.remote_name, args, ctx)


class _ResourceTool(Tool):
    kind = "datastore"

    def __init__(self, connector: McpConnector, resources: list[Any], *, has_templates: bool) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "read_resource")
        uris = [str(item.uri) for item in resources]
        listing = ", ".join(uris[:20]) + (" ..." if len(uris) > 20 else "")
        self.description = f"Read a resource of the {connector.name} server by its URI" + (
            f" (e.g. {listing})" if uris else ""
        )
        uri: dict[str, Any] = {"type": "string", "description": "the resource's URI"}
        if uris and not has_templates and len(uris) <= _MAX_URI_ENUM:
            uri["enum"] = uris
        self.input_schema = {
            "type": "object",
            "properties": {"uri": uri},
            "required": ["uri"],
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.read_resource(str(args["uri"]))


class _PromptsTool(Tool):
    kind = "datastore"

    def __init__(self, connector: McpConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "list_prompts")
        self.description = f"List the prompts the {connector.name} server offers, with their arguments"
        self.input_schema = {"type": "object", "properties": {}, "additionalProperties": False}

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.list_prompts()
