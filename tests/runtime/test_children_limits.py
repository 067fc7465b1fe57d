"""Child runs under their parent's limits and on the workers' queue: each child is started with its share of
the tokens and time its parent had left (recorded in its ``child_params``), what the children spent is
the parent's (once, across a kill -9 of the worker), at most ``limits.max_parallel_children`` of a parent's
children execute at once, and in workers the children go to the ``shopfloor-children`` queue, which any
worker dequeues. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from runtime_support import AgentDir, Workers, make_agent

from shopfloor.config import Settings, load_settings
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.runtime._executor import CHILD_QUEUE

pytestmark = pytest.mark.usefixtures("db_url")

LIMITS = "  max_steps: 10\n  max_tokens: 20000\n  step_timeout: 120\n  max_parallel_children: 2"


@pytest.fixture
def limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentDir:
    """The runtime tests' agent with a token budget and at most two children at once."""
    made = make_agent(tmp_path / "agents", name="limited", limits=LIMITS)
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(made.path), os.environ.get("PYTHONPATH", "")]))
    return made


async def _wait(runtime: Runtime, run_id: str) -> RunRecord:
    async with asyncio.timeout(60):
        return await runtime.wait(run_id)


async def _until(runtime: Runtime, run_id: str, statuses: list[str]) -> list[RunRecord]:
    """The run's children once their statuses are ``statuses`` (another process's runs: only rows tell)."""
    async with asyncio.timeout(30):
        while True:
            children = await runtime.children(run_id)
            if [c.status for c in children] == statuses:
                return children
            await asyncio.sleep(0.05)


async def _check_spend(runtime: Runtime, parent: RunRecord, children: list[RunRecord]) -> None:
    """The parent's usage is its own model calls' plus what its children spent, each counted once."""
    steps = {step.name: step.output for step in await runtime.recorded_steps(parent.run_id)}
    own_in = sum(out["usage"]["input_tokens"] for name, out in steps.items() if name.startswith("model:"))
    own_out = sum(out["usage"]["output_tokens"] for name, out in steps.items() if name.startswith("model:"))
    assert [c.model_calls for c in children] == [1] * len(children), "each child asked the model once"
    spent_in = sum(c.input_tokens for c in children)
    spent_out = sum(c.output_tokens for c in children)
    assert spent_in > 0 and spent_out > 0
    assert steps["tool:1:fan_out"]["usage"] == {
        "input_tokens": spent_in,
        "output_tokens": spent_out,
        "model_calls": len(children),
        "total_tokens": spent_in + spent_out,
    }
    assert (parent.input_tokens, parent.output_tokens) == (own_in + spent_in, own_out + spent_out)
    assert parent.model_calls == 2 + len(children)


async def test_children_spend_their_share_of_what_the_parent_had_left_and_it_counts_it(
    rt_settings: Settings, limited: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=3 ask")
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
        assert record.status == "completed", record.error
        assert [c.status for c in children] == ["completed"] * 3
        await _check_spend(runtime, record, children)
        first_model = (await runtime.recorded_steps(run_id))[0].output["usage"]
    left = 20_000 - first_model["input_tokens"] - first_model["output_tokens"]
    for child in children:
        assert child.child_params is not None
        assert child.child_params["max_tokens"] == left // 3, "an equal share of what the parent had left"
        # no child outlives the parent's step that waits for it (its timeout, 120 s, is the nearer end)
        assert 0 < child.child_params["deadline"] - child.created_at <= 120


async def test_the_shared_budgets_admit_a_childs_model_calls_as_its_agents(
    tmp_path: Path, limited: AgentDir, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    # three requests a minute for the agent: the parent's first decision and two children's questions
    config = tmp_path / "limits.toml"
    config.write_text('[[security.limits]]\nscope = "agent:limited"\nrequests_per_minute = 3\n')
    monkeypatch.setenv("SHOPFLOOR_CONFIG", str(config))
    settings = load_settings()
    assert settings.db_url == db_url
    async with Runtime(compose(settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=3 ask")
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
    refused = [c for c in children if c.status == "failed"]
    assert [c.model_calls for c in children].count(1) == 2, [c.error for c in children]
    assert len(refused) == 1 and "agent:limited requests/minute = 3" in (refused[0].error or "")
    # and the parent's next decision is over the limit as well
    assert (record.status, record.stop_reason) == ("failed", "budget"), record.error


async def test_at_most_max_parallel_children_execute_at_once(
    rt_settings: Settings, limited: AgentDir
) -> None:
    limited.block("child-0")
    limited.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=3")
        await asyncio.to_thread(limited.wait_for_call, "child:0")
        await asyncio.to_thread(limited.wait_for_call, "child:1")
        await _until(runtime, run_id, ["running", "running", "queued"])
        await asyncio.sleep(0.5)  # many polls of the parent's wait: the third still waits its turn
        assert limited.calls()["child:2"] == 0
        assert await runtime.dbos_status((await runtime.children(run_id))[2].run_id) is None
        limited.unblock("child-0")
        await asyncio.to_thread(limited.wait_for_call, "child:2")
        limited.unblock("child-1")
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
    assert record.status == "completed", record.error
    assert [c.status for c in children] == ["completed"] * 3


async def test_a_child_waiting_its_turn_is_cancelled_with_its_parent_and_never_runs(
    rt_settings: Settings, limited: AgentDir
) -> None:
    limited.block("child-0")
    limited.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=3")
        await _until(runtime, run_id, ["running", "running", "queued"])
        await runtime.cancel(run_id)
        limited.unblock("child-0")
        limited.unblock("child-1")
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
    assert record.status == "cancelled"
    assert children[2].status == "cancelled"
    assert limited.calls()["child:2"] == 0


@pytest.mark.slow
async def test_a_workers_children_go_to_the_queue_and_two_workers_run_them(
    rt_settings: Settings, limited: AgentDir, workers: Workers
) -> None:
    limited.block("child-0")
    limited.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=2", detach=True)
        # one run at a time each: the worker running the parent runs one child, the other the other
        workers.start("--concurrency", "1")
        workers.start("--concurrency", "1")
        children = await _until(runtime, run_id, ["running", "running"])
        parent = await runtime.get_run(run_id)
        queues = [(await runtime.dbos_status(c.run_id) or {}).get("queue_name") for c in children]
        limited.unblock("child-0")
        limited.unblock("child-1")
        record = await _wait(runtime, run_id)
    assert queues == [CHILD_QUEUE, CHILD_QUEUE]
    executors = {c.executor_id for c in children}
    assert len(executors) == 2, f"both workers ran a child: {executors}"
    assert parent.executor_id in executors
    assert record.status == "completed", record.error


@pytest.mark.slow
async def test_kill9_after_some_children_ended_counts_what_each_spent_once(
    rt_settings: Settings, limited: AgentDir, workers: Workers
) -> None:
    limited.block("child-1")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(limited.path, "fanout=3 ask", detach=True)
        first = workers.start()
        await asyncio.to_thread(limited.wait_for_call, "child:1")
        # two places: child 2 runs as child 0 ends
        await _until(runtime, run_id, ["completed", "running", "completed"])
        workers.kill9(first)
        limited.unblock("child-1")
        workers.start()
        record = await _wait(runtime, run_id)
        children = await runtime.children(run_id)
        assert record.status == "completed", record.error
        assert [c.status for c in children] == ["completed"] * 3
        await _check_spend(runtime, record, children)
    calls = limited.calls()
    assert (calls["child:0"], calls["child:2"], calls["ask"]) == (1, 1, 3), f"nothing ran twice: {calls}"
    assert calls[f"fan_out:{run_id}:1"] == 2, "the parent's step, never recorded, ran again"
