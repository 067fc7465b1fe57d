"""``POST /v1/runs/ID/approve {"proposal": ...}``: a plan approved as edited, a bad edit a 422 whose ``loc``
names the field; and ``shopfloor runs approve --proposal -`` through the same server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, LiveServer, grant_research, wait_status
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.gateway import build_server

cli = CliRunner()
EDITED = ["python venv module", "pip install"]


@pytest.fixture
def api(
    fast_runtime: None, keys: Keys, live: list[LiveServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    monkeypatch.setenv("SHOPFLOOR_URL", live[-1].url)
    monkeypatch.setenv("SHOPFLOOR_API_KEY", keys.admin)
    headers = {"Authorization": f"Bearer {keys.admin}"}
    with httpx.Client(base_url=live[-1].url, timeout=30, headers=headers) as client:
        yield client


def _waiting_run(api: httpx.Client, agent_dir: Path) -> dict[str, Any]:
    grant_research(agent_dir)
    api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=research"}).json()["run_id"]
    return wait_status(api, run_id, "waiting_approval")


def _searched(api: httpx.Client, run_id: str) -> Any:
    with api.stream("GET", f"/v1/runs/{run_id}/events", params={"follow": "false"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and (data := json.loads(line[6:]))["kind"] == "tool_result":
                return data["data"]["output"]
    return None


def test_a_bad_edit_is_a_422_naming_the_field_and_a_good_one_is_what_runs(
    api: httpx.Client, agent_dir: Path
) -> None:
    waiting = _waiting_run(api, agent_dir)
    run_id = waiting["run_id"]
    assert waiting["approval"]["proposal"] == {"plan": ["venv", "pip"], "by": "splitting"}
    assert waiting["approval"]["editable"]["plan"]["maxItems"] == 3

    bad = api.post(f"/v1/runs/{run_id}/approve", json={"proposal": {"plan": ["<b>" + "x" * 60, 7], "new": 1}})
    assert bad.status_code == 422, bad.text
    assert bad.json() == {
        "detail": [
            {
                "loc": ["body", "proposal", "plan", 0],
                "msg": "at most 40 characters, got 63",
                "type": "maxLength",
            },
            {"loc": ["body", "proposal", "plan", 1], "msg": "must be string, got a number", "type": "type"},
            {
                "loc": ["body", "proposal", "new"],
                "msg": "no such field (the proposal's: by, plan)",
                "type": "extra_forbidden",
            },
        ]
    }
    # the body's own shape is FastAPI's to check, named the same way
    not_object = api.post(f"/v1/runs/{run_id}/approve", json={"proposal": ["venv"]})
    assert not_object.status_code == 422 and not_object.json()["detail"][0]["loc"] == ["body", "proposal"]
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"

    approved = api.post(
        f"/v1/runs/{run_id}/approve", json={"reason": "sharper", "proposal": {"plan": EDITED}}
    )
    assert approved.status_code == 200, approved.text
    wait_status(api, run_id, "completed")
    assert _searched(api, run_id) == {"searched": EDITED}


def test_the_command_line_approves_a_proposal_from_standard_input_through_the_server(
    api: httpx.Client, agent_dir: Path
) -> None:
    run_id = _waiting_run(api, agent_dir)["run_id"]
    bad = cli.invoke(app, ["runs", "approve", run_id, "--proposal", "-"], input="plan:\n  - ok\n  - 12\n")
    assert bad.exit_code != 0
    assert "proposal.plan.1: must be string, got a number (<stdin>, line 3)" in str(bad.exception)
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"
    good = cli.invoke(
        app, ["runs", "approve", run_id, "--proposal", "-", "--json"], input=json.dumps({"plan": EDITED})
    )
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["action"] == "approved"
    wait_status(api, run_id, "completed")
    assert _searched(api, run_id) == {"searched": EDITED}
