"""``McpGateway``: ``/mcp`` of ``shopfloor serve``, an MCP server over Streamable HTTP (the official SDK's
low-level ``Server`` and session manager) whose tools are the registered agents and the upstream MCP
servers' tools, shown and callable per identity.

Per request: the ``Host`` must be one the server answers to and the ``Origin`` of a browser the
server's own (DNS rebinding); the caller
authenticates with the server's authenticator (a 401 carries ``WWW-Authenticate`` with the RFC 9728
``resource_metadata`` URL, served at ``/.well-known/oauth-protected-resource[/mcp]``); the route's
permission (``routes:call``) is asked; the SDK then answers the JSON-RPC message. The SDK runs
stateless: no session lives in a process, so two server processes behind one balancer answer any
request of any client the same way. ``tools/list`` shows a principal only the tools the authoriser
(each tool's permission on its team) and the policy allow; ``tools/call`` refuses the others exactly
as it refuses a tool that does not exist, and audits the refusal. With ``documents``, the document
collections are resources (``_resources.py``): listed and read only where the principal has
``workspaces:read``; a refused read is audited as a refused call is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from opentelemetry.trace import SpanKind

from shopfloor.errors import AuthenticationError, PermissionDeniedError
from shopfloor.gateway._governance import ServerGovernance, authenticate_request
from shopfloor.gateway._mount import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    SubApp,
    client_address,
    request_header,
    send_json,
)
from shopfloor.gateway._permissions import ROUTE_PERMISSIONS
from shopfloor.gateway.mcpgate._policy import ToolPolicy
from shopfloor.gateway.mcpgate._resources import READ_PERMISSION, DocResources, parse_doc_uri
from shopfloor.gateway.mcpgate._sources import GatewayTool, ToolSource
from shopfloor.security import Authenticator, Authorizer, Principal, Resource
from shopfloor.telemetry import open_span

__all__ = ["MCP_PATH", "METADATA_PATH", "McpGateway"]

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
_PRINCIPAL = "shopfloor.principal"
_UNAUTHENTICATED = -32001


class McpGateway(SubApp):
    paths = frozenset({MCP_PATH, METADATA_PATH, METADATA_PATH + MCP_PATH})

    def __init__(
        self,
        *,
        sources: Sequence[ToolSource],
        authenticator: Authenticator,
        authorizer: Authorizer | None,
        audit: ServerGovernance | None,
        policy: ToolPolicy,
        max_body_bytes: int,
        resource: str | None = None,
        authorization_servers: Sequence[str] = (),
        allowed_hosts: frozenset[str] | None = None,
        version: str = "0.1.0",
        documents: DocResources | None = None,
    ) -> None:
        """``allowed_hosts``: the host names (without port) a request's ``Host`` may name, against DNS
        rebinding; None: any. ``documents``: the document collections served as resources (none: the
        gateway offers no resources)."""
        self.sources = tuple(sources)
        self.documents = documents
        self._auth = authenticator
        self._authorizer = authorizer
        self._audit = audit
        self._policy = policy
        self._resource = resource
        self._authorization_servers = list(authorization_servers)
        self._allowed_hosts = allowed_hosts
        self.server: Server[Any] = Server(
            "shopfloor",
            version=version,
            title="Shopfloor MCP gateway",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources if documents is not None else None,
            on_list_resource_templates=self._list_templates if documents is not None else None,
            on_read_resource=self._read_resource if documents is not None else None,
        )
        self._manager = StreamableHTTPSessionManager(
            self.server, stateless=True, json_response=False, max_request_body_size=max_body_bytes
        )
        self._stack = contextlib.AsyncExitStack()

    def openapi_paths(self) -> dict[str, Any]:
        metadata = {
            "get": {
                "summary": "OAuth 2.0 protected resource metadata of the MCP gateway (RFC 9728)",
                "tags": ["mcp"],
                "responses": {"200": {"description": "the metadata document"}},
            }
        }
        return {
            MCP_PATH: {
                "post": {
                    "summary": "MCP over Streamable HTTP: the agents and upstream tools the caller may call",
                    "tags": ["mcp"],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": {"description": "a JSON-RPC answer (application/json or text/event-stream)"},
                        "202": {"description": "a notification or response was accepted"},
                        "400": {"description": "not a JSON-RPC message, or a bad protocol version header"},
                        "401": {"description": "no or bad credentials (WWW-Authenticate names the metadata)"},
                        "403": {"description": "the caller lacks routes:call, or a foreign Origin"},
                        "404": {"description": "an unknown session id (the gateway keeps none)"},
                        "405": {"description": "a method the stateless transport does not serve"},
                        "406": {"description": "Accept lacks application/json and text/event-stream"},
                        "413": {"description": "the body is too large"},
                        "415": {"description": "the body is not application/json"},
                        "421": {"description": "the Host is not one this server answers to"},
                    },
                }
            },
            METADATA_PATH: metadata,
            METADATA_PATH + MCP_PATH: metadata,
        }

    async def startup(self) -> None:
        await self._stack.enter_async_context(self._manager.run())

    async def shutdown(self) -> None:
        await self._stack.aclose()
        for source in self.sources:
            await source.aclose()
        if self.documents is not None:
            await self.documents.aclose()

    # HTTP ---------------------------------------------------------------------------------------
    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        path = scope["path"]
        if path != MCP_PATH:
            if scope["method"] not in ("GET", "HEAD"):
                await send_json(send, 405, {"detail": f"{path} takes GET"}, [(b"allow", b"GET")])
                return
            await send_json(send, 200, self.metadata(scope))
            return
        if not _allowed_host(scope, self._allowed_hosts):
            await send_json(send, 421, _rpc_error(-32600, "the Host header names another server"))
            return
        if not _same_origin(scope):
            await send_json(send, 403, _rpc_error(-32600, "the Origin header is not this server's"))
            return
        try:
            principal = await self._authenticate(scope)
        except AuthenticationError as exc:
            challenge = f'Bearer resource_metadata="{self.metadata_url(scope)}"'
            if request_header(scope, b"authorization") is not None:
                challenge += ', error="invalid_token"'
            await send_json(
                send,
                401,
                _rpc_error(_UNAUTHENTICATED, str(exc)),
                [(b"www-authenticate", challenge.encode("latin-1"))],
            )
            return
        try:
            self._authorize_route(principal)
        except PermissionDeniedError as exc:
            await send_json(send, 403, _rpc_error(_UNAUTHENTICATED, str(exc)))
            return
        scope = dict(scope)
        scope[_PRINCIPAL] = principal
        await self._manager.handle_request(scope, receive, send)

    def resource_url(self, scope: ASGIScope) -> str:
        """This resource server's canonical URL: configured, or the request's ``scheme://host/mcp``."""
        if self._resource is not None:
            return self._resource
        host = (request_header(scope, b"host") or b"localhost").decode("latin-1")
        return f"{scope.get('scheme', 'http')}://{host}{MCP_PATH}"

    def metadata_url(self, scope: ASGIScope) -> str:
        parts = urlsplit(self.resource_url(scope))
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path}"

    def metadata(self, scope: ASGIScope) -> dict[str, Any]:
        """The RFC 9728 document: the resource, its authorisation servers, bearer tokens in the header."""
        return {
            "resource": self.resource_url(scope),
            "authorization_servers": self._authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "Shopfloor MCP gateway",
        }

    async def _authenticate(self, scope: ASGIScope) -> Principal:
        return await authenticate_request(
            self._auth, self._audit, request_header(scope, b"authorization"), client_address(scope)
        )

    def _authorize_route(self, principal: Principal) -> None:
        if self._authorizer is None:
            return
        permission = ROUTE_PERMISSIONS[("POST", MCP_PATH)]
        if permission is not None:
            kind = permission.partition(":")[0]
            self._authorizer.authorize(principal, permission, Resource(kind=kind, team=principal.team))

    # MCP ----------------------------------------------------------------------------------------
    async def tools(self) -> list[tuple[ToolSource, GatewayTool]]:
        """Every tool of every source with its source (before any authorisation)."""
        listed = await asyncio.gather(*(source.tools() for source in self.sources))
        return [(source, tool) for source, tools in zip(self.sources, listed, strict=True) for tool in tools]

    async def find(self, name: str) -> tuple[ToolSource, GatewayTool] | None:
        """The tool named ``name`` and its source (the first source serving it), or None."""
        for source in self.sources:
            tool = await source.find(name)
            if tool is not None:
                return source, tool
        return None

    def _resource_of(self, tool: GatewayTool, principal: Principal) -> Resource:
        kind = tool.permission.partition(":")[0]
        return Resource(kind=kind, name=tool.name, team=tool.team or principal.team)

    def visible(self, principal: Principal, tool: GatewayTool) -> bool:
        """Whether ``principal`` may see (and so call) ``tool``."""
        if self._authorizer is not None and not self._authorizer.allows(
            principal, tool.permission, self._resource_of(tool, principal)
        ):
            return False
        return self._policy.allows(principal, tool.name)

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal = _principal_of(ctx)
        shown = [
            types.Tool(name=tool.name, description=tool.description, input_schema=dict(tool.input_schema))
            for _, tool in await self.tools()
            if self.visible(principal, tool)
        ]
        return types.ListToolsResult(tools=shown)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal = _principal_of(ctx)
        name, args = params.name, dict(params.arguments or {})
        found = await self.find(name)
        unknown = MCPError(types.INVALID_PARAMS, f"no tool {name!r} is available to {principal.id}")
        if found is None:
            raise unknown
        source, tool = found
        if not self.visible(principal, tool):
            self._deny(principal, tool)
            raise unknown
        try:
            self._policy.check(principal, tool.name, args)
        except PermissionDeniedError as exc:
            self._deny(principal, tool)
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.session.report_progress(done, total, message)

        attributes = {"mcp.method.name": "tools/call", "gen_ai.tool.name": tool.name}
        with open_span(f"tools/call {tool.name}", attributes, kind=SpanKind.SERVER):
            outcome = await source.call(tool, args, caller=principal.id, progress=progress)
        return types.CallToolResult(
            content=list(outcome.blocks) or [types.TextContent(text=outcome.text)],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    def _deny(self, principal: Principal, tool: GatewayTool) -> None:
        """Audit the refusal (the authoriser's denial hook) without saying more to the caller."""
        if self._authorizer is not None and self._authorizer.on_deny is not None:
            self._authorizer.on_deny(principal, tool.permission, self._resource_of(tool, principal))

    # resources: the document collections ------------------------------------------------------
    def _collection(self, principal: Principal, collection: str) -> Resource:
        return Resource(kind=READ_PERMISSION.partition(":")[0], name=collection, team=principal.team)

    def may_read(self, principal: Principal, collection: str) -> bool:
        """Whether ``principal`` may list and read the document collection ``collection``."""
        return self._authorizer is None or self._authorizer.allows(
            principal, READ_PERMISSION, self._collection(principal, collection)
        )

    async def _readable(self, principal: Principal) -> list[str]:
        assert self.documents is not None
        return [name for name in await self.documents.names() if self.may_read(principal, name)]

    async def _list_resources(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        assert self.documents is not None
        readable = await self._readable(_principal_of(ctx))
        return await self.documents.list_resources(readable, params.cursor if params else None)

    async def _list_templates(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        assert self.documents is not None
        readable = await self._readable(_principal_of(ctx))
        return await self.documents.list_templates(readable, params.cursor if params else None)

    async def _read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        assert self.documents is not None
        principal = _principal_of(ctx)
        address = parse_doc_uri(str(params.uri))
        if not self.may_read(principal, address.collection):
            if self._authorizer is not None and self._authorizer.on_deny is not None:
                self._authorizer.on_deny(
                    principal, READ_PERMISSION, self._collection(principal, address.collection)
                )
            raise MCPError(
                types.INVALID_PARAMS,
                f"resource {address.uri!r} is not available to {principal.id}: it needs {READ_PERMISSION}",
            )
        attributes = {"mcp.method.name": "resources/read", "mcp.resource.uri": address.uri}
        with open_span(f"resources/read {address.collection}", attributes, kind=SpanKind.SERVER):
            return await self.documents.read(address)


def _principal_of(ctx: Any) -> Principal:
    request = getattr(ctx, "request", None)
    principal = None if request is None else request.scope.get(_PRINCIPAL)
    if not isinstance(principal, Principal):  # only reachable if the SDK stops passing the request
        raise MCPError(types.INTERNAL_ERROR, "the request reached the MCP server without a principal")
    return principal


def _allowed_host(scope: ASGIScope, allowed: frozenset[str] | None) -> bool:
    """Whether the request's ``Host`` (its name, without the port) is one of ``allowed`` (None: any)."""
    if allowed is None:
        return True
    host = request_header(scope, b"host")
    if host is None:
        return False
    name = urlsplit("//" + host.decode("latin-1")).hostname
    return name is not None and (name in allowed or f"[{name}]" in allowed)


def _same_origin(scope: ASGIScope) -> bool:
    """No ``Origin`` (not a browser), or one whose host and port are this request's ``Host``."""
    origin = request_header(scope, b"origin")
    if origin is None:
        return True
    host = request_header(scope, b"host")
    return (
        host is not None
        and urlsplit(origin.decode("latin-1")).netloc.lower() == host.decode("latin-1").lower()
    )


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
