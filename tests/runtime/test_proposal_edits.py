"""Approving a proposal as edited: the runtime checks the edit against what the tool lets change, records
who edited what (the audit log, the run's events and its durable record) and the call runs with it, also
after a kill -9 of the worker that had recorded the decision."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from runtime_support import AgentDir, Workers
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.errors import ProposalEditError, RunStateError
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.security import approval_resource

pytestmark = pytest.mark.usefixtures("db_url")

cli = CliRunner()
TASK = "ticks=1 tool=research"
EDITED = ["python venv module", "pip install", "wheel files"]


def with_research(agent: AgentDir) -> AgentDir:
    """The test agent with the proposing ``research`` tool of ``agent_tools.py`` granted too."""
    spec = agent.path / "agent.yaml"
    spec.write_text(
        spec.read_text().replace(
            "tools:\n", "tools:\n  - name: research\n    source: agent_tools.py:research\n", 1
        )
    )
    return agent


async def _waiting(runtime: Runtime, run_id: str) -> RunRecord:
    async with asyncio.timeout(30):
        async for stored in runtime.events(run_id):
            if stored.event.kind == "approval_requested":
                break
    record = await runtime.get_run(run_id)
    assert record.status == "waiting_approval", record
    return record


async def _searched(runtime: Runtime, run_id: str) -> object:
    events = [s.event async for s in runtime.events(run_id, follow=False)]
    return next(e.data["output"] for e in events if e.kind == "tool_result")


async def test_an_edited_plan_is_recorded_with_who_and_when_and_is_what_runs(
    rt_settings: Settings, agent: AgentDir
) -> None:
    with_research(agent)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, TASK)
        waiting = await _waiting(runtime, run_id)
        await runtime.approve(run_id, by="alice", reason="sharper", proposal={"plan": EDITED})
        async with asyncio.timeout(30):
            record = await runtime.wait(run_id)
        searched = await _searched(runtime, run_id)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
        steps = await runtime.recorded_steps(run_id)
        entry = runtime.governance.audit.find("approval.decided", approval_resource(run_id, 1))

    assert waiting.approval is not None
    assert waiting.approval["proposal"] == {"plan": ["venv", "pip"], "by": "splitting"}
    assert list(waiting.approval["editable"]) == ["plan"]
    assert record.status == "completed", record.error
    assert searched == {"searched": EDITED}
    assert agent.calls()[f"research:{run_id}:1:{'|'.join(EDITED).replace(' ', '_')}"] == 1
    decided = next(e for e in events if e.kind == "approval_decided")
    before, after = {"plan": ["venv", "pip"], "by": "splitting"}, {"plan": EDITED, "by": "splitting"}
    assert decided.data["edit"] == {"before": before, "after": after}
    assert next(s for s in steps if s.kind == "approval").output["proposal"] == after
    assert entry is not None and entry.actor == "alice" and entry.at > 0
    assert entry.details["edit"] == {"before": before, "after": after}


async def test_a_bad_edit_is_refused_naming_the_field_and_the_run_still_waits(
    rt_settings: Settings, agent: AgentDir
) -> None:
    with_research(agent)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, TASK)
        await _waiting(runtime, run_id)
        with pytest.raises(ProposalEditError) as too_long:
            await runtime.approve(run_id, by="alice", proposal={"plan": ["x" * 41]})
        with pytest.raises(ProposalEditError, match=r"proposal\.by: may not be changed \(editable: plan\)"):
            await runtime.approve(run_id, by="alice", proposal={"by": "me"})
        still = await runtime.get_run(run_id)
        assert still.status == "waiting_approval"
        assert runtime.governance.audit.find("approval.decided", approval_resource(run_id, 1)) is None
        await runtime.approve(run_id, by="alice", proposal={"plan": ["one thing"]})
        # the same decision again is answered as the first was; another edit is refused
        await runtime.approve(run_id, by="alice", proposal={"plan": ["one thing"]})
        async with asyncio.timeout(30):
            record = await runtime.wait(run_id)
        with pytest.raises(RunStateError, match="already approved by alice"):
            await runtime.approve(run_id, by="alice", proposal={"plan": ["another"]})
        searched = await _searched(runtime, run_id)
    assert too_long.value.problems == [
        {"loc": ["proposal", "plan", 0], "msg": "at most 40 characters, got 41", "type": "maxLength"}
    ]
    assert record.status == "completed" and searched == {"searched": ["one thing"]}


async def test_a_call_that_proposes_nothing_takes_no_edit(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        await _waiting(runtime, run_id)
        with pytest.raises(
            ProposalEditError, match=r"proposal: the call run .* \(transfer\) proposes nothing"
        ):
            await runtime.approve(run_id, by="alice", proposal={"amount": 1})
        await runtime.approve(run_id, by="alice")
        async with asyncio.timeout(30):
            assert (await runtime.wait(run_id)).status == "completed"


@pytest.mark.slow  # worker subprocesses
@pytest.mark.usefixtures("step_recorder")
async def test_kill9_after_the_edited_approval_was_recorded_resumes_with_the_edited_plan(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    with_research(agent)
    agent.block("research-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, TASK, detach=True)
        first = workers.start()
        await _waiting(runtime, run_id)
        await runtime.approve(run_id, by="alice", proposal={"plan": EDITED})
        cut = f"research:{run_id}:1:{'|'.join(EDITED).replace(' ', '_')}"
        # the worker received and recorded the decision, and is inside the call it approved
        await asyncio.to_thread(agent.wait_for_call, cut)
        workers.kill9(first)
        agent.unblock("research-1")
        workers.start()
        async with asyncio.timeout(60):
            record = await runtime.wait(run_id)
        searched = await _searched(runtime, run_id)
    assert record.status == "completed", record.error
    assert searched == {"searched": EDITED}
    calls = agent.calls()
    assert calls[cut] == 2, "the call cut off runs again, with the edited plan"
    assert calls[f"propose:{run_id}:1"] == 1, "the plan is not proposed again"
    assert [c for c in calls if c.startswith("research:")] == [cut], "never with the plan as proposed"


@pytest.fixture(params=["lean", "dbos"])
def step_recorder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The workers (subprocesses, which read the environment) record steps on this path."""
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__STEP_RECORDER", request.param)
    return str(request.param)


EDITOR_SCRIPT = """\
import pathlib, sys
path = pathlib.Path(sys.argv[1])
text = path.read_text()
assert text.startswith("# The proposal of "), text
mode = pathlib.Path(__file__).with_suffix(".mode").read_text()
if mode == "fail":
    sys.exit(3)
if mode == "long":
    path.write_text(text.replace("- venv", "- " + "y" * 50))
else:
    path.write_text(text.replace("- venv", "- python venv module").replace("- pip", "- pip install"))
"""


@pytest.mark.slow  # a worker subprocess
def test_runs_approve_edit_opens_the_editor_on_the_proposal(
    agent: AgentDir, workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_research(agent)
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR_SCRIPT)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    started = cli.invoke(app, ["run", str(agent.path), TASK, "--detach", "--json"])
    run_id = json.loads(started.stdout)["run_id"]
    workers.start()
    deadline = time.monotonic() + 30
    while (
        json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).stdout)["status"] != "waiting_approval"
    ):
        assert time.monotonic() < deadline, "the worker never took the run"
        time.sleep(0.1)

    editor.with_suffix(".mode").write_text("fail")
    failed = cli.invoke(app, ["runs", "approve", run_id, "--edit", "--by", "alice"])
    assert failed.exit_code != 0 and "exited with 3: nothing was approved" in str(failed.exception)
    editor.with_suffix(".mode").write_text("long")
    long = cli.invoke(app, ["runs", "approve", run_id, "--edit", "--by", "alice"])
    assert long.exit_code != 0
    assert "proposal.plan.0: at most 40 characters, got 50 (the edited proposal, line" in str(long.exception)
    both = cli.invoke(app, ["runs", "approve", run_id, "--edit", "--proposal", "-", "--by", "alice"])
    assert both.exit_code != 0 and "not both" in both.output
    editor.with_suffix(".mode").write_text("good")
    good = cli.invoke(app, ["runs", "approve", run_id, "--edit", "--by", "alice", "--json"])
    assert good.exit_code == 0, good.output
    done = cli.invoke(app, ["runs", "logs", run_id, "--follow", "--json"])
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["data"]["status"] == "completed"
    decided = next(e for e in events if e["kind"] == "approval_decided")
    assert decided["data"]["edit"]["after"]["plan"] == ["python venv module", "pip install"]
    result = next(e for e in events if e["kind"] == "tool_result")
    assert result["data"]["output"] == {"searched": ["python venv module", "pip install"]}
