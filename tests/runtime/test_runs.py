"""Runs executed in the test's own process: results, events, recorded steps, the run store, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runtime_support import AgentDir, make_agent

from shopfloor.config import Settings
from shopfloor.errors import RunNotFoundError
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._services import Services
from shopfloor.runtime._store import RunRecord, RunStore
from shopfloor.spec import LoadedSpec

pytestmark = pytest.mark.usefixtures("db_url")


async def test_run_completes_with_record_events_and_steps(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings), caller="tester") as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(20):
            kinds = [stored.event.kind async for stored in runtime.events(run_id)]
            record = await runtime.wait(run_id)
        steps = await runtime.recorded_steps(run_id)
        listed = await runtime.list_runs(agent="ticker")
        by_prefix = await runtime.get_run(run_id[:8])

    assert record.status == "completed" and record.stop_reason == "final_answer"
    assert record.output == "done after 2 ticks"
    assert (
        record.caller == "tester" and record.agent == "ticker" and record.release_digest.startswith("sha256:")
    )
    assert (
        record.model_calls == 3 and record.steps == 2 and record.input_tokens > 0 and record.output_tokens > 0
    )
    assert record.started_at is not None and record.finished_at is not None
    assert record.finished_at >= record.started_at >= record.created_at
    assert kinds == [
        "run_started",
        "model_reply",
        "tool_call",
        "tool_result",
        "model_reply",
        "tool_call",
        "tool_result",
        "model_reply",
        "run_finished",
    ]
    assert [(s.name, s.kind) for s in steps] == [
        ("model:1", "model"),
        ("tool:1:tick", "tool"),
        ("model:2", "model"),
        ("tool:2:tick", "tool"),
        ("model:3", "model"),
    ]
    assert steps[1].output["output"] == {"n": 1, "key": f"{run_id}:1"}
    assert (
        steps[0].elapsed is not None and steps[4].elapsed is not None and steps[4].elapsed >= steps[0].elapsed
    )
    assert [r.run_id for r in listed] == [run_id] and by_prefix.run_id == run_id
    assert agent.calls() == {
        "model:1": 1,
        "model:2": 1,
        "model:3": 1,
        f"tool:{run_id}:1": 1,
        f"tool:{run_id}:2": 1,
    }


async def test_events_can_be_read_again_from_any_point(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            await runtime.wait(run_id)
        everything = [s async for s in runtime.events(run_id, follow=False)]
        tail = [s async for s in runtime.events(run_id, after=everything[2].seq, follow=False)]
    assert [s.seq for s in everything] == list(range(len(everything)))
    assert tail == everything[3:]
    assert everything[-1].event.data["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    ("limits", "task", "reason"),
    [
        ("  max_steps: 2", "ticks=5", "max_steps"),
        ("  max_tokens: 300", "ticks=5", "max_tokens"),
        ("  step_timeout: 0.3", "ticks=1 slowmodel", "step_timeout"),
        ("  max_retries: 1", "ticks=0 garbage", "invalid_output"),
        ("  wall_time: 0.2\n  step_timeout: 0.3", "ticks=3 tool=sleepy", "wall_time"),
    ],
)
async def test_every_limit_ends_the_run_with_its_reason(
    rt_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    limits: str,
    task: str,
    reason: str,
) -> None:
    import sys

    made = make_agent(tmp_path / "limited", limits=limits)
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(made.path, task)
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert (record.status, record.stop_reason) == ("failed", reason), record.error
    assert record.error
    if reason == "step_timeout":
        assert record.faults == {"model": {"timeout": 1}}


async def test_tool_timeout_is_counted_per_component(
    rt_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    made = make_agent(tmp_path / "slow", limits="  step_timeout: 0.2\n  max_steps: 3")
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(made.path, "ticks=2 tool=sleepy")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert record.status == "completed"
    assert record.faults == {"tool:sleepy": {"timeout": 2}}


async def test_a_changed_spec_fails_the_run_instead_of_replaying_another_agent(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1", detach=True)
        spec = agent.path / "agent.yaml"
        spec.write_text(spec.read_text().replace("Tick as asked.", "Tick differently."))
        await runtime.start_executor(worker=True)
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert (record.status, record.stop_reason) == ("failed", "release_changed")
    assert "changed since the run started" in (record.error or "")


async def test_unknown_run_ids_say_how_to_find_runs(rt_settings: Settings) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        with pytest.raises(RunNotFoundError, match="runs ls"):
            await runtime.get_run("nope")


async def test_retention_drops_events_and_steps_but_keeps_the_summary(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            await runtime.wait(run_id)
        assert await runtime.prune(older_than_days=1) == 0
        assert await runtime.prune(older_than_days=0) == 1
        assert await runtime.prune(older_than_days=0) == 0
        record = await runtime.get_run(run_id)
        events = [s async for s in runtime.events(run_id, follow=False)]
        steps = await runtime.recorded_steps(run_id)
    assert record.pruned and record.status == "completed" and record.output == "done after 1 ticks"
    assert events == [] and steps == []


async def test_the_workspace_commit_the_run_produced_is_recorded(
    rt_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    made = make_agent(tmp_path / "seeded", extra="workspace:\n  seed:\n    - agent_tools.py\n")
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(made.path, "ticks=1")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert record.status == "completed"
    assert record.workspace_commit is not None and len(record.workspace_commit) == 64


async def test_a_caller_may_choose_the_new_runs_id_in_the_form_of_one(
    rt_settings: Settings, agent: AgentDir
) -> None:
    from shopfloor.errors import RunStateError

    chosen = "0123456789abcdef0123456789abcdef"
    async with Runtime(compose(rt_settings), caller="tester") as runtime:
        assert await runtime.start_run(agent.path, "ticks=1", run_id=chosen) == chosen
        async with asyncio.timeout(20):
            record = await runtime.wait(chosen)
        for bad in ("../run", "0123456789ABCDEF0123456789ABCDEF", chosen + "0"):
            with pytest.raises(RunStateError, match="32 lowercase hex digits"):
                await runtime.start_run(agent.path, "ticks=1", run_id=bad)
    assert record.status == "completed" and record.run_id == chosen


async def test_the_workflow_records_the_runs_outcome_not_its_steps_again(
    rt_settings: Settings, agent: AgentDir
) -> None:
    """Each step has its own row: the workflow's output is the outcome, its steps counted."""
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
            # DBOS records the workflow's end after the run store's: its handle waits for it
            handle = await (await runtime.client()).retrieve_workflow_async(run_id)
            output = await handle.get_result()
    assert output == {
        "run_id": run_id,
        "status": "completed",
        "stop_reason": "final_answer",
        "output": "done after 2 ticks",
        "error": None,
        "steps": 2,
        "usage": {
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "model_calls": 3,
            "total_tokens": record.total_tokens,
        },
    }


async def test_a_run_started_here_takes_its_spec_and_row_from_the_start_and_a_queued_one_reads_them(
    rt_settings: Settings, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start_run`` hands the workflow the spec it loaded and the row it wrote (``HANDED``); a run
    taken from the queue (as a recovered one) loads the spec and reads its row itself."""
    loads: list[str] = []
    reads: list[str] = []
    load_spec, get = Services.load_spec, RunStore.get

    def counted_load(self: Services, path: Path | str) -> LoadedSpec:
        loads.append(str(path))
        return load_spec(self, path)

    def counted_get(self: RunStore, run_id: str) -> RunRecord:
        reads.append(run_id)
        return get(self, run_id)

    monkeypatch.setattr(Services, "load_spec", counted_load)
    monkeypatch.setattr(RunStore, "get", counted_get)
    async with Runtime(compose(rt_settings)) as runtime:
        here = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            assert (await runtime.wait(here)).status == "completed"
    assert (len(loads), reads.count(here)) == (1, 0)
    loads.clear()
    async with Runtime(compose(rt_settings)) as runtime:
        queued = await runtime.start_run(agent.path, "ticks=1", detach=True)
        await runtime.start_executor(worker=True)
        async with asyncio.timeout(20):
            assert (await runtime.wait(queued)).status == "completed"
    assert (len(loads), reads.count(queued)) == (2, 1)
