"""``/v1/keys``: keys managed over HTTP, never granting more than the caller holds, the secret shown once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from gateway_support import Keys, LiveServer

from shopfloor.config import Settings, load_settings
from shopfloor.gateway import build_server
from shopfloor.security import KeyStore, build_audit_log

#: a team's key administrator: keys, and running agents, of its team only
CONFIG = """
[security.roles.team-admin]
permissions = ["keys:*", "runs:read", "runs:start", "agents:read"]

[security.roles.runner]
permissions = ["runs:read", "runs:start"]
"""


@pytest.fixture
def server(settings: Settings, keys: Keys, live: list[LiveServer]) -> Iterator[tuple[str, str]]:
    """The server's URL, and a key of ``team-admin`` for the team ``research``."""
    (settings.home / "config.toml").write_text(CONFIG)
    store = KeyStore.open(settings.db_url)
    try:
        team_admin = store.create("team admin", role="team-admin", team="research", created_by="test")[1]
    finally:
        store.close()
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    yield live[-1].url, team_admin


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def test_create_show_list_revoke_and_the_secret_shown_once(
    server: tuple[str, str], keys: Keys, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = server
    caplog.set_level(logging.DEBUG)
    with _client(url, keys.admin) as admin:
        made = admin.post(
            "/v1/keys", json={"name": "ci bot", "role": "viewer", "team": "ml", "expires_in": 3600}
        )
        assert made.status_code == 201, made.text
        assert made.headers["cache-control"] == "no-store"
        created = made.json()
        key, key_id = created["key"], created["key_id"]
        secret = key.split("_", 2)[2]
        assert key.startswith(f"sf_{key_id}_") and created["state"] == "active"
        assert created["created_by"].startswith("key:") and created["expires_at"] > created["created_at"]
        with _client(url, key) as bot:
            assert bot.get("/v1/runs").status_code == 200  # the new key works at once
            shown = admin.get(f"/v1/keys/{key_id}")
            listed = admin.get("/v1/keys")
            assert shown.status_code == listed.status_code == 200
            assert {k: v for k, v in created.items() if k != "key"} == shown.json()
            assert key_id in [k["key_id"] for k in listed.json()]
            assert secret not in shown.text + listed.text
            revoked = admin.post(f"/v1/keys/{key_id}/revoke")
            assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
            # the server that revoked it refuses it at once (not after its credential cache expires)
            assert bot.get("/v1/runs").status_code == 401
        again = admin.post(f"/v1/keys/{key_id}/revoke")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        missing = admin.get("/v1/keys/0123456789ab")
        assert missing.status_code == 404 and missing.json()["type"] == "KeyNotFoundError"
        for body, field in (
            ({"name": "x", "role": "nobody"}, "nobody"),
            ({"name": "x", "expires_in": -1}, "expires_in"),
            ({"name": "x", "secret": "mine"}, "secret"),
            ({"name": "!bad"}, "key name"),
        ):
            refused = admin.post("/v1/keys", json=body)
            assert refused.status_code == 422 and field in refused.text, (body, refused.text)
    with build_audit_log(settings) as audit:
        entries = audit.entries()
    changes = [(e.kind, e.actor, e.resource) for e in entries if e.kind.startswith("key.")]
    admin_id = created["created_by"]
    assert changes == [
        ("key.created", admin_id, f"keys/{key_id}"),
        ("key.revoked", admin_id, f"keys/{key_id}"),
    ]
    text = json.dumps([e.to_dict() for e in entries], default=str)
    assert secret not in text and secret not in caplog.text


def test_a_caller_never_grants_more_than_it_holds(
    server: tuple[str, str], keys: Keys, settings: Settings
) -> None:
    url, team_admin = server
    with _client(url, team_admin) as caller, _client(url, keys.admin) as admin:
        # its own team, a role within its own permissions (or its own role): allowed
        for role in ("runner", "team-admin", None):
            made = caller.post("/v1/keys", json={"name": f"k {role}", "role": role, "team": "research"})
            assert made.status_code == 201, (role, made.text)
        runner = caller.post("/v1/keys", json={"name": "runner", "role": "runner", "team": "research"}).json()
        # a role granting what it lacks, another team, or every team: refused, naming what it lacks
        for body, missing in (
            ({"role": "viewer", "team": "research"}, "'dashboards:read'"),
            ({"role": "platform-admin", "team": "research"}, "'agents:register-path'"),
            ({"role": "runner", "team": "ml"}, "'keys:write'"),
            ({"role": "runner"}, "'keys:write'"),
            ({}, "'keys:write'"),
        ):
            refused = caller.post("/v1/keys", json={"name": "escalation", **body})
            assert refused.status_code == 403 and missing in refused.json()["detail"], (body, refused.text)
        # it sees and revokes its team's keys, not the others'
        visible = {k["name"] for k in caller.get("/v1/keys").json()}
        assert {"runner", "team admin", "viewer", "dev"} <= visible and not visible & {"admin", "gone"}
        every_key = admin.get("/v1/keys").json()
        admin_key = next(k for k in every_key if k["name"] == "admin")
        shown = caller.get(f"/v1/keys/{admin_key['key_id']}")
        assert shown.status_code == 403 and "'keys:read'" in shown.text
        for name, missing in (("admin", "'keys:delete'"), ("viewer", "'dashboards:read'")):
            target = next(k for k in every_key if k["name"] == name)
            refused = caller.post(f"/v1/keys/{target['key_id']}/revoke")
            assert refused.status_code == 403 and missing in refused.text, (name, refused.text)
        assert caller.post(f"/v1/keys/{runner['key_id']}/revoke").json()["state"] == "revoked"
        # a viewer holds no keys permission at all
        with _client(url, keys.viewer) as viewer:
            assert "'keys:read'" in viewer.get("/v1/keys").text
            assert viewer.post("/v1/keys", json={"name": "v"}).status_code == 403
    with build_audit_log(settings) as audit:
        denied = [e.details["permission"] for e in audit.entries() if e.kind == "permission.denied"]
    assert {"dashboards:read", "agents:register-path", "keys:write", "keys:delete"} <= set(denied)
