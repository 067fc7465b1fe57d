"""``build_mcp_gateway``: the MCP gateway from settings (``[mcp]``), with its dependencies passed in."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import ValidationError

from shopfloor.config import Settings
from shopfloor.connectors import Secrets
from shopfloor.errors import ConfigError
from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway.api._store import ControlStore
from shopfloor.gateway.mcpgate._app import McpGateway
from shopfloor.gateway.mcpgate._policy import ToolPolicy
from shopfloor.gateway.mcpgate._resources import DocResources
from shopfloor.gateway.mcpgate._skills import SKILL_PREFIX
from shopfloor.gateway.mcpgate._sources import AGENT_PREFIX, ToolSource, tool_sources
from shopfloor.runtime import Runtime, Services
from shopfloor.sandbox import SandboxPolicy
from shopfloor.security import Authenticator, Authorizer
from shopfloor.spec import ConnectorSpec, SandboxPolicySpec

__all__ = ["allowed_hosts", "build_mcp_gateway", "doc_resources", "skill_sandbox_policy", "upstream_specs"]


def upstream_specs(settings: Settings) -> list[ConnectorSpec]:
    """``[[mcp.upstreams]]`` as connector specs; a bad entry is a ConfigError naming it."""
    specs: list[ConnectorSpec] = []
    for index, upstream in enumerate(settings.mcp.upstreams):
        where = f"mcp.upstreams[{index}] ({upstream.name})"
        server = upstream.model_dump(include={"url", "headers", "command", "env"}, exclude_none=True)
        try:
            spec = ConnectorSpec.model_validate(
                {"name": upstream.name, "mcp": server, "tools": upstream.tools, "timeout": upstream.timeout}
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ConfigError(f"{where}: {field}: {error['msg']}") from None
        for prefix, enabled, what in (
            (AGENT_PREFIX, settings.mcp.agents, "agents"),
            (SKILL_PREFIX, settings.mcp.skills, "skills"),
        ):
            if enabled and spec.name == prefix:
                raise ConfigError(f"{where}: the name {prefix!r} is the {what}' prefix; pick another")
        if any(spec.name == other.name for other in specs):
            raise ConfigError(f"{where}: another upstream has that name; tool names must stay unique")
        specs.append(spec)
    return specs


def skill_sandbox_policy(settings: Settings) -> SandboxPolicy:
    """``[mcp] skill_sandbox`` as a sandbox policy; a bad key or value is a ConfigError naming it."""
    try:
        spec = SandboxPolicySpec.model_validate(settings.mcp.skill_sandbox)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"mcp.skill_sandbox.{field}: {error['msg']}") from None
    return SandboxPolicy.from_spec(spec)


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def allowed_hosts(settings: Settings, resource: str | None) -> frozenset[str] | None:
    """The ``Host`` names the gateway answers: ``[mcp] allowed_hosts``; else, on a loopback address,
    the loopback names and the resource's host (a browser page of another site that resolves its name
    to 127.0.0.1 is refused); else any (None)."""
    if settings.mcp.allowed_hosts:
        return frozenset(host.lower() for host in settings.mcp.allowed_hosts)
    if settings.server.host.lower() not in _LOOPBACK:
        return None
    own = urlsplit(resource).hostname if resource else None
    return _LOOPBACK | ({own} if own else set())


def doc_resources(settings: Settings) -> DocResources | None:
    """The document collections of ``[docs] url`` as resources, opened with the CPU embedding model's
    name (its weights hashed on the first open); None without the retrieval extra (no numpy)."""
    try:
        from shopfloor.connectors.docs import DocCollections, MiniLM
    except ImportError:
        return None
    return DocResources(collections=DocCollections.from_settings(settings), embedder=MiniLM)


def build_mcp_gateway(
    settings: Settings,
    *,
    authenticator: Authenticator,
    authorizer: Authorizer | None,
    audit: ServerGovernance | None = None,
    runtime: Runtime | None = None,
    store: ControlStore | None = None,
    services: Services | None = None,
    resolve_secret: Callable[[str], str] | None = None,
) -> McpGateway:
    """The ``SubApp`` of ``/mcp``: the registered agents (with the server's ``runtime`` and ``store``,
    when ``[mcp] agents``), the skill registry's signed skills (with ``services``' engines and sandbox
    backends, when ``[mcp] skills``), each ``[[mcp.upstreams]]`` server (credentials from
    ``resolve_secret``), the ``[[mcp.policies]]``; OAuth metadata naming ``[server.oidc]``'s issuer
    and audience unless ``[mcp]`` names its own; the document collections as resources
    (``doc_resources``)."""
    config = settings.mcp
    oidc = settings.server.oidc
    resource = config.resource
    if resource is not None and oidc.audience is not None and oidc.audience != resource:
        raise ConfigError(
            f"mcp.resource ({resource}) differs from server.oidc.audience ({oidc.audience}): tokens "
            "for this resource would be refused; make them the same URL"
        )
    if resource is None and oidc.audience is not None and oidc.audience.startswith(("http://", "https://")):
        resource = oidc.audience
    servers = config.authorization_servers or ([oidc.issuer] if oidc.issuer else [])
    kinds = tool_sources()
    sources: list[ToolSource] = []
    if config.agents and runtime is not None and store is not None:
        sources.append(kinds.get("agents")(runtime=runtime, store=store, timeout=config.agent_timeout))
    if config.skills:
        sources.append(
            kinds.get("skills")(
                settings=settings,
                policy=skill_sandbox_policy(settings),
                ttl=config.list_ttl,
                engines=services.engines if services is not None else None,
                backends=services.sandboxes if services is not None else None,
            )
        )
    secrets = Secrets(resolve_secret)
    for spec in upstream_specs(settings):
        sources.append(kinds.get("upstream")(spec, secrets, ttl=config.list_ttl))
    return McpGateway(
        allowed_hosts=allowed_hosts(settings, resource),
        sources=sources,
        authenticator=authenticator,
        authorizer=authorizer,
        audit=audit,
        policy=ToolPolicy.from_settings(config.policies),
        max_body_bytes=settings.server.max_body_bytes,
        resource=resource,
        authorization_servers=servers,
        documents=doc_resources(settings),
    )
