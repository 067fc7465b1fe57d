"""Forks: a run whose steps before its fork step are its parent's recorded outputs (nothing called) and
which runs live from there, durably like any run, its own record complete (so it forks in turn)."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.errors import ForkStepError, RunStateError
from shopfloor.runtime import APPROVAL, Runtime, compose

pytestmark = pytest.mark.usefixtures("db_url")


async def test_a_fork_takes_the_parents_outputs_then_runs_live(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings), caller="tester") as runtime:
        parent_id = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(20):
            parent = await runtime.wait(parent_id)
        before = agent.calls()
        # From the record's third step (model:2) on: model:1 and the first tick are the parent's.
        fork_id = await runtime.fork_run(parent_id[:10], 3, caller="forker")
        async with asyncio.timeout(20):
            fork = await runtime.wait(fork_id)
        parent_steps = await runtime.recorded_steps(parent_id)
        fork_steps = await runtime.recorded_steps(fork_id)
        # The fork's own record is complete: forked again at its last step, only that step is live.
        again_id = await runtime.fork_run(fork_id, len(fork_steps))
        async with asyncio.timeout(20):
            again = await runtime.wait(again_id)
        kinds = [s.event.kind async for s in runtime.events(fork_id, follow=False)]

    assert parent.status == fork.status == again.status == "completed"
    assert fork.output == again.output == "done after 2 ticks"
    assert (fork.parent_run_id, fork.fork_step, fork.caller) == (parent_id, 3, "forker")
    assert (again.parent_run_id, again.fork_step) == (fork_id, 5)
    assert (fork.task, fork.agent, fork.release_digest) == (parent.task, parent.agent, parent.release_digest)
    assert [s.name for s in fork_steps] == [s.name for s in parent_steps]
    # its first tick is the parent's recorded output (the parent's idempotency key), its second its own
    assert fork_steps[1].output == parent_steps[1].output
    assert fork_steps[3].output["output"] == {"n": 2, "key": f"{fork_id}:2"}
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("tool_result") == 2
    calls = agent.calls() - before
    # nothing before the fork step was called again; the fork of the fork called only its last model step
    assert calls == {"model:2": 1, "model:3": 2, f"tool:{fork_id}:2": 1}


async def test_a_forks_approval_before_its_fork_step_is_the_parents_decision(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        parent_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        async with asyncio.timeout(20):
            async for stored in runtime.events(parent_id):
                if stored.event.kind == "approval_requested":
                    break
        await runtime.approve(parent_id, by="alice", reason="fine")
        async with asyncio.timeout(20):
            await runtime.wait(parent_id)
        # forked at its last step (model:2): the approval and the transfer are the parent's
        fork_id = await runtime.fork_run(parent_id, 4)
        async with asyncio.timeout(20):
            fork = await runtime.wait(fork_id)
        steps = await runtime.recorded_steps(fork_id)

    assert fork.status == "completed" and fork.output == "done after 1 ticks"
    assert [s.name for s in steps] == ["model:1", APPROVAL, "tool:1:transfer", "model:2"]
    assert steps[1].output == {"approved": True, "by": "alice", "reason": "fine"}
    assert agent.calls()[f"transfer:{fork_id}:1"] == 0  # the approved call was not made again


async def test_a_fork_needs_an_ended_run_and_a_step_of_its_record(
    rt_settings: Settings, agent: AgentDir
) -> None:
    async with Runtime(compose(rt_settings)) as runtime:
        queued = await runtime.start_run(agent.path, "ticks=1", detach=True)  # no worker takes it
        with pytest.raises(RunStateError, match="fork it once it has ended"):
            await runtime.fork_run(queued, 1)
        await runtime.cancel(queued)
        ended = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            await runtime.wait(ended)
        for step in (0, 5):
            with pytest.raises(ForkStepError, match="fork it at a step from 1 to 4") as raised:
                await runtime.fork_run(ended, step)
            assert raised.value.step == step and raised.value.steps == 3
        before = agent.calls()
        # One past the last step: every recorded step is the parent's, the answer among them.
        whole = await runtime.fork_run(ended, 4)
        async with asyncio.timeout(20):
            record = await runtime.wait(whole)
    assert record.status == "completed" and record.output == "done after 1 ticks"
    assert agent.calls() == before
