"""DBOS's step bookkeeping runs on the event loop on SQLite, in DBOS's threads on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import dbos._outcome as outcome
import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._dbos_internals import InPlaceAsyncio


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
