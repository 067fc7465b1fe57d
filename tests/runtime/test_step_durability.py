"""What each ``[runtime] durability`` loses on kill -9: sync nothing recorded; batched a model call.

The agent calls its tool once, then answers garbage, so the loop asks the model again
(``model:3``) with no tool step between: the worker is killed inside that call. With
``sync`` the garbage answer (``model:2``) was committed before ``model:3`` began; with
``batched`` it waited to be committed with the next step, so the recovered run calls the
model for it again. The tool step, which flushes first, never runs twice on either.
"""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir, Workers

from shopfloor.config import Settings
from shopfloor.runtime import Runtime, compose

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("db_url")]


@pytest.mark.parametrize(("durability", "model_2_calls"), [("sync", 1), ("batched", 2)])
async def test_kill9_loses_what_the_durability_says(
    rt_settings: Settings,
    agent: AgentDir,
    workers: Workers,
    monkeypatch: pytest.MonkeyPatch,
    durability: str,
    model_2_calls: int,
) -> None:
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__DURABILITY", durability)
    agent.block("model-3")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 garbage", detach=True)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, "model:3")
        workers.kill9(first)
        agent.unblock("model-3")
        workers.start()
        async with asyncio.timeout(60):
            record = await runtime.wait(run_id)
    assert record.stop_reason == "invalid_output", record
    calls = agent.calls()
    assert calls["model:2"] == model_2_calls, calls
    assert calls["model:1"] == 1 and calls[f"tool:{run_id}:1"] == 1, calls
    assert calls["model:3"] == 2, "the call that was cut off runs again on both"
