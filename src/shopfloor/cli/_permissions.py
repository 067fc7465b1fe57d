"""Which permission each command needs: the specification the role matrix test checks.

Every command has a line (a command without one is refused: deny by default). ``None`` marks the few that
read nothing but the program itself (``version``). The resource is the permission's kind, of the caller's
team.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["CLI_PERMISSIONS", "iter_commands"]

CLI_PERMISSIONS: Mapping[str, str | None] = {
    "audit export": "audit:read",
    "audit ls": "audit:read",
    "audit tail": "audit:read",
    "audit verify": "audit:verify",
    "demo analyst": "runs:start",
    "demo researcher": "runs:start",
    "deploy": "releases:deploy",
    "deployments evaluate": "releases:deploy",
    "deployments ls": "releases:read",
    "deployments show": "releases:read",
    "docs add": "workspaces:write",
    "docs history": "workspaces:read",
    "docs ls": "workspaces:read",
    "docs search": "workspaces:read",
    "doctor": "system:read",
    "eval compare": "evals:read",
    "eval dataset from-feedback": "evals:run",
    "eval ls": "evals:read",
    "eval report": "evals:read",
    "eval rescore": "evals:run",
    "eval resume": "evals:run",
    "eval run": "evals:run",
    "eval show": "evals:read",
    "gitops history": "releases:read",
    "gitops rollback": "releases:rollback",
    "gitops status": "releases:read",
    "gitops sync": "releases:deploy",
    "gitops watch": "releases:deploy",
    "keys create": "keys:write",
    "keys ls": "keys:read",
    "keys revoke": "keys:delete",
    "keys show": "keys:read",
    "metrics": "dashboards:read",
    "models install": "models:install",
    "models ls": "models:read",
    "models rm": "models:delete",
    "release create": "releases:write",
    "release diff": "releases:read",
    "release ls": "releases:read",
    "release show": "releases:read",
    "release verify": "releases:read",
    "replay": "runs:start",
    "rollback": "releases:rollback",
    "run": "runs:start",
    "runs approve": "runs:approve",
    "runs cancel": "runs:cancel",
    "runs feedback": "runs:feedback",
    "runs fork": "runs:start",
    "runs logs": "runs:read",
    "runs ls": "runs:read",
    "runs prune": "runs:delete",
    "runs reject": "runs:approve",
    "runs show": "runs:read",
    "sandbox exec": "sandbox:run",
    "sandbox layers": "sandbox:read",
    "secrets ls": "secrets:read",
    "secrets rm": "secrets:delete",
    "secrets rotate": "secrets:write",
    "secrets set": "secrets:write",
    "serve": "runs:execute",
    "skill keygen": "skills:write",
    "skill ls": "skills:read",
    "skill new": "skills:write",
    "skill prepare": "skills:write",
    "skill publish": "skills:publish",
    "skill show": "skills:read",
    "skill sign": "skills:write",
    "skill verify": "skills:read",
    "trace": "traces:read",
    "validate": "agents:read",
    "version": None,
    "worker": "runs:execute",
    "ws cat": "workspaces:read",
    "ws checkout": "workspaces:read",
    "ws diff": "workspaces:read",
    "ws gc": "workspaces:write",
    "ws log": "workspaces:read",
    "ws ls": "workspaces:read",
    "ws restore": "workspaces:write",
}


def iter_commands(group: TyperGroup, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf command under ``group`` (``typer.main.get_command(app)``) with its path
    (``runs approve``)."""
    context = typer.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None:
            continue
        path = f"{prefix}{name}"
        if isinstance(command, TyperGroup):
            yield from iter_commands(command, f"{path} ")
        else:
            yield path, command
