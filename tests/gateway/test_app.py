"""The server's application on a real socket: authentication on every route, sub-application
dispatch, the OpenAPI document, error bodies, the body size limit, health probes and metrics."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from gateway_support import Keys, LiveServer
from prometheus_client import CollectorRegistry, Counter

from shopfloor.config import Settings
from shopfloor.gateway import ASGIReceive, ASGIScope, ASGISend, ServerGovernance, SubApp, build_server
from shopfloor.runtime import Services
from shopfloor.security import Authenticator


class EchoApp(SubApp):
    """A raw sub-application that authenticates with the server's authenticator and echoes the body."""

    paths = frozenset({"/v1/echo"})

    def __init__(self, registry: CollectorRegistry, authenticator: Authenticator, log: list[str]) -> None:
        self.authenticator = authenticator
        self.log = log
        self.calls = Counter("echo_calls", "echo requests", registry=registry)

    async def startup(self) -> None:
        self.log.append("startup")

    async def shutdown(self) -> None:
        self.log.append("shutdown")

    def openapi_paths(self) -> dict[str, Any]:
        return {"/v1/echo": {"post": {"summary": "echo", "responses": {"200": {"description": "the body"}}}}}

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode() or None
        try:
            principal = self.authenticator.authenticate(authorization).id
        except Exception:
            principal = "anonymous"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.inc()
        out = json.dumps(
            {
                "echo": body.decode(),
                "principal": principal,
                "raw": "app" not in scope and "route" not in scope,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})


@pytest.fixture
def server(settings: Settings, keys: Keys, live: list[LiveServer]) -> tuple[LiveServer, list[str]]:
    log: list[str] = []

    def echo(
        services: Services, registry: CollectorRegistry, authenticator: Authenticator, _: ServerGovernance
    ) -> SubApp:
        return EchoApp(registry, authenticator, log)

    live.append(LiveServer(build_server(settings, sub_apps=[echo], worker=False)))
    return live[-1], log


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PROTECTED = [
    ("GET", "/v1/runs"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/abc"),
    ("GET", "/v1/runs/abc/events"),
    ("GET", "/v1/runs/abc/children"),
    ("POST", "/v1/runs/abc/approve"),
    ("POST", "/v1/runs/abc/reject"),
    ("POST", "/v1/runs/abc/cancel"),
    ("POST", "/v1/runs/abc/feedback"),
    ("POST", "/v1/runs/abc/fork"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents"),
    ("GET", "/v1/agents/x"),
    ("GET", "/v1/runs/abc/trace"),
    ("GET", "/v1/metrics/agents"),
    ("GET", "/v1/workspaces"),
    ("GET", "/v1/workspaces/x/log"),
    ("GET", "/v1/workspaces/x/ls"),
    ("GET", "/v1/workspaces/x/file"),
    ("GET", "/v1/workspaces/x/diff"),
    ("GET", "/v1/workspaces/x/archive"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/k"),
    ("POST", "/v1/keys/k/revoke"),
    ("GET", "/metrics"),
]


def test_every_route_but_probes_and_the_document_needs_credentials(
    server: tuple[LiveServer, list[str]], keys: Keys
) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for method, path in PROTECTED:
            for headers in ({}, _auth(keys.revoked), _auth("sf_000000000000_" + "A" * 43), _auth("x.y.z")):
                response = client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.json()["type"] == "AuthenticationError"
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code in (200, 503)
        assert {"database", "models", "sandbox"} <= set(ready.json()["components"])
        assert ready.json()["components"]["database"]["status"] == "ok"
        # Every route in the document is one of the checked ones or a public one.
        document = client.get("/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        documented = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
        # ("GET", "/") and ("GET", "/console"): the console's entries, redirects to its pages
        # (tests/gateway/console)
        public = {
            ("GET", "/"),
            ("GET", "/console"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("POST", "/v1/echo"),
        }
        templated = {
            (m, p.replace("abc", "{run_id}").replace("/x", "/{name}", 1).replace("keys/k", "keys/{key_id}"))
            for m, p in PROTECTED
        }
        assert documented == templated | public


def test_sub_apps_get_their_paths_raw_and_share_the_registry(
    server: tuple[LiveServer, list[str]], keys: Keys
) -> None:
    live, log = server
    assert log == ["startup"]
    with httpx.Client(base_url=live.url, timeout=10) as client:
        answer = client.post("/v1/echo", content=b"hello", headers=_auth(keys.admin)).json()
        assert answer["echo"] == "hello" and answer["principal"].startswith("key:") and answer["raw"]
        assert client.post("/v1/echo", content=b"x").json()["principal"] == "anonymous"
        # A path the sub-application does not own exactly is not its.
        assert client.post("/v1/echo/", content=b"x", headers=_auth(keys.admin)).status_code == 404
        metrics = client.get("/metrics", headers=_auth(keys.viewer)).text
        assert "echo_calls_total 2.0" in metrics
        assert 'shopfloor_api_requests_total{method="POST",status="404"} 1.0' in metrics


def test_errors_are_json_that_name_the_problem(server: tuple[LiveServer, list[str]], keys: Keys) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url, timeout=10, headers=_auth(keys.admin)) as client:
        bad = client.post("/v1/runs", json={"agent": "a", "input": "x", "surprise": 1})
        assert bad.status_code == 422
        assert ["body", "surprise"] in [item["loc"] for item in bad.json()["detail"]]
        missing = client.post("/v1/runs", json={"agent": "nobody", "input": "go"})
        assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
        assert client.get("/v1/runs/does-not-exist").status_code == 404
        assert client.get("/v1/runs", params={"cursor": "%%%"}).status_code == 422
        assert client.post("/v1/agents", json={}).status_code == 422
        not_json = client.post("/v1/runs", content=b"{", headers={"content-type": "application/json"})
        assert not_json.status_code == 422


def test_bodies_over_the_limit_get_413(
    server: tuple[LiveServer, list[str]], keys: Keys, settings: Settings
) -> None:
    live, _ = server
    limit = settings.server.max_body_bytes
    big = b"x" * (limit + 1)

    def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    with httpx.Client(base_url=live.url, timeout=10, headers=_auth(keys.admin)) as client:
        assert client.post("/v1/runs", content=big).status_code == 413
        assert client.post("/v1/echo", content=big).status_code == 413
        assert client.post("/v1/runs", content=chunks()).status_code == 413
        small = client.post("/v1/echo", content=iter([b"a", b"b"]))
        assert small.json()["echo"] == "ab"
