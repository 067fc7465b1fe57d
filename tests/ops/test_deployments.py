"""Deployments on SQLite and PostgreSQL: deploy, sticky canaries, promotion and rollback judged from the
runs' records and feedback, every change in the history and the audit log with who made it."""

from __future__ import annotations

import importlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.config import load_settings
from shopfloor.errors import DeploymentError, ReleaseError
from shopfloor.evals import RunQualityJudge
from shopfloor.ops.releases import DeploymentRouter, Deployments, Release, Releases, bucket, feedback_items
from shopfloor.runtime import RunRecord, RunStore, compose
from shopfloor.skills import generate_key


def _two_releases(releases: Releases, agent_dir: Path, key: Path) -> tuple[Release, Release]:
    first, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    (agent_dir / "tools.py").write_text((agent_dir / "tools.py").read_text() + "# 1.1\n")
    second, _ = releases.create(agent_dir, key=key, actor="alice", version="1.1.0")
    return first, second


def _runs(
    releases: Releases,
    release: Release,
    statuses: list[str],
    *,
    latency: float = 1.0,
    track: str = "stable",
    answer: str = "an answer",
) -> list[str]:
    """Ended runs of ``release`` as the runtime records them (what the metrics are computed from)."""
    store = RunStore(releases.store.engine, owns_engine=False)
    now = time.time()
    ids = []
    for status in statuses:
        run_id = uuid.uuid4().hex
        store.create(
            RunRecord(
                run_id=run_id,
                agent=release.name,
                spec_path=str(releases.path_of(release) / "agent.yaml"),
                release_digest=release.agent_digest,
                release=release.ref,
                track=track,  # type: ignore[arg-type]
                caller=f"user-{run_id[:6]}",
                status=status,  # type: ignore[arg-type]
                task=f"task {run_id[:6]}",
                output=answer,
                created_at=now,
                started_at=now,
                finished_at=now + latency,
            )
        )
        ids.append(run_id)
    return ids


def test_deploy_canary_is_sticky_per_caller_and_rollback_goes_back(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    first, second = _two_releases(releases, agent_dir, key)
    deployments = Deployments(releases)
    with pytest.raises(DeploymentError, match=r"no stable release to canary against"):
        deployments.deploy("echo@1.1.0", actor="alice", canary=10)
    assert deployments.pick("echo", "anyone") is None  # nothing deployed yet
    deployments.deploy("echo@1.0.0", actor="alice")
    deployed = deployments.deploy("echo@1.1.0", actor="bob", canary=30)
    assert (deployed.stable, deployed.candidate, deployed.canary) == ("1.0.0", "1.1.0", 30)
    callers = [f"caller-{n}" for n in range(200)]
    picks = {caller: deployments.pick("echo", caller) for caller in callers}
    for caller, picked in picks.items():
        assert picked is not None
        release, track = picked
        expected = second if bucket("echo", caller) < 30 else first
        assert release == expected and track == ("candidate" if expected is second else "stable")
        assert deployments.pick("echo", caller) == picked  # sticky: the same caller, the same release
    share = sum(picks[c][1] == "candidate" for c in callers) / len(callers)  # type: ignore[index]
    assert 0.15 < share < 0.45
    # rollback ends the canary; a second rollback goes back to the stable release before
    assert deployments.rollback("echo", actor="carol").candidate is None
    deployments.deploy("echo@1.1.0", actor="alice")
    back = deployments.rollback("echo", actor="carol")
    assert back.stable == "1.0.0" and back.updated_by == "carol"
    assert [e.action for e in deployments.history("echo")] == [
        "rollback",
        "deploy",
        "rollback",
        "canary",
        "deploy",
    ]
    audited = releases.audit.entries(kind="release.rolled_back")
    assert [e.actor for e in audited] == ["carol", "carol"]
    assert "rolled back from echo@1.1.0 to echo@1.0.0" in audited[-1].details["reason"]


def test_a_release_that_no_longer_verifies_is_not_deployed(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    first, _ = _two_releases(releases, agent_dir, key)
    from shopfloor.ops.releases import object_key

    releases.objects.delete([object_key(first.files["data/notes.txt"])])
    with pytest.raises(ReleaseError, match=r"data/notes.txt is missing from the store"):
        Deployments(releases).deploy("echo@1.0.0", actor="alice")
    assert releases.store.deployment("echo") is None


def test_evaluate_rolls_back_a_faulty_candidate_with_the_reason_audited(
    releases: Releases, agent_dir: Path, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_releases(releases, agent_dir, key)
    deployments = Deployments(releases)
    deployments.limits = deployments.limits.model_copy(update={"min_runs": 4, "window": 600.0})
    deployments.deploy("echo@1.0.0", actor="alice")
    deployments.deploy("echo@1.1.0", actor="alice", canary=50)
    _runs(releases, first, ["completed"] * 8)
    _runs(releases, second, ["completed", "failed"])
    waiting = deployments.evaluate("echo", actor="controller")
    assert waiting.action == "wait" and "2 of the 4 candidate runs" in waiting.reason
    _runs(releases, second, ["failed", "completed"])
    decision = deployments.evaluate("echo", actor="controller")
    assert decision.action == "rollback"
    assert "completion rate 50.0% against stable's 100.0%" in decision.reason
    assert decision.deployment is not None and decision.deployment.candidate is None
    assert deployments.get("echo").stable == "1.0.0"
    entry = releases.audit.entries(kind="release.rolled_back")[-1]
    assert entry.actor == "controller" and "completion rate 50.0%" in entry.details["reason"]


def test_evaluate_promotes_a_candidate_that_holds_for_the_window(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    first, second = _two_releases(releases, agent_dir, key)
    deployments = Deployments(releases)
    deployments.limits = deployments.limits.model_copy(update={"min_runs": 3, "window": 600.0})
    deployments.deploy("echo@1.0.0", actor="alice")
    deployments.deploy("echo@1.1.0", actor="alice", canary=20)
    _runs(releases, first, ["completed", "completed", "failed"])
    _runs(releases, second, ["completed"] * 3)
    early = deployments.evaluate("echo", actor="controller")
    assert early.action == "wait" and "of its window left" in early.reason
    promoted = deployments.evaluate("echo", actor="controller", now=time.time() + 601)
    assert promoted.action == "promote", promoted.reason
    assert deployments.get("echo").stable == "1.1.0" and deployments.get("echo").candidate is None
    assert releases.audit.entries(kind="release.promoted")[-1].actor == "controller"


def test_feedback_is_kept_per_run_and_release_and_becomes_dataset_items(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    first, second = _two_releases(releases, agent_dir, key)
    deployments = Deployments(releases)
    deployments.limits = deployments.limits.model_copy(update={"min_runs": 2, "window": 600.0})
    deployments.deploy("echo@1.0.0", actor="alice")
    deployments.deploy("echo@1.1.0", actor="alice", canary=50)
    good, corrected = _runs(releases, first, ["completed", "completed"])
    bad_a, bad_b = _runs(releases, second, ["completed", "completed"])
    store = RunStore(releases.store.engine, owns_engine=False)
    deployments.feedback(store.get(good), author="u1", rating=1)
    deployments.feedback(store.get(corrected), author="u1", rating=1, correction="THE RIGHT ANSWER")
    for run_id in (bad_a, bad_b):
        deployments.feedback(store.get(run_id), author="u2", rating=-1, comment="wrong")
    with pytest.raises(DeploymentError, match=r"rating 0: give -1"):
        deployments.feedback(store.get(good), author="u1", rating=0)
    stable = deployments.metrics("echo", "1.0.0", since=0)
    candidate = deployments.metrics("echo", "1.1.0", since=0)
    assert (stable.feedback_count, stable.feedback_mean) == (2, 1.0)
    assert (candidate.feedback_count, candidate.feedback_mean) == (2, -1.0)
    decision = deployments.evaluate("echo", actor="controller", apply=False)
    assert decision.action == "rollback" and "mean feedback -1.00 against stable's +1.00" in decision.reason
    assert deployments.get("echo").candidate == "1.1.0"  # apply=False changed nothing
    items = feedback_items(releases.store.feedback(agent="echo"), store.get)
    by_run = {item["metadata"]["run_id"]: item for item in items}
    assert set(by_run) == {corrected, bad_a, bad_b}
    assert by_run[corrected]["expected"] == "THE RIGHT ANSWER" and "correction" in by_run[corrected]["tags"]
    assert "expected" not in by_run[bad_a] and by_run[bad_a]["metadata"]["release"] == "echo@1.1.0"
    assert [e.resource for e in releases.audit.entries(kind="run.feedback")][:1] == [f"runs/{good}"]


JUDGE = """\
from shopfloor.models import ModelRequest

calls = []
down = False


def grade(request: ModelRequest) -> str:
    prompt = request.messages[0].content
    answer = prompt.split("Agent's answer:", 1)[1]
    calls.append(answer.strip())
    if down:
        raise RuntimeError("the judge is down")
    return "SCORE: 5" if "GOOD" in answer else "SCORE: 1"
"""


@pytest.fixture
def judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Releases, Path]]:
    """Releases whose services judge canary runs with a scripted judge model (``function:``)."""
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "canary_judge.py").write_text(JUDGE)
    monkeypatch.syspath_prepend(str(tmp_path / "judges"))
    monkeypatch.delitem(sys.modules, "canary_judge", raising=False)
    monkeypatch.setenv("SHOPFLOOR_RELEASES__JUDGE_MODEL", "function:canary_judge:grade")
    settings = load_settings()
    settings.ensure_home()
    services = compose(settings, run_router=DeploymentRouter(), run_judge=RunQualityJudge())
    key = generate_key("releaser", settings.home / "keys").private_path
    try:
        with Releases(services) as releases:
            yield releases, key
    finally:
        services.close()


def _judged_canary(
    judged: tuple[Releases, Path], agent_dir: Path, **limits: float
) -> tuple[Deployments, Release, Release]:
    """echo@1.0.0 stable, echo@1.1.0 its candidate for half the callers, judged with ``limits``."""
    releases, key = judged
    first, second = _two_releases(releases, agent_dir, key)
    deployments = Deployments(releases)
    deployments.limits = deployments.quality.limits = deployments.limits.model_copy(update=limits)
    deployments.deploy("echo@1.0.0", actor="alice")
    deployments.deploy("echo@1.1.0", actor="alice", canary=50)
    return deployments, first, second


def test_judged_quality_of_sampled_runs_rolls_back_a_worse_candidate(
    judged: tuple[Releases, Path], agent_dir: Path
) -> None:
    releases = judged[0]
    deployments, first, second = _judged_canary(
        judged, agent_dir, min_runs=4, window=600.0, judge_sample=0.5, min_judged=3
    )
    _runs(releases, first, ["completed"] * 8, answer="a GOOD answer")
    _runs(releases, second, ["completed"] * 8, answer="a bad answer", track="candidate")
    # Both releases complete every run: only the judge tells them apart.
    decision = deployments.evaluate("echo", actor="controller", apply=False)
    assert decision.action == "rollback", decision.reason
    assert "judged quality 0.00 against stable's 1.00 (4 and 4 sampled answers)" in decision.reason
    assert decision.stable is not None and decision.candidate is not None
    assert (decision.stable.track, decision.candidate.track) == ("stable", "candidate")
    assert (decision.stable.judged_count, decision.candidate.quality_mean) == (4, 0.0)
    judge = sys.modules["canary_judge"]
    assert len(judge.calls) == 8  # half of each release's 8 runs
    assert len(releases.store.judgements("echo@1.1.0")) == 4
    # Judged once: the next evaluation reads the kept scores and asks the judge nothing.
    again = deployments.evaluate("echo", actor="controller")
    assert again.action == "rollback" and len(judge.calls) == 8
    assert deployments.get("echo").candidate is None
    entry = releases.audit.entries(kind="release.rolled_back")[-1]
    assert entry.actor == "controller" and "judged quality 0.00" in entry.details["reason"]
    shown = deployments.metrics("echo", "1.1.0", since=0)
    assert shown.to_json()["quality_mean"] == 0.0 and shown.to_json()["track"] is None  # no longer deployed


def test_a_candidate_is_not_promoted_before_enough_of_its_answers_are_judged(
    judged: tuple[Releases, Path], agent_dir: Path
) -> None:
    releases = judged[0]
    deployments, first, second = _judged_canary(
        judged, agent_dir, min_runs=3, window=600.0, judge_sample=0.2, min_judged=3
    )
    _runs(releases, first, ["completed"] * 5, answer="a GOOD answer")
    _runs(releases, second, ["completed"] * 3, answer="a GOOD answer", track="candidate")
    judge = sys.modules.get("canary_judge") or importlib.import_module("canary_judge")
    judge.down = True
    later = time.time() + 601
    waiting = deployments.evaluate("echo", actor="controller", now=later)
    assert waiting.action == "wait", waiting.reason
    assert "0 of the 3 judged answers of each release needed so far" in waiting.reason
    assert releases.store.judgements("echo@1.1.0") == {}  # a failed judgement is asked again next time
    judge.down = False
    promoted = deployments.evaluate("echo", actor="controller", now=later)
    assert promoted.action == "promote", promoted.reason
    assert promoted.candidate is not None and promoted.candidate.judged_count == 3
    assert promoted.candidate.quality_mean == 1.0
