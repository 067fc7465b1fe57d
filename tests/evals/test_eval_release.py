"""Evaluations and releases: a release carries the evaluations of the agent it was made from, and
``shopfloor eval run --agent NAME@VERSION`` evaluates the release itself (verified first)."""

from __future__ import annotations

import json
from pathlib import Path

from eval_support import AgentDir, write_suite
from typer.testing import CliRunner

from shopfloor.cli import app

cli = CliRunner()
ITEMS = ['{"id": "a", "input": "answer=paris", "expected": "paris"}']


def _json(*args: str) -> dict:  # type: ignore[type-arg]
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_release_carries_its_evaluations_and_can_be_evaluated(agent: AgentDir, tmp_path: Path) -> None:
    suite = write_suite(tmp_path, agent.path, ITEMS)
    before = _json("eval", "run", str(suite))["evaluation"]
    assert cli.invoke(app, ["skill", "keygen", "ops"]).exit_code == 0
    release = _json("release", "create", str(agent.path), "--version", "1.0.0")
    assert [e["eval_id"] for e in release["evaluations"]] == [before["eval_id"]]
    assert release["evaluations"][0]["summary"]["metrics"]["contains"]["mean"] == 1.0
    of_release = _json("eval", "run", str(suite), "--agent", "evaluated@1.0.0")["evaluation"]
    assert of_release["agent_digest"] == release["agent_digest"] != before["agent_digest"]
    assert "/releases/evaluated/1.0.0-" in of_release["agent_path"]
    assert of_release["summary"]["metrics"]["contains"]["mean"] == 1.0
    shown = _json("release", "show", "evaluated@1.0.0")
    assert [e["eval_id"] for e in shown["evaluated_since"]] == [of_release["eval_id"]]


def test_a_release_whose_evaluation_failed_a_gate_is_not_deployed(agent: AgentDir, tmp_path: Path) -> None:
    gate = "gates:\n  - {metric: contains, min: 0.9}\n"
    wrong = ['{"id": "a", "input": "answer=paris", "expected": "lyon"}']
    suite = write_suite(tmp_path, agent.path, wrong, extra=gate)
    failed = _json("eval", "run", str(suite))["evaluation"]
    assert failed["summary"]["gates_passed"] is False
    assert cli.invoke(app, ["skill", "keygen", "ops"]).exit_code == 0
    _json("release", "create", str(agent.path), "--version", "1.0.0")
    refused = cli.invoke(app, ["deploy", "evaluated@1.0.0"])
    assert refused.exception is not None and "failed the gates of its evaluation smoke" in str(
        refused.exception
    )
    assert _json("deploy", "evaluated@1.0.0", "--ignore-gates")["stable"] == "1.0.0"
    entry = _json("audit", "ls", "--kind", "release.deploy")[-1]
    assert entry["details"]["failed_gates"] == [f"smoke ({failed['eval_id'][:12]})"]


def test_a_canary_whose_candidate_fails_an_evaluation_is_rolled_back(agent: AgentDir, tmp_path: Path) -> None:
    """The evaluation runs on the candidate release while its canary lasts: its failed gate rolls the
    canary back at the next evaluation, however the candidate's live runs did."""
    assert cli.invoke(app, ["skill", "keygen", "ops"]).exit_code == 0
    _json("release", "create", str(agent.path), "--version", "1.0.0")
    spec = agent.path / "agent.yaml"
    spec.write_text(spec.read_text().replace("Mark, then answer.", "Mark, then answer briefly."))
    _json("release", "create", str(agent.path), "--version", "1.1.0")
    _json("deploy", "evaluated@1.0.0")
    _json("deploy", "evaluated@1.1.0", "--canary", "20")
    assert _json("deployments", "evaluate", "evaluated", "--dry-run")["action"] == "wait"
    gate = "gates:\n  - {metric: contains, min: 0.9}\n"
    wrong = ['{"id": "a", "input": "answer=paris", "expected": "lyon"}']
    suite = write_suite(tmp_path, agent.path, wrong, extra=gate)
    failed = _json("eval", "run", str(suite), "--agent", "evaluated@1.1.0")["evaluation"]
    assert failed["summary"]["gates_passed"] is False
    decision = _json("deployments", "evaluate", "evaluated")
    assert decision["action"] == "rollback", decision
    assert f"its evaluation failed the gates: smoke ({failed['eval_id'][:12]})" in decision["reason"]
    assert _json("deployments", "show", "evaluated")["candidate"] is None
    entry = _json("audit", "ls", "--kind", "release.rolled_back")[-1]
    assert "failed the gates" in entry["details"]["reason"]
