"""The Runs API against a server that hosts the run worker: agents, runs, SSE events (resumable),
idempotency, cursor pagination, approvals by the authenticated principal, cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, LiveServer, wait_status, wait_trace

from shopfloor.config import Settings, load_settings
from shopfloor.gateway import build_server
from shopfloor.security import KeyStore


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _events(client: httpx.Client, run_id: str, **headers: str) -> list[dict[str, Any]]:
    """Follow the run's SSE stream to its end: each event's id, name and data."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    found.append(current)
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return found


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer]) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(base_url=live[-1].url, timeout=30, headers=_auth(keys.admin)) as client:
        yield client


def test_agents_are_registered_validated_and_listed(api: httpx.Client, agent_dir: Path, keys: Keys) -> None:
    created = api.post("/v1/agents", json={"path": str(agent_dir)})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "ticker" and created.json()["registered_by"].startswith("key:")
    assert [a["name"] for a in api.get("/v1/agents").json()] == ["ticker"]
    assert api.get("/v1/agents/ticker").json()["digest"].startswith("sha256:")
    bad = api.post("/v1/agents", json={"spec": "name: x\ninstructions: hi\nmodel: test\nunknown_field: 1\n"})
    assert bad.status_code == 422, bad.text
    problem = bad.json()["problems"][0]
    assert (
        problem["file"].endswith("agent.yaml")
        and problem["line"] == 4
        and "unknown_field" in problem["message"]
    )
    inline = api.post("/v1/agents", json={"spec": "name: inline\ninstructions: hi\nmodel: test\n"})
    assert inline.status_code == 201, inline.text
    assert api.post("/v1/agents", json={"path": "/x", "spec": "y"}).status_code == 422
    # A directory carries code the workers run: only a platform administrator registers one.
    dev = api.post("/v1/agents", json={"path": str(agent_dir)}, headers=_auth(keys.developer))
    assert dev.status_code == 403 and "'agents:register-path'" in dev.json()["detail"]
    viewer = api.post(
        "/v1/agents", json={"spec": "name: v\ninstructions: hi\nmodel: test\n"}, headers=_auth(keys.viewer)
    )
    assert viewer.status_code == 403 and "'agents:write'" in viewer.json()["detail"]


def test_agents_of_another_team_are_neither_shown_nor_written(api: httpx.Client, keys: Keys) -> None:
    spec = "name: {name}\ninstructions: hi\nmodel: test\npermissions:\n  team: {team}\n"
    dev = _auth(keys.developer)
    refused = api.post("/v1/agents", json={"spec": spec.format(name="pay", team="payments")}, headers=dev)
    assert refused.status_code == 403, refused.text
    assert "'agents:write' on agents/pay of team payments" in refused.json()["detail"]
    ours = api.post("/v1/agents", json={"spec": spec.format(name="res", team="research")}, headers=dev)
    assert ours.status_code == 201, ours.text
    api.post("/v1/agents", json={"spec": spec.format(name="pay", team="payments")}).raise_for_status()
    api.post("/v1/agents", json={"spec": "name: shared\ninstructions: hi\nmodel: test\n"}).raise_for_status()
    viewer = _auth(keys.viewer)
    assert [a["name"] for a in api.get("/v1/agents", headers=viewer).json()] == ["res", "shared"]
    assert [a["name"] for a in api.get("/v1/agents").json()] == ["pay", "res", "shared"]
    assert api.get("/v1/agents/res", headers=viewer).status_code == 200
    other = api.get("/v1/agents/pay", headers=viewer)
    assert (
        other.status_code == 403 and "'agents:read' on agents/pay of team payments" in other.json()["detail"]
    )
    started = api.post("/v1/runs", json={"agent": "pay", "input": "x"}, headers=dev)
    assert (
        started.status_code == 403 and "'runs:start' on runs/pay of team payments" in started.json()["detail"]
    )
    # A run carries its agent's team: read by that team (and global roles) only, listed only to them.
    paid = api.post("/v1/runs", json={"agent": "pay", "input": "x"}).json()["run_id"]
    shared = api.post("/v1/runs", json={"agent": "shared", "input": "x"}).json()["run_id"]
    wait_status(api, paid, "completed")
    wait_status(api, shared, "completed")
    for path in (f"/v1/runs/{paid}", f"/v1/runs/{paid}/events", f"/v1/runs/{paid}/trace"):
        hidden = api.get(path, headers=viewer)
        assert hidden.status_code == 403 and f"/{paid} of team payments" in hidden.text, path
    assert api.get(f"/v1/runs/{shared}", headers=viewer).status_code == 200
    assert [r["run_id"] for r in api.get("/v1/runs", headers=viewer).json()["runs"]] == [shared]
    assert {r["run_id"] for r in api.get("/v1/runs").json()["runs"]} == {paid, shared}
    cancel = api.post(f"/v1/runs/{paid}/cancel", headers=dev)
    assert cancel.status_code == 403 and "'runs:cancel'" in cancel.text


def test_a_run_started_through_the_api_runs_durably_and_streams_its_events(
    api: httpx.Client, agent_dir: Path
) -> None:
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    body = {"agent": "ticker", "input": "ticks=2"}
    first = api.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    run_id = first.json()["run_id"]
    assert first.json()["caller"].startswith("key:")
    again = api.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.json()["run_id"] == run_id
    conflict = api.post("/v1/runs", json={**body, "input": "ticks=3"}, headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409
    events = _events(api, run_id)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert [int(e["id"]) for e in events] == sorted(int(e["id"]) for e in events)
    assert events[-1]["data"]["data"]["status"] == "completed"
    # Resuming after an event gives exactly the ones after it.
    middle = events[len(events) // 2]
    resumed = _events(api, run_id, **{"Last-Event-ID": middle["id"]})
    assert resumed == events[len(events) // 2 + 1 :]
    run = wait_status(api, run_id, "completed")
    assert run["output"] == "done after 2 ticks" and run["steps"] >= 2
    # Its trace, as `shopfloor trace --json` prints it (spans reach the store in batches), and metrics.
    trace = wait_trace(api, run_id)
    assert trace["run_id"] == run_id
    assert api.get("/v1/metrics/agents", params={"agent": "ticker"}).json()["runs"] >= 1
    # Pagination: a second run, then pages of one.
    second = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"}).json()["run_id"]
    page = api.get("/v1/runs", params={"limit": 1}).json()
    assert [r["run_id"] for r in page["runs"]] == [second] and page["next_cursor"]
    rest = api.get("/v1/runs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [r["run_id"] for r in rest["runs"]] == [run_id] and rest["next_cursor"] is None
    assert [r["run_id"] for r in api.get("/v1/runs", params={"status": "nope"}).json()["runs"]] == []


def test_approvals_are_decided_as_the_authenticated_principal(
    api: httpx.Client, agent_dir: Path, settings: Settings, keys: Keys
) -> None:
    store = KeyStore.open(settings.db_url)
    alice_key, alice = store.create("alice", created_by="test")
    store.close()
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()["run_id"]
    waiting = wait_status(api, run_id, "waiting_approval")
    assert waiting["approval"]["tool"] == "transfer"
    # Neither named in the spec's approvers nor holding runs:approve: refused, naming the permission.
    refused = api.post(
        f"/v1/runs/{run_id}/approve", json={"reason": "looks fine"}, headers=_auth(keys.developer)
    )
    assert refused.status_code == 403 and "'runs:approve'" in refused.json()["detail"]
    # alice holds no role at all, but the spec names her as the approver.
    approved = api.post(f"/v1/runs/{run_id}/approve", json={"reason": "ok"}, headers=_auth(alice))
    assert approved.status_code == 200, approved.text
    wait_status(api, run_id, "completed")
    decided = [e for e in _events(api, run_id) if e["event"] == "approval_decided"]
    assert (
        decided[0]["data"]["data"]["by"] == f"key:{alice_key.key_id}"
        and decided[0]["data"]["data"]["approved"]
    )
    # Cancel: a finished run cannot be; a waiting one is at once.
    assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 409
    other = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()["run_id"]
    wait_status(api, other, "waiting_approval")
    cancelled = api.post(f"/v1/runs/{other}/cancel")
    assert cancelled.json()["status"] == "cancelled", cancelled.text


def _open_streams(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("shopfloor_sse_streams "):
            return float(line.split()[1])
    raise AssertionError("no shopfloor_sse_streams in /metrics")


def test_a_client_that_goes_away_frees_its_event_stream(api: httpx.Client, agent_dir: Path) -> None:
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()["run_id"]
    wait_status(api, run_id, "waiting_approval")
    assert _open_streams(api) == 0
    # The run waits for a person: its stream would stay open for as long as the client listens.
    with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
        lines = response.iter_lines()
        assert next(lines).startswith("id: ")
        assert _open_streams(api) == 1
    deadline = time.monotonic() + 10
    while _open_streams(api) != 0:
        assert time.monotonic() < deadline, "the server kept following a stream nobody reads"
        time.sleep(0.05)
    api.post(f"/v1/runs/{run_id}/cancel").raise_for_status()


def test_concurrent_retries_with_one_idempotency_key_start_one_run(
    api: httpx.Client, agent_dir: Path
) -> None:
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    body = {"agent": "ticker", "input": "ticks=1"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: api.post("/v1/runs", json=body, headers={"Idempotency-Key": "same"}), range(8))
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert len(api.get("/v1/runs").json()["runs"]) == 1
