"""Approvals and cancellation, in the test's own process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from runtime_support import AgentDir, make_agent

from shopfloor.config import Settings
from shopfloor.errors import RunStateError
from shopfloor.runtime import RunRecord, Runtime, compose

pytestmark = pytest.mark.usefixtures("db_url")


async def _waiting(runtime: Runtime, run_id: str) -> RunRecord:
    """The run once it waits for approval (its status is written before the event is visible)."""
    async with asyncio.timeout(20):
        async for stored in runtime.events(run_id):
            if stored.event.kind == "approval_requested":
                break
    record = await runtime.get_run(run_id)
    assert record.status == "waiting_approval"
    return record


async def test_approved_call_runs_once_with_who_and_what_recorded(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        waiting = await _waiting(runtime, run_id)
        assert agent.calls()[f"transfer:{run_id}:1"] == 0
        with pytest.raises(RunStateError, match="approvers are alice"):
            await runtime.approve(run_id, by="mallory")
        await runtime.approve(run_id, by="alice", reason="fine")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
        steps = await runtime.recorded_steps(run_id)

    assert waiting.approval is not None
    assert (waiting.approval["tool"], waiting.approval["arguments"]) == ("transfer", {"amount": 10})
    assert waiting.approval["approvers"] == ["alice"] and waiting.approval["step"] == 1
    assert record.status == "completed" and record.approval is None
    assert agent.calls()[f"transfer:{run_id}:1"] == 1
    decided = next(e for e in events if e.kind == "approval_decided")
    assert decided.data == {"approved": True, "by": "alice", "reason": "fine"}
    assert [s.kind for s in steps] == ["model", "approval", "tool", "model"]
    assert steps[1].output == {"approved": True, "by": "alice", "reason": "fine"}


async def test_rejected_call_never_runs_and_the_model_is_told(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        await _waiting(runtime, run_id)
        await runtime.reject(run_id, by="alice", reason="too much")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        results = [
            s.event async for s in runtime.events(run_id, follow=False) if s.event.kind == "tool_result"
        ]
    assert record.status == "completed"
    assert agent.calls()[f"transfer:{run_id}:1"] == 0
    assert results[0].data["error_kind"] == "rejected" and "too much" in results[0].data["error"]


async def test_approval_timeout_counts_as_rejection(
    rt_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_agent(tmp_path / "timed", approval_timeout=0.5)
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(made.path, "ticks=1 tool=transfer")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        decided = [
            s.event async for s in runtime.events(run_id, follow=False) if s.event.kind == "approval_decided"
        ]
    assert record.status == "completed"
    assert decided[0].data == {"approved": False, "by": "shopfloor", "reason": "timeout"}
    assert record.faults == {"approval": {"timeout": 1}}
    assert made.calls()[f"transfer:{run_id}:1"] == 0


async def test_decisions_need_a_waiting_run(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            await runtime.wait(run_id)
        with pytest.raises(RunStateError, match="not waiting for approval"):
            await runtime.approve(run_id)
        with pytest.raises(RunStateError, match="already ended"):
            await runtime.cancel(run_id)


async def test_cancel_a_queued_run_before_it_starts(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1", detach=True)
        cancelled = await runtime.cancel(run_id, by="bob")
        await runtime.start_executor(worker=True)
        await asyncio.sleep(0.5)
        record = await runtime.get_run(run_id)
    assert cancelled.status == "cancelled" and record.status == "cancelled"
    assert record.stop_reason == "cancelled" and "bob" in (record.error or "")
    assert agent.calls() == {}


async def test_cancel_a_running_run_lets_the_step_finish_and_starts_no_other(
    rt_settings: Settings, agent: AgentDir
) -> None:
    agent.block("tool-2")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=4")
        await asyncio.to_thread(agent.wait_for_call, f"tool:{run_id}:2")
        requested = await runtime.cancel(run_id)
        agent.unblock("tool-2")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
    assert requested.status == "running"
    assert (record.status, record.stop_reason) == ("cancelled", "cancelled")
    assert agent.calls()["model:3"] == 0 and agent.calls()[f"tool:{run_id}:3"] == 0
    assert events[-1].kind == "run_finished" and events[-1].data["status"] == "cancelled"


async def test_cancel_a_run_waiting_for_approval(rt_settings: Settings, agent: AgentDir) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2 tool=transfer")
        await _waiting(runtime, run_id)
        record = await runtime.cancel(run_id)
        await asyncio.sleep(0.5)
        later = await runtime.get_run(run_id)
    assert record.status == "cancelled" and later.status == "cancelled"
    assert agent.calls()[f"transfer:{run_id}:1"] == 0 and agent.calls()["model:2"] == 0
