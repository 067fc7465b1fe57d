"""A running server follows the GitOps policy file without a restart: new roles, bindings, limits,
routes and aliases are served once the file changes; a file that does not load, or that names a role
nobody defines, leaves the server on the policy it had, and the refusal is audited with its reason.
A real server on loopback, the file replaced whole as ``shopfloor gitops sync`` writes it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, LiveServer

from shopfloor.config import GITOPS_POLICY, Settings, load_settings
from shopfloor.gateway import build_server
from shopfloor.gateway._policy import POLICY_WATCHER
from shopfloor.security import KeyStore, build_audit_log

FAST = {"upstreams": [{"kind": "model", "model": "test"}]}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _write(home: Path, policy: dict[str, Any] | str) -> None:
    """Replace the file whole (a temporary file renamed over it), as the controller does."""
    path = home / GITOPS_POLICY
    path.parent.mkdir(parents=True, exist_ok=True)
    text = policy if isinstance(policy, str) else json.dumps(policy)
    (path.parent / "policy.json.tmp").write_text(text)
    os.replace(path.parent / "policy.json.tmp", path)


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"the server did not {what}"
        time.sleep(0.05)


def _audited(settings: Settings, kind: str) -> list[Any]:
    with build_audit_log(settings) as audit:
        return audit.entries(kind=kind)


@pytest.fixture
def server(
    fast_runtime: None, keys: Keys, live: list[LiveServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, httpx.Client, str]]:
    """A server whose policy has one route; an admin client and a viewer's (no ``routes:call``)."""
    monkeypatch.setenv("SHOPFLOOR_SERVER__POLICY_POLL_SECONDS", "0.05")
    settings = load_settings()
    settings.ensure_home()
    _write(settings.home, {"routes": {"fast": FAST}})
    store = KeyStore.open(settings.db_url)
    try:
        record, secret = store.create("caller", role="viewer", team="research", created_by="test")
    finally:
        store.close()
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    url = live[-1].url
    with (
        httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as admin,
        httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {secret}"}) as caller,
    ):
        yield admin, caller, f"key:{record.key_id}"


def _models(admin: httpx.Client) -> set[str]:
    return {model["id"] for model in admin.get("/v1/models").json()["data"]}


def test_a_changed_policy_is_served_without_a_restart_and_a_bad_one_is_refused(
    server: tuple[httpx.Client, httpx.Client, str],
) -> None:
    admin, caller, principal = server
    settings = load_settings()  # (read while the file loads: the audit log's place)
    home = settings.home
    assert "fast" in _models(admin) and "slow" not in _models(admin)
    refused = caller.post("/v1/chat/completions", json={**CHAT, "model": "fast"})
    assert refused.status_code == 403 and "routes:call" in refused.text
    _write(
        home,
        {
            "routes": {"fast": FAST, "slow": FAST},
            "aliases": {"quick": "fast"},
            "roles": {"caller": {"permissions": ["routes:call", "routes:read"]}},
            "bindings": [{"principal": principal, "role": "caller"}],
            "limits": [{"scope": principal, "requests_per_minute": 1}],
        },
    )
    _until(lambda: "slow" in _models(admin), "serve the new route")
    # the binding and the custom role, the alias, and the limit: all of the new policy, at once
    answered = caller.post("/v1/chat/completions", json={**CHAT, "model": "quick"})
    assert answered.status_code == 200, answered.text
    limited = caller.post("/v1/chat/completions", json={**CHAT, "model": "slow"})
    assert limited.status_code == 429, limited.text
    [reloaded] = _audited(settings, "gitops.policy_reloaded")
    assert reloaded.actor == POLICY_WATCHER and reloaded.details["routes"] == ["fast", "slow"]
    assert reloaded.details["roles"] == ["caller"] and reloaded.details["aliases"] == ["quick"]

    # A file that is not JSON: refused, the server keeps what it serves.
    _write(home, "{not json")
    _until(lambda: len(_audited(settings, "gitops.policy_rejected")) == 1, "audit the refusal")
    [rejected] = _audited(settings, "gitops.policy_rejected")
    assert rejected.outcome == "failed" and "unreadable" in rejected.details["reason"]
    assert {"fast", "slow", "quick"} <= _models(admin)
    # A policy that loads but binds a role nobody defines: refused whole (the routes it would drop stay).
    _write(home, {"routes": {"fast": FAST}, "bindings": [{"principal": principal, "role": "ghost"}]})
    _until(lambda: len(_audited(settings, "gitops.policy_rejected")) == 2, "audit the second refusal")
    assert "no role 'ghost'" in _audited(settings, "gitops.policy_rejected")[-1].details["reason"]
    assert "slow" in _models(admin)
    assert caller.post("/v1/chat/completions", json={**CHAT, "model": "quick"}).status_code == 429
    # A good file again: served (the binding gone, the caller refused again).
    _write(home, {"routes": {"fast": FAST}})
    _until(lambda: "slow" not in _models(admin), "drop the removed route")
    assert caller.post("/v1/chat/completions", json={**CHAT, "model": "fast"}).status_code == 403
    assert len(_audited(settings, "gitops.policy_reloaded")) == 2


def test_a_policy_changed_while_the_server_starts_is_served(
    fast_runtime: None, keys: Keys, live: list[LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOOR_SERVER__POLICY_POLL_SECONDS", "0.05")
    settings = load_settings()
    settings.ensure_home()
    _write(settings.home, {"routes": {"fast": FAST}})
    read_at_start = load_settings()
    _write(settings.home, {"routes": {"fast": FAST, "late": FAST}})  # after the read, before the watcher
    live.append(LiveServer(build_server(read_at_start, worker=False)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as admin:
        _until(lambda: "late" in _models(admin), "serve the policy written while it started")
    [reloaded] = _audited(settings, "gitops.policy_reloaded")
    assert reloaded.details["routes"] == ["fast", "late"]
