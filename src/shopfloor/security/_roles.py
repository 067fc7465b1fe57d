"""Roles: named sets of permissions over resources, the six presets, and bindings of roles to teams.

A permission is ``RESOURCE:ACTION`` (``runs:approve``). A role grants patterns over them: ``runs:*`` (every
action on runs), ``*:read`` (reading anything), ``*`` (everything). A role is bound to a principal either
for one team (it then grants only on that team's resources) or globally (``team`` None).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shopfloor.errors import ConfigError

__all__ = ["PERMISSIONS", "PRESET_ROLES", "RESOURCES", "Binding", "Role", "check_permission"]

#: every resource kind a permission names, with the actions each has
RESOURCES: Mapping[str, tuple[str, ...]] = {
    #: ``register-path``: point the server at an agent directory of its own file system (code its workers run)
    "agents": ("read", "write", "run", "register-path"),
    #: ``feedback``: rate a run's answer (stored per run and release, audited)
    "runs": ("read", "start", "cancel", "approve", "delete", "execute", "feedback"),
    "workspaces": ("read", "write"),
    "skills": ("read", "write", "publish", "run"),
    "models": ("read", "write", "install", "delete"),
    "routes": ("read", "write", "call"),
    "egress": ("read", "write"),
    "sandbox": ("read", "run"),
    "secrets": ("read", "write", "delete"),
    "policies": ("read", "write"),
    "roles": ("read", "write"),
    "keys": ("read", "write", "delete"),
    "releases": ("read", "write", "deploy", "rollback"),
    "evals": ("read", "run"),
    "traces": ("read",),
    "dashboards": ("read",),
    "audit": ("read", "verify"),
    "system": ("read",),
}

#: every permission there is
PERMISSIONS: frozenset[str] = frozenset(
    f"{kind}:{action}" for kind, actions in RESOURCES.items() for action in actions
)


def check_permission(permission: str) -> str:
    """``permission`` if it names a resource and an action that exist, else ``ConfigError``."""
    if permission not in PERMISSIONS:
        raise ConfigError(
            f"unknown permission {permission!r}: expected RESOURCE:ACTION, one of "
            + ", ".join(sorted(PERMISSIONS))
        )
    return permission


@dataclass(frozen=True, kw_only=True)
class Role:
    """A named set of permission patterns."""

    name: str
    grants: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        for pattern in self.grants:
            if not any(fnmatch.fnmatchcase(permission, pattern) for permission in PERMISSIONS):
                raise ConfigError(
                    f"role {self.name!r}: {pattern!r} matches no permission "
                    "(expected RESOURCE:ACTION, RESOURCE:*, *:ACTION or *)"
                )

    def permissions(self) -> frozenset[str]:
        """The permissions this role grants, patterns expanded."""
        return frozenset(p for p in PERMISSIONS if any(fnmatch.fnmatchcase(p, g) for g in self.grants))


@dataclass(frozen=True, kw_only=True)
class Binding:
    """``role`` bound to ``principal`` (a principal id) for ``team``'s resources, or everywhere (None)."""

    principal: str
    role: str
    team: str | None = None


def _preset(name: str, description: str, grants: Iterable[str]) -> Role:
    return Role(name=name, grants=tuple(grants), description=description)


#: the people of an AI factory; names are part of the interface
PRESET_ROLES: Mapping[str, Role] = {
    role.name: role
    for role in (
        _preset("platform-admin", "everything", ["*"]),
        _preset(
            "network-admin",
            "egress allow-lists and gateway routes; no run data",
            ["egress:*", "routes:*", "models:read", "sandbox:read", "system:read", "dashboards:read"],
        ),
        _preset(
            "ai-developer",
            "agents, skills, runs and evals of their team",
            [
                "agents:read",
                "agents:write",
                "agents:run",
                "skills:*",
                "runs:read",
                "runs:start",
                "runs:cancel",
                "runs:feedback",
                "evals:*",
                "workspaces:*",
                "traces:read",
                "dashboards:read",
                "models:read",
                "routes:read",
                "routes:call",
                "sandbox:*",
                "system:read",
            ],
        ),
        _preset(
            "mlops-engineer",
            "models, releases, deployments and rollbacks",
            ["models:*", "releases:*", "routes:read", "traces:read", "dashboards:read", "system:read"],
        ),
        _preset(
            "approver",
            "approve or reject the calls of their team's runs",
            ["runs:read", "runs:approve", "agents:read", "traces:read"],
        ),
        _preset(
            "viewer",
            "read runs, traces and dashboards of their team",
            ["runs:read", "traces:read", "dashboards:read", "agents:read"],
        ),
    )
}
