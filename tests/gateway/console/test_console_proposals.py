"""The console's approval form edits what a call proposed (a plan's sub-questions): one input a line,
hostile text escaped, the session's CSRF token needed, a bad edit refused naming its field, a good one the
plan the call runs with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import IMG, SCRIPT, sign_in
from gateway_support import Keys, LiveServer, grant_research, wait_status
from markupsafe import escape

from shopfloor.config import load_settings
from shopfloor.gateway import build_server


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> Iterator[httpx.Client]:
    grant_research(agent_dir)
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as c:
        c.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        yield c


def _searched(api: httpx.Client, run_id: str) -> object:
    events = api.get(f"/v1/runs/{run_id}/events", params={"follow": "false"}).text
    for line in events.splitlines():
        if line.startswith("data: ") and '"tool_result"' in line:
            return json.loads(line[6:])["data"]["output"]
    return None


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_the_approver_edits_the_plan_in_the_form(api: httpx.Client, keys: Keys) -> None:
    task = f"ticks=1 tool=research question={SCRIPT} and {IMG}"
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": task}).json()["run_id"]
    wait_status(api, run_id, "waiting_approval")
    with httpx.Client(base_url=str(api.base_url), timeout=30) as person:
        csrf = sign_in(person, keys.admin)
        for page in (person.get(f"/console/runs/{run_id}").text, person.get("/console/approvals").text):
            # each sub-question an input of its own, then empty ones up to the plan's bound; escaped
            assert f'name="edit.plan.0" value="{escape(SCRIPT)}"' in page
            assert f'name="edit.plan.1" value="{escape(IMG)}"' in page
            assert 'name="edit.plan.2" value=""' in page and 'name="edit.plan.3"' not in page
            assert 'maxlength="40"' in page
            assert SCRIPT not in page and IMG not in page
        # the proposal's fields the tool keeps are shown, not offered for editing
        assert 'name="edit.by"' not in page

        # without the session's token nothing is decided
        unsigned = person.post(f"/console/runs/{run_id}/approve", data={"edit.plan.0": "venv"})
        assert unsigned.status_code == 403
        too_long = person.post(
            f"/console/runs/{run_id}/approve",
            data={"csrf": csrf, "edit.plan.0": "y" * 50, "edit.plan.1": IMG},
        )
        assert too_long.status_code == 422
        assert "proposal.plan.0: at most 40 characters, got 50" in too_long.text
        hostile_field = person.post(
            f"/console/runs/{run_id}/approve", data={"csrf": csrf, f"edit.{SCRIPT}": "1"}
        )
        assert hostile_field.status_code == 422 and "no such field" in hostile_field.text
        assert SCRIPT not in hostile_field.text and escape(SCRIPT) in hostile_field.text
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"

        edited = person.post(
            f"/console/runs/{run_id}/approve",
            data={
                "csrf": csrf,
                "reason": "sharper",
                "edit.plan.0": "  <b>venv</b> & co ",
                "edit.plan.1": "",  # an emptied line drops the sub-question
                "edit.plan.2": "pip install",
            },
        )
        assert edited.status_code == 303, edited.text
        wait_status(api, run_id, "completed")
        page = person.get(f"/console/runs/{run_id}").text
    assert _searched(api, run_id) == {"searched": ["<b>venv</b> & co", "pip install"]}
    assert "<b>venv</b>" not in page and "&lt;b&gt;venv&lt;/b&gt; &amp; co" in page
