"""Every CLI command against every preset role: the matrix is the specification of who may run what.

(The HTTP routes of ``shopfloor serve`` have theirs, with real requests:
``tests/gateway/test_route_matrix.py``.)"""

from __future__ import annotations

import pytest

from shopfloor.cli import app
from shopfloor.cli._guard import guarded_command
from shopfloor.cli._permissions import CLI_PERMISSIONS, iter_commands
from shopfloor.errors import PermissionDeniedError
from shopfloor.security import LOCAL_ADMIN, PRESET_ROLES, Authorizer, Principal, Resource

_READ_RUNS = {"runs ls", "runs show", "runs logs"}
_WS_READ = {"ws cat", "ws checkout", "ws diff", "ws log", "ws ls"}
_EVALS = {
    f"eval {c}"
    for c in ("compare", "ls", "report", "rescore", "resume", "run", "show", "dataset from-feedback")
}
_RELEASES = {
    *(f"release {c}" for c in ("create", "diff", "ls", "show", "verify")),
    *(f"deployments {c}" for c in ("evaluate", "ls", "show")),
    "deploy",
    "rollback",
    *(f"gitops {c}" for c in ("history", "rollback", "status", "sync", "watch")),
}
_SKILLS = {f"skill {c}" for c in ("keygen", "ls", "new", "prepare", "publish", "show", "sign", "verify")}

#: the commands each preset role may run in its own team (``version`` needs nothing)
EXPECTED: dict[str, set[str]] = {
    "platform-admin": set(CLI_PERMISSIONS),
    "network-admin": {"version", "doctor", "metrics", "models ls", "sandbox layers"},
    "ai-developer": {
        "version",
        "doctor",
        "demo analyst",
        "demo researcher",
        "run",
        "replay",
        "runs cancel",
        "runs feedback",
        "runs fork",
        "trace",
        "metrics",
        "validate",
        "models ls",
        "sandbox exec",
        "sandbox layers",
        "ws gc",
        "docs add",
        "docs history",
        "docs ls",
        "docs search",
        "ws restore",
        *_READ_RUNS,
        *_WS_READ,
        *_SKILLS,
        *_EVALS,
    },
    "mlops-engineer": {
        "version",
        "doctor",
        "metrics",
        "trace",
        "models install",
        "models ls",
        "models rm",
        *_RELEASES,
    },
    "approver": {"version", "validate", "trace", "runs approve", "runs reject", *_READ_RUNS},
    "viewer": {"version", "validate", "trace", "metrics", *_READ_RUNS},
}


def test_every_command_has_a_permission_and_every_entry_a_command() -> None:
    commands = {path for path, _ in iter_commands(guarded_command(app, LOCAL_ADMIN, Authorizer))}
    assert commands == set(CLI_PERMISSIONS)


@pytest.mark.parametrize("role", sorted(PRESET_ROLES))
def test_role_matrix(role: str) -> None:
    authorizer = Authorizer()
    who = Principal(id=f"key:{role}", kind="person", name=role, team="research", roles=(role,))
    allowed = set()
    for command, permission in CLI_PERMISSIONS.items():
        if permission is None or authorizer.allows(
            who, permission, Resource(kind=permission.partition(":")[0], team="research")
        ):
            allowed.add(command)
    assert allowed == EXPECTED[role]


def test_the_guard_refuses_before_the_command_runs(capsys: pytest.CaptureFixture[str]) -> None:
    viewer = Principal(id="key:v", kind="person", name="v", team="research", roles=("viewer",))
    refusals: list[str] = []
    authorizer = Authorizer(on_deny=lambda p, perm, res: refusals.append(perm))
    cli = guarded_command(app, viewer, lambda: authorizer)
    with pytest.raises(PermissionDeniedError, match="lacks the permission 'runs:approve'"):
        cli.main(["runs", "approve", "no-such-run"], standalone_mode=False)
    assert refusals == ["runs:approve"]
    cli.main(["version"], standalone_mode=False)
    assert capsys.readouterr().out.strip()


def test_the_local_command_line_acts_as_the_administrator(capsys: pytest.CaptureFixture[str]) -> None:
    cli = guarded_command(app, LOCAL_ADMIN, Authorizer)
    cli.main(["audit", "verify", "--json"], standalone_mode=False)
    assert '"ok": true' in capsys.readouterr().out
    cli.main(["doctor", "--json"], standalone_mode=False)
    assert (
        '"local CLI mode: acting as local-admin (platform-admin: every permission)"'
        in capsys.readouterr().out
    )
