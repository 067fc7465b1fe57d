"""``A2AGateway``: every agent registered with ``shopfloor serve`` as an A2A 1.0 server (the official
``a2a-sdk``'s JSON-RPC and HTTP+JSON bindings over ``RunTasks``).

Paths: ``/a2a/NAME`` (JSON-RPC: ``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``ListTasks``,
``CancelTask``, ``SubscribeToTask``), ``/a2a/NAME/message:send``, ``/a2a/NAME/tasks/ID`` ... (HTTP+JSON),
the agent's card at ``/a2a/NAME/.well-known/agent-card.json`` and, for the agent ``[a2a] agent`` names
(or the only one registered), at ``/.well-known/agent-card.json``. Cards are public, as the protocol
wants; every other request authenticates with the server's authenticator (the card's one security
scheme, HTTP bearer, is exactly that) and asks ``routes:call``, then each method its permission on the
agent's team (``runs:start``, ``runs:read``, ``runs:cancel``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import ServerCallContextBuilder
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.routes.rest_routes import create_rest_routes
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from starlette.applications import Starlette
from starlette.requests import Request

from shopfloor.errors import AgentNotFoundError, AuthenticationError, PermissionDeniedError
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
from shopfloor.gateway.a2aserve._handler import AGENT_KEY, PRINCIPAL_KEY, RunTasks
from shopfloor.security import Authenticator, Authorizer, Principal, Resource

__all__ = ["A2A_PREFIX", "A2A_ROUTE", "CARD_PATH", "A2AGateway"]

A2A_PREFIX = "/a2a/"
A2A_ROUTE = "/a2a/{agent}"
CARD_PATH = "/.well-known/agent-card.json"
_SCHEME = "bearer"


class _Context(ServerCallContextBuilder):
    """The principal the gateway authenticated and the agent of the path, for ``RunTasks``."""

    def build(self, request: Request) -> ServerCallContext:
        # (the SDK's version check reads A2A-Version from ``headers``; the credential stays out)
        state = {
            PRINCIPAL_KEY: request.scope.get(PRINCIPAL_KEY),
            AGENT_KEY: request.path_params.get("agent"),
            "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
        }
        return ServerCallContext(state=state)


class A2AGateway(SubApp):
    paths = frozenset({CARD_PATH})
    prefixes = frozenset({A2A_PREFIX})

    def __init__(
        self,
        *,
        handler: RunTasks,
        authenticator: Authenticator,
        authorizer: Authorizer | None,
        audit: ServerGovernance | None,
        default_agent: str | None = None,
    ) -> None:
        self.handler = handler
        self._auth = authenticator
        self._authorizer = authorizer
        self._audit = audit
        self._default_agent = default_agent
        context = _Context()
        routes = [
            *create_jsonrpc_routes(handler, A2A_ROUTE, context_builder=context),
            *create_rest_routes(handler, context_builder=context, path_prefix=A2A_ROUTE),
        ]
        self._app = Starlette(routes=routes)

    def openapi_paths(self) -> dict[str, Any]:
        card = {
            "get": {
                "summary": "The A2A agent card (of the default agent; per agent under /a2a/{agent})",
                "tags": ["a2a"],
                "responses": {"200": {"description": "the card"}, "404": {"description": "no such agent"}},
            }
        }
        rpc = {
            "post": {
                "summary": "A2A 1.0 over JSON-RPC (SendMessage, GetTask, ListTasks, CancelTask, streams); "
                "HTTP+JSON under the same prefix",
                "tags": ["a2a"],
                "parameters": [
                    {"name": "agent", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "a JSON-RPC answer (application/json or text/event-stream)"},
                    "401": {"description": "no or bad credentials"},
                    "403": {"description": "the caller lacks runs:read"},
                },
            }
        }
        return {CARD_PATH: card, A2A_ROUTE: rpc}

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        path: str = scope["path"]
        if path == CARD_PATH or path.endswith(CARD_PATH):
            await self._card(scope, send, path)
            return
        try:
            principal = await self._authenticate(scope)
        except AuthenticationError as exc:
            await send_json(
                send, 401, {"error": str(exc)}, [(b"www-authenticate", b'Bearer realm="shopfloor"')]
            )
            return
        if self._authorizer is not None:
            permission = ROUTE_PERMISSIONS[("POST", A2A_ROUTE)]
            try:
                if permission is not None:
                    kind = permission.partition(":")[0]
                    resource = Resource(kind=kind, team=principal.team)
                    self._authorizer.authorize(principal, permission, resource)
            except PermissionDeniedError as exc:
                await send_json(send, 403, {"error": str(exc)})
                return
        scope = dict(scope)
        scope[PRINCIPAL_KEY] = principal
        await self._app(scope, receive, send)

    async def _card(self, scope: ASGIScope, send: ASGISend, path: str) -> None:
        if path == CARD_PATH:
            name = self._default_agent or await self._only_agent()
        else:
            name = path[len(A2A_PREFIX) : -len(CARD_PATH)]
        if not name or "/" in name:
            where = f"no agent card at {path}; each agent's is at {A2A_PREFIX}NAME{CARD_PATH}"
            await send_json(send, 404, {"error": where})
            return
        try:
            card = await self.card(name, _base_url(scope))
        except AgentNotFoundError as exc:
            await send_json(send, 404, {"error": str(exc)})
            return
        await send_json(send, 200, agent_card_to_dict(card))

    async def _only_agent(self) -> str | None:
        agents = await asyncio.to_thread(self.handler.store.list_agents)
        return agents[0].name if len(agents) == 1 else None

    async def card(self, name: str, base: str) -> AgentCard:
        """The card of the registered agent ``name`` as served at ``base`` (``http://host:port``)."""
        agent = await self.handler.agent(name)
        loaded = await asyncio.to_thread(self.handler.runtime.services.load_spec, agent.spec_path)
        spec = loaded.spec
        url = f"{base}{A2A_PREFIX}{agent.name}"
        description = (getattr(spec, "description", None) or spec.instructions or agent.name)[:2000]
        return AgentCard(
            name=agent.name,
            description=description,
            version=agent.version or "0",
            supported_interfaces=[
                AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
                AgentInterface(url=url, protocol_binding="HTTP+JSON", protocol_version="1.0"),
            ],
            capabilities=AgentCapabilities(streaming=True, push_notifications=False),
            security_schemes={
                _SCHEME: SecurityScheme(
                    http_auth_security_scheme=HTTPAuthSecurityScheme(
                        scheme="Bearer",
                        description="a Shopfloor API key or an OIDC token of the server's issuer",
                    )
                )
            },
            security_requirements=[SecurityRequirement(schemes={_SCHEME: StringList()})],
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
            skills=[
                AgentSkill(
                    id=agent.name,
                    name=agent.name,
                    description=description,
                    tags=["shopfloor", "agent"],
                )
            ],
        )

    async def _authenticate(self, scope: ASGIScope) -> Principal:
        return await authenticate_request(
            self._auth, self._audit, request_header(scope, b"authorization"), client_address(scope)
        )


def _base_url(scope: ASGIScope) -> str:
    host = (request_header(scope, b"host") or b"localhost").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}"
