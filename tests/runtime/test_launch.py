"""``Runtime.launch``: a run started from a spec loaded once, its end awaited from its workflow (not by
polling the run store); ``relaunch`` of a run recorded but never started; ``RunStore.get_many``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa
from runtime_support import AgentDir, queued_run

from shopfloor.config import Settings, load_settings
from shopfloor.runtime import RunRecord, RunStore, Runtime, compose
from shopfloor.runtime._store import runs as runs_table
from shopfloor.storage import make_engine

pytestmark = pytest.mark.usefixtures("db_url")


async def test_a_launched_runs_end_is_seen_without_polling_the_run_store(
    rt_settings: Settings, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll interval far longer than the run: waiting by polling would see the end a minute late.
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "60")
    settings = load_settings()
    services = compose(settings)
    async with Runtime(services, caller="tester") as runtime:
        loaded = services.load_spec(agent.path)
        await runtime.start_executor()
        started = time.perf_counter()
        launched = [await runtime.launch(loaded, f"ticks={n}") for n in (1, 2)]
        async with asyncio.timeout(20):
            errors = [await run.ended() for run in launched]
        elapsed = time.perf_counter() - started
        records = await runtime.get_runs([run.run_id for run in launched])
    assert errors == [None, None]
    assert elapsed < 20, "the end was awaited from the workflow, not after a 60 s poll"
    first, second = (records[run.run_id] for run in launched)
    assert (first.status, first.output, first.caller) == ("completed", "done after 1 ticks", "tester")
    assert (second.status, second.output) == ("completed", "done after 2 ticks")
    assert first.release_digest == loaded.digest


async def test_a_launched_run_whose_agent_changed_since_it_was_loaded_fails_at_its_start(
    rt_settings: Settings, agent: AgentDir
) -> None:
    services = compose(rt_settings)
    async with Runtime(services) as runtime:
        loaded = services.load_spec(agent.path)
        spec = agent.path / "agent.yaml"
        spec.write_text(spec.read_text().replace("Tick as asked.", "Tick differently."))
        launched = await runtime.launch(loaded, "ticks=1", run_id="ab" * 16)
        async with asyncio.timeout(20):
            await launched.ended()
        record = await runtime.get_run(launched.run_id)
    assert launched.run_id == "ab" * 16
    assert (record.status, record.stop_reason) == ("failed", "release_changed")


async def test_relaunch_starts_a_recorded_run_whose_workflow_never_started(
    rt_settings: Settings, agent: AgentDir
) -> None:
    services = compose(rt_settings)
    async with Runtime(services) as runtime:
        loaded = services.load_spec(agent.path)
        # What a process killed between recording the run and starting its workflow leaves behind.
        orphan = RunRecord(
            run_id="cd" * 16,
            agent=loaded.spec.name,
            spec_path=str(loaded.path),
            release_digest=loaded.digest,
            caller="tester",
            status="queued",
            task="ticks=1",
            created_at=time.time(),
        )
        runtime.store.create(orphan)
        relaunched = await runtime.relaunch(orphan.run_id)
        assert relaunched is not None
        async with asyncio.timeout(20):
            await relaunched.ended()
        # Its workflow exists now (and has ended): nothing to relaunch.
        again = await runtime.relaunch(orphan.run_id)
        record = await runtime.get_run(orphan.run_id)
    assert again is None
    assert (record.status, record.output) == ("completed", "done after 1 ticks")


def test_get_many_reads_the_runs_that_exist_in_one_query_per_chunk(db_url: str) -> None:
    load_settings().ensure_home()  # where the SQLite database goes
    store = RunStore(make_engine(db_url))
    try:
        ids = [f"{n:032x}" for n in range(1203)]
        rows = []
        for run_id in ids:
            values = queued_run(run_id, task=f"task {run_id}").to_dict()
            values.pop("total_tokens")
            rows.append(values | {"faults": None, "approval": None})
        with store.engine.begin() as conn:
            conn.execute(sa.insert(runs_table), rows)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        sa.event.listen(store.engine, "before_cursor_execute", seen)
        wanted = [*ids[::2], "f" * 32, ids[0]]  # one that does not exist, one asked twice
        found = store.get_many(wanted)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert set(found) == set(ids[::2])
        assert found[ids[4]].task == f"task {ids[4]}" and found[ids[4]].faults == {}
        assert len(selects) == 2, "602 ids in two queries of at most 500"
        assert store.get_many([]) == {}
    finally:
        store.close()
