"""The MCP gateway: ``/mcp`` of ``shopfloor serve`` (Streamable HTTP, stateless, the official ``mcp`` SDK).

It serves the registered agents (``agent__NAME``: a call is a durable run, its events sent as progress),
the skill registry's signed skills (``skill__NAME``: run in the sandbox as an agent's call runs them)
and the tools of ``[[mcp.upstreams]]`` servers (``SERVER__TOOL``, lists cached for ``[mcp] list_ttl``),
each principal seeing and calling only what its roles and ``[[mcp.policies]]`` allow; OAuth 2.1
resource-server metadata (RFC 9728) at ``/.well-known/oauth-protected-resource``. The document
collections are resources (``shopfloor-docs://COLLECTION[/chunk|document/ID]``) for principals with
``workspaces:read``.
"""

from shopfloor.gateway.mcpgate._app import MCP_PATH, METADATA_PATH, McpGateway
from shopfloor.gateway.mcpgate._build import (
    allowed_hosts,
    build_mcp_gateway,
    doc_resources,
    skill_sandbox_policy,
    upstream_specs,
)
from shopfloor.gateway.mcpgate._policy import PolicyRule, ToolPolicy
from shopfloor.gateway.mcpgate._resources import (
    DOCS_SCHEME,
    READ_PERMISSION,
    DocResources,
    DocUri,
    parse_doc_uri,
)
from shopfloor.gateway.mcpgate._skills import SKILL_PREFIX, SkillTools
from shopfloor.gateway.mcpgate._sources import (
    AGENT_PREFIX,
    AgentTools,
    CallOutcome,
    GatewayTool,
    Progress,
    ToolSource,
    UpstreamTools,
    tool_sources,
    upstream_source,
    value_outcome,
)

__all__ = [
    "AGENT_PREFIX",
    "DOCS_SCHEME",
    "MCP_PATH",
    "METADATA_PATH",
    "READ_PERMISSION",
    "SKILL_PREFIX",
    "AgentTools",
    "CallOutcome",
    "DocResources",
    "DocUri",
    "GatewayTool",
    "McpGateway",
    "PolicyRule",
    "Progress",
    "SkillTools",
    "ToolPolicy",
    "ToolSource",
    "UpstreamTools",
    "allowed_hosts",
    "build_mcp_gateway",
    "doc_resources",
    "parse_doc_uri",
    "skill_sandbox_policy",
    "tool_sources",
    "upstream_source",
    "upstream_specs",
    "value_outcome",
]
