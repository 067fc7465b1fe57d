"""Roles and authorisation: deny by default, presets, team scoping, custom roles and bindings from config."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import load_settings
from shopfloor.errors import ConfigError, PermissionDeniedError
from shopfloor.security import (
    LOCAL_ADMIN,
    PERMISSIONS,
    PRESET_ROLES,
    Authorizer,
    Binding,
    Principal,
    Resource,
    Role,
    build_authorizer,
)


def person(*roles: str, team: str | None = "research", pid: str = "key:k1") -> Principal:
    return Principal(id=pid, kind="person", name="pat", team=team, roles=roles, method="api-key")


def test_the_presets_are_named_exactly() -> None:
    assert set(PRESET_ROLES) == {
        "platform-admin",
        "network-admin",
        "ai-developer",
        "mlops-engineer",
        "approver",
        "viewer",
    }
    assert PRESET_ROLES["platform-admin"].permissions() == PERMISSIONS


def test_deny_by_default_names_the_missing_permission() -> None:
    authorizer = Authorizer()
    runs = Resource(kind="runs", name="r1", team="research")
    with pytest.raises(PermissionDeniedError, match=r"'runs:approve' on runs/r1 of team research") as caught:
        authorizer.authorize(person(), "runs:approve", runs)
    assert caught.value.permission == "runs:approve"
    with pytest.raises(PermissionDeniedError, match="runs:approve"):
        authorizer.authorize(person("viewer"), "runs:approve", runs)
    authorizer.authorize(person("approver"), "runs:approve", runs)
    authorizer.authorize(LOCAL_ADMIN, "secrets:delete", Resource(kind="secrets", team="anyone"))


def test_team_roles_apply_to_their_team_only() -> None:
    authorizer = Authorizer()
    dev = person("ai-developer", team="research")
    authorizer.authorize(dev, "runs:start", Resource(kind="runs", team="research"))
    for team in ("payments", None):
        with pytest.raises(PermissionDeniedError):
            authorizer.authorize(dev, "runs:start", Resource(kind="runs", team=team))


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        ("network-admin", ["egress:write", "routes:write"], ["runs:read", "traces:read", "workspaces:read"]),
        ("ai-developer", ["agents:write", "skills:publish", "evals:run"], ["runs:approve", "secrets:read"]),
        ("mlops-engineer", ["models:install", "releases:rollback"], ["runs:start", "secrets:read"]),
        ("approver", ["runs:approve", "runs:read"], ["runs:start", "agents:write"]),
        (
            "viewer",
            ["runs:read", "traces:read", "dashboards:read"],
            ["runs:start", "runs:cancel", "audit:read"],
        ),
    ],
)
def test_what_each_preset_grants(role: str, allowed: list[str], denied: list[str]) -> None:
    authorizer = Authorizer()
    who = person(role)
    for permission in allowed:
        assert authorizer.allows(who, permission, Resource(kind="x", team="research")), permission
    for permission in denied:
        assert not authorizer.allows(who, permission, Resource(kind="x", team="research")), permission


def test_unknown_permissions_and_roles_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown permission 'runs:fly'"):
        Authorizer().allows(LOCAL_ADMIN, "runs:fly")
    with pytest.raises(ConfigError, match=r"'run:\*' matches no permission"):
        Role(name="typo", grants=("run:*",))
    with pytest.raises(ConfigError, match="no role 'ghost'"):
        Authorizer(bindings=[Binding(principal="key:k1", role="ghost")])


def test_denials_reach_the_hook_before_the_error() -> None:
    seen: list[tuple[str, str, Resource | None]] = []
    authorizer = Authorizer(on_deny=lambda p, perm, res: seen.append((p.id, perm, res)))
    with pytest.raises(PermissionDeniedError):
        authorizer.authorize(person("viewer"), "runs:cancel", Resource(kind="runs", team="research"))
    assert seen == [("key:k1", "runs:cancel", Resource(kind="runs", team="research"))]


def test_custom_roles_and_bindings_from_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        """
[security.roles.auditor]
permissions = ["audit:*", "*:read"]
description = "reads everything"

[[security.bindings]]
principal = "key:carol"
role = "approver"
team = "payments"
"""
    )
    authorizer = build_authorizer(
        load_settings({"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_CONFIG": str(config)})
    )
    auditor = person("auditor", team=None, pid="key:aud")
    authorizer.authorize(auditor, "audit:verify", Resource(kind="audit"))
    authorizer.authorize(auditor, "secrets:read", Resource(kind="secrets", team="x"))
    assert not authorizer.allows(auditor, "secrets:write", Resource(kind="secrets"))
    carol = person(team="research", pid="key:carol")
    authorizer.authorize(carol, "runs:approve", Resource(kind="runs", team="payments"))
    assert not authorizer.allows(carol, "runs:approve", Resource(kind="runs", team="research"))


def test_config_refuses_typos_and_preset_names(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[security.roles.viewer]\npermissions = ["runs:read"]\n')
    env = {"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_CONFIG": str(config)}
    with pytest.raises(ConfigError, match="'viewer' is a preset role"):
        build_authorizer(load_settings(env))
    config.write_text('[security.roles.x]\npermissions = ["runs:read"]\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"security\.roles\.x\.colour"):
        load_settings(env)


def test_a_key_is_granted_only_what_its_creator_holds_on_that_team() -> None:
    denied: list[str] = []
    roles = {
        **PRESET_ROLES,
        "team-admin": Role(name="team-admin", grants=("keys:*", "runs:*")),
        "runner": Role(name="runner", grants=("runs:read", "runs:start")),
    }
    authorizer = Authorizer(
        roles=roles,
        # a binding from configuration counts as much as the principal's own role
        bindings=[Binding(principal="key:k2", role="approver", team="research")],
        on_deny=lambda _principal, permission, _resource: denied.append(permission),
    )
    admin = person("team-admin")
    for role in ("runner", "team-admin", None):
        authorizer.authorize_grant(admin, "write", role=role, team="research")
    authorizer.authorize_grant(LOCAL_ADMIN, "write", role="platform-admin", team=None)
    for role, team, missing in (
        ("runner", "ml", "keys:write"),  # another team
        ("runner", None, "keys:write"),  # every team
        ("approver", "research", "agents:read"),  # a permission it lacks
        ("platform-admin", "research", "agents:read"),
    ):
        with pytest.raises(PermissionDeniedError, match=f"'{missing}'"):
            authorizer.authorize_grant(admin, "write", role=role, team=team)
        assert denied[-1] == missing
    # k2 also holds approver on research through the binding: it may hand that role out there
    bound = person("team-admin", pid="key:k2")
    authorizer.authorize_grant(bound, "write", role="approver", team="research")
    with pytest.raises(PermissionDeniedError, match="'keys:write' on keys of team ml"):
        authorizer.authorize_grant(bound, "write", role="approver", team="ml")
    with pytest.raises(PermissionDeniedError, match="'dashboards:read'"):
        authorizer.authorize_grant(bound, "write", role="viewer", team="research")
    # revoking asks keys:delete and the same ceiling; a role since removed grants nothing to check
    authorizer.authorize_grant(admin, "delete", role="removed-role", team="research")
    with pytest.raises(PermissionDeniedError, match="'keys:delete'"):
        authorizer.authorize_grant(person("runner"), "delete", role=None, team="research")
    assert authorizer.check_role("runner") == "runner"
    with pytest.raises(ConfigError, match=r"role 'nobody': no such role .*runner"):
        authorizer.check_role("nobody")
