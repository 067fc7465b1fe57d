"""DBOS's step bookkeeping runs on the event loop on SQLite, in DBOS's threads on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import dbos._outcome as outcome
import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._dbos_internals import InPlaceAsyncio
from shopfloor.runtime._recorder_sqlite import SQLiteStepRecorder


async def test_in_place_to_thread_runs_on_the_calling_thread() -> None:
    in_place = InPlaceAsyncio()
    assert await in_place.to_thread(threading.get_ident) == threading.get_ident()
    assert in_place.sleep is asyncio.sleep  # everything else is asyncio's own


@pytest.mark.usefixtures("db_url")
async def test_a_runtime_inlines_bookkeeping_on_sqlite_only(rt_settings: Settings, agent: AgentDir) -> None:
    assert outcome.asyncio is asyncio
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2")
        inlined = isinstance(outcome.asyncio, InPlaceAsyncio)
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert inlined == rt_settings.db_url.startswith("sqlite")
    assert record.status == "completed" and record.model_calls == 3
    assert agent.calls()[f"tool:{run_id}:2"] == 1  # each step ran once
    assert outcome.asyncio is asyncio  # closing the runtime gives DBOS its threads back


@pytest.mark.usefixtures("db_url")
async def test_runs_in_one_process_take_turns(rt_settings: Settings, agent: AgentDir) -> None:
    # The ticker's model and tool never wait: only the runner's yield lets the two runs interleave.
    async with Runtime(compose(rt_settings)) as runtime:
        first = await runtime.start_run(agent.path, "ticks=6")
        second = await runtime.start_run(agent.path, "ticks=6")
        async with asyncio.timeout(30):
            for run_id in (first, second):
                assert (await runtime.wait(run_id)).status == "completed"
        steps = [await runtime.recorded_steps(run_id) for run_id in (first, second)]
    spans = [(min(s.started_at or 0 for s in run), max(s.completed_at or 0 for s in run)) for run in steps]
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1], spans  # their steps overlap in time


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL keeps DBOS's threads
async def test_the_record_of_a_runs_end_is_made_on_the_loop_and_written(
    rt_settings: Settings, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DBOS's record of a workflow's end (its ``persist``, in a thread in DBOS) is made on the loop,
    its commit shared with the other runs' steps, and is written: DBOS reports the run a success."""
    ended_on: list[int] = []
    off_loop = SQLiteStepRecorder.off_loop

    async def noting_the_thread(self: SQLiteStepRecorder, call: Callable[[], Any]) -> Any:
        def where() -> Any:
            ended_on.append(threading.get_ident())
            return call()

        return await off_loop(self, where)

    monkeypatch.setattr(SQLiteStepRecorder, "off_loop", noting_the_thread)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
            # DBOS records the workflow's end after the run's record says it ended.
            while (status := await runtime.dbos_status(run_id)) and status["status"] == "PENDING":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    assert record.status == "completed"
    assert status is not None and status["status"] == "SUCCESS"
    assert ended_on == [threading.get_ident()]
