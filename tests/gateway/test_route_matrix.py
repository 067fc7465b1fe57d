"""Every HTTP route of ``shopfloor serve`` against every preset role, with real requests to a real server on
loopback: the matrix is the specification of who may call what (the CLI's is in
``tests/security/test_cli_matrix.py``).

The routes are enumerated from the built application (the control plane's routes and each sub-application's
documented paths), so a route added without a line in ``ROUTE_PERMISSIONS`` fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from gateway_support import LiveServer
from typer.testing import CliRunner

from shopfloor.cli import app as cli
from shopfloor.config import Settings
from shopfloor.gateway import ROUTE_PERMISSIONS, ShopfloorApp, build_server
from shopfloor.security import PRESET_ROLES, KeyStore, build_audit_log

Route = tuple[str, str]

#: ``/`` and ``/console`` are the console's entry (a redirect); its pages are checked in tests/gateway/console
PUBLIC: set[Route] = {
    ("GET", "/"),
    ("GET", "/console"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/oauth-protected-resource"),
    ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ("GET", "/.well-known/agent-card.json"),
}
RUNS_READ: set[Route] = {
    ("POST", "/a2a/{agent}"),  # A2A: each method asks its own permission too (SendMessage runs:start)
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}"),
    ("GET", "/v1/runs/{run_id}/events"),
    ("GET", "/v1/runs/{run_id}/children"),
}
AGENTS_READ: set[Route] = {("GET", "/v1/agents"), ("GET", "/v1/agents/{name}")}
DASHBOARDS: set[Route] = {("GET", "/metrics"), ("GET", "/v1/metrics/agents")}
TRACES: set[Route] = {("GET", "/v1/runs/{run_id}/trace")}
APPROVE: set[Route] = {("POST", "/v1/runs/{run_id}/approve"), ("POST", "/v1/runs/{run_id}/reject")}
WORKSPACES: set[Route] = {
    ("GET", "/v1/workspaces"),
    *(("GET", f"/v1/workspaces/{{name}}/{what}") for what in ("log", "ls", "file", "diff", "archive")),
}
MODELS: set[Route] = {("GET", "/v1/models")}
CALL: set[Route] = {("POST", f"/v1/{what}") for what in ("chat/completions", "completions", "embeddings")}
CALL.add(("POST", "/mcp"))  # the MCP gateway; each of its tools asks its own permission as well

#: the routes each preset role may call on its own team's resources
EXPECTED: dict[str, set[Route]] = {
    "platform-admin": set(ROUTE_PERMISSIONS),
    "network-admin": PUBLIC | DASHBOARDS | MODELS | CALL,
    "ai-developer": PUBLIC
    | AGENTS_READ
    | RUNS_READ
    | DASHBOARDS
    | TRACES
    | WORKSPACES
    | MODELS
    | CALL
    | {
        ("POST", "/v1/agents"),
        ("POST", "/v1/runs"),
        ("POST", "/v1/runs/{run_id}/cancel"),
        ("POST", "/v1/runs/{run_id}/feedback"),
        ("POST", "/v1/runs/{run_id}/fork"),
    },
    "mlops-engineer": PUBLIC | DASHBOARDS | TRACES | MODELS,
    "approver": PUBLIC | AGENTS_READ | RUNS_READ | TRACES | APPROVE,
    "viewer": PUBLIC | AGENTS_READ | RUNS_READ | TRACES | DASHBOARDS,
}


def app_routes(app: ShopfloorApp) -> set[Route]:
    """Every (method, path template) the application answers: those of its OpenAPI document (the
    control plane's routes and the sub-applications' paths), and the top-level routes outside it
    (HEAD aside)."""
    document = app.api.openapi()
    found = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    for route in app.api.routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None) or set()
        found |= {(method, path) for method in methods if method != "HEAD" and path is not None}
    documented_sub = {path for sub in app.sub_apps for path in sub.openapi_paths()}
    prefixes = tuple(prefix for sub in app.sub_apps for prefix in sub.prefixes)
    exact = {path for path in documented_sub if not path.startswith(prefixes)}
    assert exact == {path for sub in app.sub_apps for path in sub.paths}
    return found


def _request(method: str, path: str) -> tuple[str, str, dict[str, object] | None]:
    url = re.sub(r"\{[a-z_]+\}", "no-such-thing", path)
    body: dict[str, object] | None = None
    if method == "POST":
        body = {"model": "no-such-route", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}
    return method, url, body


@pytest.fixture
def served(settings: Settings, live: list[LiveServer]) -> Iterator[tuple[ShopfloorApp, str]]:
    app = build_server(settings, worker=False)
    live.append(LiveServer(app))
    yield app, live[-1].url


def test_every_route_has_a_permission_and_every_entry_a_route(served: tuple[ShopfloorApp, str]) -> None:
    app, _ = served
    assert app_routes(app) == set(ROUTE_PERMISSIONS)
    assert set(EXPECTED) == set(PRESET_ROLES)


@pytest.mark.parametrize("role", sorted(PRESET_ROLES))
def test_route_matrix(role: str, served: tuple[ShopfloorApp, str], settings: Settings) -> None:
    _, url = served
    store = KeyStore.open(settings.db_url)
    try:
        key = store.create(f"matrix {role}", role=role, team="research", created_by="test")[1]
    finally:
        store.close()
    allowed: set[Route] = set()
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for route, permission in sorted(ROUTE_PERMISSIONS.items(), key=lambda item: item[0]):
            method, path, body = _request(*route)
            response = client.request(method, path, json=body)
            # (the server of a test has no model files: not ready)
            assert response.status_code < 500 or route == ("GET", "/readyz"), (route, response.text)
            if response.status_code == 403:
                # A refusal names the permission that is missing.
                assert f"lacks the permission {permission!r}" in response.text, (route, response.text)
            else:
                allowed.add(route)
    assert allowed == EXPECTED[role]


def test_a_request_without_credentials_reaches_only_the_public_routes(
    served: tuple[ShopfloorApp, str],
) -> None:
    _, url = served
    with httpx.Client(base_url=url, timeout=30) as client:
        for route, permission in ROUTE_PERMISSIONS.items():
            response = client.request(*_request(*route)[:2])
            assert (response.status_code == 401) == (permission is not None), (route, response.text)


def test_authentications_refusals_and_keys_reach_the_audit_log(
    served: tuple[ShopfloorApp, str], settings: Settings
) -> None:
    _, url = served
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "--name", "auditor", "--role", "viewer", "--json"])
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    key = created["key"]
    forged = "sf_000000000000_" + "A" * 43
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/v1/runs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/v1/runs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        called = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert called.status_code == 403 and "'routes:call'" in called.json()["error"]["message"]
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    revoked = runner.invoke(cli, ["keys", "revoke", created["key_id"]])
    assert revoked.exit_code == 0, revoked.output
    with build_audit_log(settings) as audit:
        entries = audit.entries()
        assert audit.verify().ok
    kinds = [(e.kind, e.actor) for e in entries]
    actor = f"key:{created['key_id']}"
    # A key's success is recorded once per interval, each failure every time, never a credential.
    assert kinds.count(("authentication.succeeded", actor)) == 1
    assert kinds.count(("authentication.failed", "anonymous")) == 2
    assert ("permission.denied", actor) in kinds
    denied = next(e for e in entries if e.kind == "permission.denied")
    assert denied.details["permission"] == "routes:call"
    assert [k for k, _ in kinds if k.startswith("key.")] == ["key.created", "key.revoked"]
    created_entry = next(e for e in entries if e.kind == "key.created")
    assert created_entry.actor == "local-admin" and created_entry.details["roles"] == ["viewer"]
    text = json.dumps([e.to_dict() for e in entries], default=str)
    # the secret is everything after the second "_" (it may hold "_" itself: a last fragment can be "8")
    assert key not in text and forged not in text and key.split("_", 2)[2] not in text
