"""``POST /v1/runs`` of a deployed agent and ``POST /v1/runs/{id}/feedback`` on a real server on loopback:
the run lands on the deployed release, the feedback is stored with that release and audited; the server
evaluates canaries on its own where ``releases.evaluate_every`` says so."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, LiveServer, wait_status
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.gateway import build_server
from shopfloor.ops.releases import CANARY_EVALUATOR, Deployments, Releases
from shopfloor.runtime import RunRecord, RunStore, compose
from shopfloor.security import build_audit_log
from shopfloor.skills import generate_key


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer]) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(base_url=live[-1].url, timeout=30, headers=_auth(keys.admin)) as client:
        yield client


def test_runs_of_a_deployed_agent_take_feedback_per_release(
    api: httpx.Client, agent_dir: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    services = compose(settings)
    key = generate_key("releaser", settings.home / "keys").private_path
    try:
        with Releases(services) as releases:
            release, _ = releases.create(agent_dir, key=key, actor="alice", version="3.0.0")
            Deployments(releases).deploy("ticker@3.0.0", actor="alice")
            # Deployed, never registered: the server starts it by name on the release.
            started = api.post(
                "/v1/runs", json={"agent": "ticker", "input": "ticks=1"}, headers=_auth(keys.developer)
            )
            assert started.status_code == 201, started.text
            run = wait_status(api, started.json()["run_id"], "completed")
            assert run["release_digest"] == release.agent_digest
            url = f"/v1/runs/{run['run_id']}/feedback"
            given = api.post(url, json={"rating": -1, "correction": "tock"}, headers=_auth(keys.developer))
            assert given.status_code == 201, given.text
            assert given.json()["release"] == "ticker@3.0.0" and given.json()["author"].startswith("key:")
            bad = api.post(url, json={"rating": 5}, headers=_auth(keys.developer))
            assert bad.status_code == 422 and "rating" in bad.text
            extra = api.post(url, json={"rating": 1, "score": 1}, headers=_auth(keys.developer))
            assert extra.status_code == 422 and "score" in extra.text
            refused = api.post(url, json={"rating": 1}, headers=_auth(keys.viewer))
            assert refused.status_code == 403 and "'runs:feedback'" in refused.text
            missing = api.post("/v1/runs/nope/feedback", json={"rating": 1}, headers=_auth(keys.developer))
            assert missing.status_code == 404
            metrics = Deployments(releases).metrics("ticker", "3.0.0", since=0)
            assert (metrics.runs, metrics.feedback_count, metrics.feedback_mean) == (1, 1, -1.0)
            # The command line against the server: the same feedback, as the key's principal.
            monkeypatch.setenv("SHOPFLOOR_URL", str(api.base_url))
            monkeypatch.setenv("SHOPFLOOR_API_KEY", keys.admin)
            result = CliRunner().invoke(app, ["runs", "feedback", run["run_id"], "--rating", "1", "--json"])
            assert result.exit_code == 0, (result.output, result.exception)
            assert (
                json.loads(result.stdout)["rating"] == 1
                and json.loads(result.stdout)["author"] != "local-admin"
            )
            metrics = Deployments(releases).metrics("ticker", "3.0.0", since=0)
            assert (metrics.feedback_count, metrics.feedback_mean) == (2, 0.0)
    finally:
        services.close()
    with build_audit_log(settings) as audit:
        entry = audit.entries(kind="run.feedback")[-1]
    assert entry.resource == f"runs/{run['run_id']}" and entry.details["release"] == "ticker@3.0.0"
    assert entry.actor.startswith("key:")


JUDGE = """\
def grade(request):
    answer = request.messages[0].content.split("Agent's answer:", 1)[1]
    return "SCORE: 5" if "tock" in answer else "SCORE: 1"
"""


@pytest.mark.parametrize("judged", [False, True], ids=["failing", "judged-worse"])
def test_the_server_rolls_back_a_failing_canary_on_its_own(
    fast_runtime: None,
    agent_dir: Path,
    live: list[LiveServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    judged: bool,
) -> None:
    """A candidate whose runs fail, or (with a judge model) whose answers the judge grades worse."""
    monkeypatch.setenv("SHOPFLOOR_RELEASES__EVALUATE_EVERY", "0.1")
    monkeypatch.setenv("SHOPFLOOR_RELEASES__MIN_RUNS", "2")
    if judged:
        (tmp_path / "judges").mkdir()
        (tmp_path / "judges" / "server_judge.py").write_text(JUDGE)
        monkeypatch.syspath_prepend(str(tmp_path / "judges"))
        monkeypatch.setenv("SHOPFLOOR_RELEASES__JUDGE_MODEL", "function:server_judge:grade")
        monkeypatch.setenv("SHOPFLOOR_RELEASES__MIN_JUDGED", "2")
    settings = load_settings()
    services = compose(settings)
    key = generate_key("releaser", settings.home / "keys").private_path
    try:
        with Releases(services) as releases:
            stable, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
            spec = agent_dir / "agent.yaml"
            spec.write_text(spec.read_text().replace("Tick as asked.", "Tick, maybe."))
            candidate, _ = releases.create(agent_dir, key=key, actor="alice", version="1.1.0")
            deployments = Deployments(releases)
            deployments.deploy("ticker@1.0.0", actor="alice")
            deployments.deploy("ticker@1.1.0", actor="alice", canary=50)
            store = RunStore(releases.store.engine, owns_engine=False)
            now = time.time()
            failing = "completed" if judged else "failed"
            for n, (release, status) in enumerate(
                [(stable, "completed"), (stable, "completed"), (candidate, failing), (candidate, failing)]
            ):
                store.create(
                    RunRecord(
                        run_id=f"run-{n}",
                        agent="ticker",
                        spec_path=str(releases.path_of(release) / "agent.yaml"),
                        release_digest=release.agent_digest,
                        release=release.ref,
                        track="stable" if release is stable else "candidate",
                        caller=f"c{n}",
                        status=status,  # type: ignore[arg-type]
                        task="t",
                        output="tick tock" if release is stable else "tick",
                        created_at=now + 1,
                        started_at=now + 1,
                        finished_at=now + 2,
                    )
                )
            live.append(LiveServer(build_server(load_settings(), worker=True)))
            deadline = time.monotonic() + 30
            while deployments.get("ticker").candidate is not None:
                assert time.monotonic() < deadline, "the server did not evaluate the canary"
                time.sleep(0.05)
            assert deployments.get("ticker").stable == "1.0.0"
    finally:
        services.close()
    with build_audit_log(settings) as audit:
        entry = audit.entries(kind="release.rolled_back")[-1]
    reason = "judged quality 0.00 against stable's 1.00" if judged else "completion rate 0.0%"
    assert entry.actor == CANARY_EVALUATOR and reason in entry.details["reason"]
