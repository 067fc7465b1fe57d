"""``POST /v1/runs/{id}/fork``: a fork is a durable run of the worker, recorded with its parent and fork
step, its first steps the parent's recorded outputs; the step is validated and the permission asked
like replay's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, LiveServer, wait_status

from shopfloor.config import load_settings
from shopfloor.gateway import build_server


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer]) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(base_url=live[-1].url, timeout=30, headers=_auth(keys.admin)) as client:
        yield client


def test_a_fork_is_a_run_of_the_worker_live_from_its_step(
    api: httpx.Client, keys: Keys, agent_dir: Path
) -> None:
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    parent = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=2"}).json()["run_id"]
    wait_status(api, parent, "completed")
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=30, headers=_auth(keys.developer)) as dev:
        forked = dev.post(f"/v1/runs/{parent[:10]}/fork", json={"step": 3})
        assert forked.status_code == 201, forked.text
        fork = forked.json()
        assert fork["run_id"] != parent and fork["status"] in ("queued", "running", "completed")
        assert (fork["parent_run_id"], fork["fork_step"]) == (parent, 3)
        assert fork["caller"].startswith("key:") and fork["task"] == "ticks=2"
        done = wait_status(dev, fork["run_id"], "completed")
    assert done["output"] == "done after 2 ticks" and done["parent_run_id"] == parent
    calls = (agent_dir / "calls.log").read_text().split()
    # before step 3 the parent's outputs: its first tick was not called again, its second was
    assert f"tool:{fork['run_id']}:1" not in calls and calls.count(f"tool:{fork['run_id']}:2") == 1
    assert calls.count("model:1") == 1
    listed = [r["run_id"] for r in api.get("/v1/runs").json()["runs"]]
    assert fork["run_id"] in listed


def test_a_fork_is_refused_with_the_reason(api: httpx.Client, keys: Keys, agent_dir: Path) -> None:
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    ended = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"}).json()["run_id"]
    waiting = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()[
        "run_id"
    ]
    wait_status(api, ended, "completed")
    wait_status(api, waiting, "waiting_approval")
    # a step outside the record (1..4: three recorded steps and one past them) names the field
    for step in (0, 5, "x"):
        refused = api.post(f"/v1/runs/{ended}/fork", json={"step": step})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "step"], refused.text
    assert "from 1 to 4" in api.post(f"/v1/runs/{ended}/fork", json={"step": 5}).text
    assert api.post(f"/v1/runs/{ended}/fork", json={"step": 2, "extra": 1}).status_code == 422
    assert api.post(f"/v1/runs/{waiting}/fork", json={"step": 1}).status_code == 409  # not ended
    assert api.post("/v1/runs/nosuchrun/fork", json={"step": 1}).status_code == 404
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=30, headers=_auth(keys.viewer)) as viewer:
        denied = viewer.post(f"/v1/runs/{ended}/fork", json={"step": 1})
        assert denied.status_code == 403 and "runs:start" in denied.text
    assert [r["run_id"] for r in api.get("/v1/runs").json()["runs"] if r["parent_run_id"]] == []
    api.post(f"/v1/runs/{waiting}/cancel").raise_for_status()
