"""kill -9 of worker processes at several points of a run, then a restart (or another worker).

Counters in ``calls.log`` (written by the agent's tools and scripted model before
they return) prove that a recorded step never runs again, and that the step that
was cut off runs again with the same idempotency key. Every test runs on both step paths
(the lean recorder and DBOS's own), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir, Workers

from shopfloor.config import Settings
from shopfloor.runtime import RunRecord, Runtime, compose

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("db_url", "step_recorder")]


@pytest.fixture(params=["lean", "dbos"])
def step_recorder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The workers (subprocesses, which read the environment) record steps on this path."""
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__STEP_RECORDER", request.param)
    return str(request.param)


async def _wait(runtime: Runtime, run_id: str) -> RunRecord:
    async with asyncio.timeout(60):
        return await runtime.wait(run_id)


@pytest.mark.parametrize("cut", ["model-2", "tool-2"])
async def test_kill9_mid_step_then_a_new_worker_finishes_the_run(
    rt_settings: Settings, agent: AgentDir, workers: Workers, cut: str
) -> None:
    agent.block(cut)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=3", detach=True)
        first = workers.start()
        cut_call = "model:2" if cut == "model-2" else f"tool:{run_id}:2"
        await asyncio.to_thread(agent.wait_for_call, cut_call)
        workers.kill9(first)
        agent.unblock(cut)
        workers.start()
        record = await _wait(runtime, run_id)

    assert (record.status, record.output) == ("completed", "done after 3 ticks")
    calls = agent.calls()
    assert calls.pop(cut_call) == 2, "the step that was cut off runs again (same idempotency key for a tool)"
    assert set(calls.values()) == {1}, f"a recorded step ran again: {calls}"
    assert set(calls) >= {"model:1", "model:3", "model:4", f"tool:{run_id}:1", f"tool:{run_id}:3"}


async def test_restart_with_the_same_executor_id_resumes_at_once(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    agent.block("tool-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2", detach=True)
        first = workers.start("--executor-id", "worker-a")
        await asyncio.to_thread(agent.wait_for_call, f"tool:{run_id}:1")
        workers.kill9(first)
        agent.unblock("tool-1")
        workers.start("--executor-id", "worker-a")
        record = await _wait(runtime, run_id)
    assert record.status == "completed" and record.executor_id == "worker-a"
    assert agent.calls()[f"tool:{run_id}:1"] == 2 and agent.calls()["model:1"] == 1


async def test_approval_survives_a_worker_crash(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer", detach=True)
        first = workers.start()
        async with asyncio.timeout(30):
            async for stored in runtime.events(run_id):
                if stored.event.kind == "approval_requested":
                    break
        workers.kill9(first)
        # Decided while no process holds the run: the decision waits in DBOS for the recovered run.
        await runtime.approve(run_id, by="alice")
        workers.start()
        record = await _wait(runtime, run_id)
    assert record.status == "completed"
    assert agent.calls()[f"transfer:{run_id}:1"] == 1 and agent.calls()["model:1"] == 1


async def test_two_workers_share_the_queue_and_one_recovers_the_others_run(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    agent.block("tool-1")
    procs = [workers.start(), workers.start()]
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2", detach=True)
        await asyncio.to_thread(agent.wait_for_call, f"tool:{run_id}:1")
        owner = (await runtime.get_run(run_id)).executor_id or ""
        victim = next(p for p in procs if f"-{p.pid}-" in owner)
        survivor = next(p for p in procs if p is not victim)
        workers.kill9(victim)
        agent.unblock("tool-1")
        record = await _wait(runtime, run_id)
    assert record.status == "completed"
    assert f"-{survivor.pid}-" in (record.executor_id or "")
    assert (
        agent.calls()[f"tool:{run_id}:1"] == 2
        and agent.calls()["model:1"] == 1
        and agent.calls()["model:2"] == 1
    )


async def test_cancel_while_the_worker_is_dead_is_recorded_by_the_next_worker(
    rt_settings: Settings, agent: AgentDir, workers: Workers
) -> None:
    agent.block("tool-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2", detach=True)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, f"tool:{run_id}:1")
        workers.kill9(first)
        requested = await runtime.cancel(run_id)
        agent.unblock("tool-1")
        workers.start()
        record = await _wait(runtime, run_id)
    assert requested.status == "running"
    assert (record.status, record.stop_reason) == ("cancelled", "cancelled")
    assert agent.calls()[f"tool:{run_id}:1"] == 1 and agent.calls()["model:2"] == 0
