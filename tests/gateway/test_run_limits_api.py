"""Concurrent-run limits over HTTP: ``POST /v1/runs`` past a key's ``concurrent_runs`` is a 429 naming the
limit (no ``Retry-After`` to guess: a slot frees when a run ends), and a cancelled run frees its slot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, LiveServer

from shopfloor.config import Settings, load_settings
from shopfloor.gateway import build_server


@pytest.fixture
def limited(
    fast_runtime: None, settings: Settings, keys: Keys, live: list[LiveServer]
) -> Iterator[httpx.Client]:
    settings.ensure_home()
    (settings.home / "config.toml").write_text('[[security.limits]]\nscope = "key:*"\nconcurrent_runs = 2\n')
    # no worker: the runs stay queued, holding their slots
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as client:
        yield client


def test_a_start_past_the_limit_is_a_429_and_a_cancel_frees_a_slot(
    limited: httpx.Client, agent_dir: Path
) -> None:
    assert limited.post("/v1/agents", json={"path": str(agent_dir)}).status_code == 201
    started = [limited.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"}) for _ in range(2)]
    assert [r.status_code for r in started] == [201, 201], [r.text for r in started]
    refused = limited.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"})
    assert refused.status_code == 429, refused.text
    assert "concurrent runs = 2" in refused.text and "key:" in refused.text
    assert len(limited.get("/v1/runs").json()["runs"]) == 2  # the refused start left no run
    run_id = started[0].json()["run_id"]
    assert limited.post(f"/v1/runs/{run_id}/cancel").status_code == 200
    again = limited.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"})
    assert again.status_code == 201, again.text
