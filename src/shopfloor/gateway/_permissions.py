"""Which permission each HTTP route of ``shopfloor serve`` needs: the specification the route matrix test
checks (the HTTP twin of ``cli/_permissions.py``'s ``CLI_PERMISSIONS``).

Deny by default: a route missing here is refused with a 403 naming ``route:METHOD PATH``. ``None`` marks
the few routes that need no credentials (the health probes, the OpenAPI document). The permission is
asked first on the caller's own team; a route about one run or agent then asks it again on the team
owning that agent (its spec's ``permissions.team``) where the spec names one.

The console's pages (``/console/...``, a page tree the server hands to the console whole) are not API
routes: they authenticate by the session cookie, and each page asks the permission ``CONSOLE_PERMISSIONS``
gives it, deny by default, with the same authoriser (``tests/gateway/console/test_console_matrix.py``
checks every page against every preset role). ``None`` there means a signed-in session is enough (or, for
the sign-in page and the static files, nothing).
"""

from __future__ import annotations

from collections.abc import Mapping

from shopfloor.errors import PermissionDeniedError
from shopfloor.security import Authorizer, Principal, Resource

__all__ = [
    "CONSOLE_PERMISSIONS",
    "DECIDED_BY_APPROVAL_POLICY",
    "ROUTE_PERMISSIONS",
    "authorize_route",
    "route_permission",
]

#: (method, path template) -> permission; the inference gateway's paths are exact paths
ROUTE_PERMISSIONS: Mapping[tuple[str, str], str | None] = {
    ("GET", "/"): None,  # the console's entry: a redirect to its sign-in page or its runs
    ("GET", "/console"): None,  # the same redirect
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/metrics"): "dashboards:read",
    ("GET", "/v1/agents"): "agents:read",
    ("POST", "/v1/agents"): "agents:write",
    ("GET", "/v1/agents/{name}"): "agents:read",
    ("GET", "/v1/runs"): "runs:read",
    ("POST", "/v1/runs"): "runs:start",
    ("GET", "/v1/runs/{run_id}"): "runs:read",
    ("GET", "/v1/runs/{run_id}/events"): "runs:read",
    ("GET", "/v1/runs/{run_id}/children"): "runs:read",
    ("POST", "/v1/runs/{run_id}/approve"): "runs:approve",
    ("POST", "/v1/runs/{run_id}/reject"): "runs:approve",
    ("POST", "/v1/runs/{run_id}/cancel"): "runs:cancel",
    # a fork is a new run of the run's agent (as replay's in the console)
    ("POST", "/v1/runs/{run_id}/fork"): "runs:start",
    ("POST", "/v1/runs/{run_id}/feedback"): "runs:feedback",
    ("GET", "/v1/runs/{run_id}/trace"): "traces:read",
    ("GET", "/v1/metrics/agents"): "dashboards:read",
    ("GET", "/v1/workspaces"): "workspaces:read",
    ("GET", "/v1/workspaces/{name}/log"): "workspaces:read",
    ("GET", "/v1/workspaces/{name}/ls"): "workspaces:read",
    ("GET", "/v1/workspaces/{name}/file"): "workspaces:read",
    ("GET", "/v1/workspaces/{name}/diff"): "workspaces:read",
    ("GET", "/v1/workspaces/{name}/archive"): "workspaces:read",
    # creating and revoking also need every permission of the key's role on its team (never more than
    # the caller holds: Authorizer.authorize_grant)
    ("GET", "/v1/keys"): "keys:read",
    ("POST", "/v1/keys"): "keys:write",
    ("GET", "/v1/keys/{key_id}"): "keys:read",
    ("POST", "/v1/keys/{key_id}/revoke"): "keys:delete",
    ("GET", "/v1/models"): "routes:read",
    ("POST", "/v1/chat/completions"): "routes:call",
    ("POST", "/v1/completions"): "routes:call",
    ("POST", "/v1/embeddings"): "routes:call",
    # the MCP gateway: each tool asks its own permission too (an agent's runs:start on its team)
    ("POST", "/mcp"): "routes:call",
    ("GET", "/.well-known/oauth-protected-resource"): None,
    ("GET", "/.well-known/oauth-protected-resource/mcp"): None,
    # A2A: each method asks its own permission on the agent's team too (SendMessage runs:start)
    ("POST", "/a2a/{agent}"): "runs:read",
    ("GET", "/.well-known/agent-card.json"): None,
}

#: (method, path template) of each console page -> permission (see the module's docstring)
CONSOLE_PERMISSIONS: Mapping[tuple[str, str], str | None] = {
    ("GET", "/console/login"): None,
    ("POST", "/console/login"): None,
    ("POST", "/console/logout"): None,
    ("GET", "/console/static/{name}"): None,
    ("GET", "/console/"): None,
    ("GET", "/console/runs"): "runs:read",
    ("GET", "/console/runs/rows"): "runs:read",
    ("GET", "/console/runs/stream"): "runs:read",
    ("GET", "/console/runs/{run_id}"): "runs:read",
    ("GET", "/console/runs/{run_id}/live"): "runs:read",
    ("GET", "/console/runs/{run_id}/events"): "runs:read",
    # the approval policy decides (runs:approve, or being a named approver), as for the API's routes
    ("POST", "/console/runs/{run_id}/approve"): None,
    ("POST", "/console/runs/{run_id}/reject"): None,
    ("POST", "/console/runs/{run_id}/cancel"): "runs:cancel",
    # replaying calls nothing, forking runs the agent live from a step: both as `shopfloor replay`
    ("POST", "/console/runs/{run_id}/replay"): "runs:start",
    ("POST", "/console/runs/{run_id}/fork"): "runs:start",
    # lists only the calls the person may decide
    ("GET", "/console/approvals"): None,
    ("GET", "/console/workspaces"): "workspaces:read",
    ("GET", "/console/workspaces/{name}"): "workspaces:read",
    ("GET", "/console/workspaces/{name}/file"): "workspaces:read",
    ("GET", "/console/workspaces/{name}/raw"): "workspaces:read",
    ("GET", "/console/workspaces/{name}/diff"): "workspaces:read",
    ("GET", "/console/agents"): "agents:read",
    ("GET", "/console/agents/{name}"): "agents:read",
    ("GET", "/console/releases"): "releases:read",
    ("GET", "/console/releases/{name}"): "releases:read",
    ("GET", "/console/releases/{name}/{version}"): "releases:read",
    ("POST", "/console/releases/{name}/deploy"): "releases:deploy",
    ("POST", "/console/releases/{name}/promote"): "releases:deploy",
    ("POST", "/console/releases/{name}/rollback"): "releases:rollback",
    ("GET", "/console/evals"): "evals:read",
    ("GET", "/console/evals/compare"): "evals:read",
    ("GET", "/console/evals/{eval_id}"): "evals:read",
    ("GET", "/console/gateway"): "routes:read",
    ("GET", "/console/audit"): "audit:read",
    ("GET", "/console/metrics"): "dashboards:read",
}

#: routes whose permission the approval policy checks with the run in hand: a principal the spec names
#: as an approver decides without holding ``runs:approve``
DECIDED_BY_APPROVAL_POLICY: frozenset[tuple[str, str]] = frozenset(
    {("POST", "/v1/runs/{run_id}/approve"), ("POST", "/v1/runs/{run_id}/reject")}
)


def route_permission(
    method: str,
    path: str,
    principal: Principal,
    table: Mapping[tuple[str, str], str | None] = ROUTE_PERMISSIONS,
) -> str | None:
    """The permission of ``method path`` (a template) in ``table``, or ``PermissionDeniedError`` when no
    line covers it (deny by default)."""
    key = (method, path)
    if key not in table:
        raise PermissionDeniedError(
            f"route:{method} {path}", principal=principal.id, resource="a route no permission covers"
        )
    return table[key]


def authorize_route(
    authorizer: Authorizer,
    principal: Principal,
    method: str,
    path: str,
    table: Mapping[tuple[str, str], str | None] = ROUTE_PERMISSIONS,
) -> None:
    """Return if ``principal`` may call ``method path`` on its own team's resources, else raise
    ``PermissionDeniedError`` naming the missing permission (the authoriser audits the refusal)."""
    permission = route_permission(method, path, principal, table)
    if permission is None:
        return
    kind = permission.partition(":")[0]
    authorizer.authorize(principal, permission, Resource(kind=kind, team=principal.team))
