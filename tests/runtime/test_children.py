"""Child runs (``ToolServices.children``): a tool's call hands parts of its work to durable runs of their
own, recorded under the parent, and waits for them; a kill -9 of the worker after some children ended
resumes without running those again. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest
from runtime_support import AgentDir, Workers
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.errors import RunStateError
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.runtime._children import child_run_id
from shopfloor.telemetry import SpanRecord

pytestmark = pytest.mark.usefixtures("db_url")
cli = CliRunner()


async def _fork(settings: Settings, run_id: str) -> str:
    async with Runtime(compose(settings)) as runtime:
        return await runtime.fork_run(run_id, 1)


def _root(spans: list[SpanRecord]) -> SpanRecord:
    (root,) = [span for span in spans if span.name.startswith("invoke_agent") and span.parent_span_id is None]
    return root


async def _wait(runtime: Runtime, run_id: str) -> RunRecord:
    async with asyncio.timeout(60):
        return await runtime.wait(run_id)


async def test_a_run_with_children_completes_and_records_them_under_it(
    rt_settings: Settings, agent: AgentDir
) -> None:
    services = compose(rt_settings)
    try:
        async with services.runtime() as runtime:
            run_id = await runtime.start_run(agent.path, "fanout=3")
            record = await _wait(runtime, run_id)
            children = await runtime.children(run_id[:10])
            listed = await runtime.list_runs()
        assert services.telemetry is not None
        traces = services.telemetry.store
        parent_root = _root(traces.run_spans(run_id))
        child_roots = [_root(traces.run_spans(child.run_id)) for child in children]
    finally:
        services.close()

    assert record.status == "completed", record.error
    assert [c.task for c in children] == ["part 0", "part 1", "part 2"]
    assert [c.run_id for c in children] == [child_run_id(run_id, 1, "fan_out", i, {"i": i}) for i in range(3)]
    for i, child in enumerate(children):
        assert (child.status, child.parent_run_id, child.fork_step) == ("completed", run_id, None)
        assert child.child_params is not None and child.child_params["tool"] == "fan_out"
        assert (child.child_params["params"], child.child_params["step"]) == ({"i": i}, 1)
        # its one step: the tool's child part, with the child's own idempotency key
        assert json.loads(child.output or "") == {"i": i, "squared": i * i, "key": f"{child.run_id}:1"}
        assert child.steps == 1 and child.agent == record.agent and child.model == record.model
    # The parent's call gathered them, in order, from runs of their own.
    assert "'squared': 4" in (record.output or "") or '"squared": 4' in (record.output or "")
    assert {r.run_id for r in listed} >= {run_id, *(c.run_id for c in children)}
    with pytest.raises(RunStateError, match=r"is a child run of .*: fork its parent instead"):
        await _fork(rt_settings, children[0].run_id)
    calls = agent.calls()
    assert [calls[f"child:{i}"] for i in range(3)] == [1, 1, 1]
    assert calls[f"fan_out:{run_id}:1"] == 1
    # Each child is traced as a run of its own (a trace of its own), naming its parent.
    assert len({parent_root.trace_id, *(root.trace_id for root in child_roots)}) == 4
    assert all(root.attributes["shopfloor.run.parent_id"] == run_id for root in child_roots)


async def test_cancelling_the_parent_cancels_its_children(rt_settings: Settings, agent: AgentDir) -> None:
    agent.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "fanout=2")
        await asyncio.to_thread(agent.wait_for_call, "child:1")
        await runtime.cancel(run_id)
        agent.unblock("child-1")
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
    assert record.status == "cancelled"
    assert [c.status for c in children] == ["completed", "cancelled"] or [c.status for c in children] == [
        "cancelled",
        "cancelled",
    ]


@pytest.mark.slow
async def test_kill9_after_some_children_ended_resumes_without_running_them_again(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    agent.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "fanout=3", detach=True)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, "child:1")
        async with asyncio.timeout(30):
            # another process's runs: only their rows tell
            while [c.status for c in await runtime.children(run_id)] != ["completed", "running", "completed"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        workers.kill9(first)
        agent.unblock("child-1")
        workers.start()
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)

    assert record.status == "completed", record.error
    assert [c.status for c in children] == ["completed"] * 3
    calls = agent.calls()
    assert (calls["child:0"], calls["child:2"]) == (1, 1), f"a child that had ended ran again: {calls}"
    assert calls["child:1"] == 2, "the child that was cut off resumes"
    assert calls[f"fan_out:{run_id}:1"] == 2, "the parent's step, never recorded, ran again"
    assert calls["model:1"] == 1
    assert [json.loads(c.output or "")["squared"] for c in children] == [0, 1, 4]


HOSTILE = "<script>alert(1)</script> [red]x[/red]"


def test_the_command_line_lists_children_under_their_parent_and_shows_them_as_written(
    agent: AgentDir,
) -> None:
    wide = {"COLUMNS": "250"}
    started = cli.invoke(app, ["run", str(agent.path), f"fanout=2 label={HOSTILE}", "--json"])
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["run_id"]
    other = cli.invoke(app, ["run", str(agent.path), "ticks=1", "--json"])
    assert other.exit_code == 0, other.output

    listed = cli.invoke(app, ["runs", "ls"], env=wide)
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if "fanout" in line or "part " in line]
    assert run_id[:12] in rows[0] and "└" not in rows[0]
    assert ["└" in row and f"part {i} {HOSTILE[:32]}" in row for i, row in enumerate(rows[1:])] == [
        True,
        True,
    ], listed.stdout

    shown = cli.invoke(app, ["runs", "show", run_id[:10]], env=wide)
    assert shown.exit_code == 0, shown.output
    assert "children (2)" in shown.stdout and f"part 1 {HOSTILE}" in shown.stdout
    data = json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).stdout)
    child_ids = [child["run_id"] for child in data["children"]]
    assert [child["task"] for child in data["children"]] == [f"part {i} {HOSTILE}" for i in range(2)]
    child = cli.invoke(app, ["runs", "show", child_ids[0]], env=wide)
    assert f"child of {run_id} (step 1, fan_out)" in child.stdout
