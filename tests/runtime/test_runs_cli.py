"""``shopfloor run`` / ``runs`` / ``worker`` from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from runtime_support import AgentDir, Workers
from typer.testing import CliRunner

from shopfloor.cli import app

pytestmark = pytest.mark.usefixtures("db_url")
EXAMPLE = Path(__file__).parents[2] / "examples" / "calculator"
cli = CliRunner()


def _json(*args: str) -> object:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_prints_the_id_first_then_the_steps_and_the_answer() -> None:
    result = cli.invoke(app, ["run", str(EXAMPLE), "How many km is 26.2 miles?", "--model", "test"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and len(lines[0].split()[1]) == 32
    assert "model → calculator" in result.stdout and "completed (final_answer)" in result.stdout
    run_id = lines[0].split()[1]

    runs = _json("runs", "ls")
    assert isinstance(runs, list) and runs[0]["run_id"] == run_id and runs[0]["status"] == "completed"
    shown = _json("runs", "show", run_id[:10])
    assert isinstance(shown, dict) and shown["status"] == "completed" and shown["total_tokens"] > 0
    logs = cli.invoke(app, ["runs", "logs", run_id, "--json"])
    kinds = [json.loads(line)["kind"] for line in logs.stdout.splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


def test_run_json_reports_the_finished_run() -> None:
    data = _json("run", str(EXAMPLE), "What is 17*23?", "--model", "test")
    assert isinstance(data, dict) and data["status"] == "completed" and data["agent"] == "calculator"


def test_runs_fork_runs_a_fork_here_and_follows_it() -> None:
    run = _json("run", str(EXAMPLE), "What is 17*23?", "--model", "test")
    assert isinstance(run, dict)
    result = cli.invoke(app, ["runs", "fork", run["run_id"][:10], "--step", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and "completed (final_answer)" in result.stdout
    fork = _json("runs", "show", lines[0].split()[1])
    assert isinstance(fork, dict) and fork["output"] == run["output"]
    assert (fork["parent_run_id"], fork["fork_step"]) == (run["run_id"], 2)
    queued = _json("runs", "fork", run["run_id"], "--step", "1", "--detach")  # for `shopfloor worker`
    assert isinstance(queued, dict) and queued["status"] == "queued" and queued["fork_step"] == 1
    outside = cli.invoke(app, ["runs", "fork", run["run_id"], "--step", "7"])
    assert outside.exit_code != 0 and "fork it at a step from 1 to 6" in str(outside.exception)


@pytest.mark.slow  # worker subprocesses
def test_detached_run_is_queued_cancelled_or_run_by_a_worker(agent: AgentDir, workers: Workers) -> None:
    queued = _json("run", str(agent.path), "ticks=1", "--detach")
    assert isinstance(queued, dict) and queued["status"] == "queued"
    cancelled = _json("runs", "cancel", queued["run_id"])
    assert cancelled == {"run_id": queued["run_id"], "action": "cancel", "status": "cancelled"}

    second = _json("run", str(agent.path), "ticks=1 tool=transfer", "--detach")
    assert isinstance(second, dict)
    workers.start("--concurrency", "2")
    deadline = time.monotonic() + 30
    while _json("runs", "show", second["run_id"])["status"] != "waiting_approval":  # type: ignore[index]
        assert time.monotonic() < deadline, "the worker never took the run"
        time.sleep(0.1)
    shown = _json("runs", "show", second["run_id"])
    assert shown["approval"]["tool"] == "transfer" and shown["approval"]["approvers"] == ["alice"]  # type: ignore[index]
    refused = cli.invoke(app, ["runs", "approve", second["run_id"], "--by", "mallory"])
    assert refused.exit_code != 0
    assert _json("runs", "approve", second["run_id"], "--by", "alice")["action"] == "approved"  # type: ignore[index]
    done = cli.invoke(app, ["runs", "logs", second["run_id"], "--follow", "--json"])
    assert json.loads(done.stdout.splitlines()[-1])["data"]["status"] == "completed"


def test_errors_are_one_clear_line() -> None:
    result = cli.invoke(app, ["runs", "show", "no-such-run"])
    assert result.exit_code != 0
    assert "no run 'no-such-run'" in str(result.exception) or "no run" in result.output
