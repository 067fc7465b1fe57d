"""What each ``[runtime] durability`` waits for, and what it loses on kill -9: sync nothing recorded;
batched the model calls whose records were not committed yet.

The agent calls its tool once, then answers garbage, so the loop asks the model again
(``model:3``) with no tool step between. While ``model:2`` runs, the test takes the database's
write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a lock on DBOS's step table that refuses
inserts), so no step record can be committed. With ``sync`` the next model call does not start
before ``model:2`` is committed: nothing happens until the lock goes. With ``batched`` it starts at
once (the record is committed behind the run: on SQLite it waits for the lock, on PostgreSQL in
memory for the next step's transaction), and the worker is killed inside it, the lock still held:
the recovered run calls the model for ``model:2`` again. The tool step, which has effects, never runs
twice on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator

import psycopg
import pytest
from runtime_support import AgentDir, Workers
from sqlalchemy.engine import make_url

from shopfloor.config import Settings
from shopfloor.runtime import Runtime, compose

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("db_url")]


@contextlib.contextmanager
def step_records_locked(db_url: str) -> Iterator[None]:
    """No step record of any process can be committed inside the block (reads go on)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        conn = sqlite3.connect(url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as pg:
        pg.execute("LOCK TABLE dbos.operation_outputs IN SHARE ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


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
    agent.block("model-2")
    agent.block("model-3")
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 garbage", detach=True)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, "model:2")

        def locked_while_model_2_ends() -> None:
            with step_records_locked(rt_settings.db_url):
                agent.unblock("model-2")
                if durability == "sync":
                    # model:2's record cannot be committed, so model:3 does not start.
                    time.sleep(1.5)
                    assert agent.calls()["model:3"] == 0, agent.calls()
                    return
                agent.wait_for_call("model:3")  # ran ahead of model:2's commit
                workers.kill9(first)

        await asyncio.to_thread(locked_while_model_2_ends)
        if durability == "sync":
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
