"""A run's child runs through the server: ``GET /v1/runs/{id}/children``, the console's run page (their
tasks escaped, each linked both ways) and ``shopfloor runs show`` against the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import HOSTILE, sign_in
from gateway_support import Keys, LiveServer, wait_status
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.gateway import build_server

cli = CliRunner()


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as client:
        client.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        yield client


def test_children_are_listed_by_the_api_the_console_and_the_remote_command_line(
    api: httpx.Client, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = api.post("/v1/runs", json={"agent": "ticker", "input": f"fanout=2 label={HOSTILE}"})
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    wait_status(api, run_id, "completed")

    answer = api.get(f"/v1/runs/{run_id[:10]}/children")
    assert answer.status_code == 200, answer.text
    children = answer.json()
    assert [c["task"] for c in children] == [f"part {i} {HOSTILE}" for i in range(2)]
    assert {(c["status"], c["parent_run_id"]) for c in children} == {("completed", run_id)}
    assert [c["child_params"]["params"] for c in children] == [{"i": 0}, {"i": 1}]
    assert api.get(f"/v1/runs/{run_id}").json()["child_params"] is None
    assert api.get(f"/v1/runs/{children[0]['run_id']}/children").json() == []
    assert api.get("/v1/runs/nosuchrun/children").status_code == 404
    base = str(api.base_url).rstrip("/")
    unauthenticated = httpx.get(f"{base}/v1/runs/{run_id}/children")
    assert unauthenticated.status_code == 401

    with httpx.Client(base_url=base, timeout=30) as person:
        sign_in(person, keys.developer)
        page = person.get(f"/console/runs/{run_id}")
        assert page.status_code == 200, page.text
        assert "Child runs (2)" in page.text
        assert all(f'href="/console/runs/{c["run_id"]}"' in page.text for c in children)
        assert HOSTILE not in page.text and "&lt;script&gt;window.__pwned" in page.text
        child_page = person.get(f"/console/runs/{children[1]['run_id']}").text
        assert 'id="child-of"' in child_page and f'href="/console/runs/{run_id}"' in child_page

    monkeypatch.setenv("SHOPFLOOR_URL", base)
    monkeypatch.setenv("SHOPFLOOR_API_KEY", keys.admin)
    shown = cli.invoke(app, ["runs", "show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    assert [c["run_id"] for c in json.loads(shown.stdout)["children"]] == [c["run_id"] for c in children]
