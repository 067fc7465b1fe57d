"""The lean step recorder against DBOS's own path: the same rows, the same results, the same errors.

Random scripts of steps, failing steps, cancels and owner changes run once through DBOS's
own step look-up and record and once through the lean recorder, in one launched DBOS, on
SQLite and on PostgreSQL. A cancel or an owner change stops the run at a step boundary; the
harness then resumes it (DBOS's ``resume_workflow``), so every run also replays recorded
steps, which must come back without their bodies running again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dbos import (
    DBOS,
    DBOSClient,
    DBOSContextSetAuth,
    PortableWorkflowError,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos import _context as dbos_context
from dbos import error as dbos_error
from runtime_support import AgentDir, queued_run

from shopfloor.agent import RunEvent
from shopfloor.config import Settings, load_settings
from shopfloor.errors import ConfigError
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._dbos_internals import (
    StepRow,
    StepRowDefaults,
    check_dbos,
    dbos_executor,
    inline_step_bookkeeping,
    install_step_recorder,
    restore_step_bookkeeping,
    step_row_defaults,
    system_database,
    workflow_tasks,
)
from shopfloor.runtime._executor import client_kwargs, configure_dbos_logging, dbos_config, new_executor_id
from shopfloor.runtime._recorder import open_recorder
from shopfloor.runtime._recorder_pg import PostgresStepRecorder
from shopfloor.runtime._recorder_sqlite import SQLiteStepRecorder
from shopfloor.runtime._runner import DBOSStepRunner
from shopfloor.runtime._store import RunStore
from shopfloor.storage import engine_url, make_engine

pytestmark = pytest.mark.usefixtures("db_url")

OPS = ("step", "step", "step", "fail", "cancel", "owner", "cancelled_status")
#: columns that hold a time or an execution's random token, not the outcome
VOLATILE = {"owner_xid", "creator_xid", "workflow_uuid", "retention_timestamp", "deadline_epoch_ms"}


@dataclass
class Harness:
    """What the scripted workflow's step bodies do besides returning: count, cancel, steal."""

    engine: sa.Engine
    client: DBOSClient
    #: where DBOS's tables are (PostgreSQL: the dbos schema)
    schema: str | None
    executions: Counter[str] = field(default_factory=Counter)
    #: set when a step handed its workflow to another owner (whose outcome DBOS then waits for)
    stolen: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self, workflow_id: str) -> None:
        self.client.cancel_workflow(workflow_id)

    def set_status(self, workflow_id: str, **values: Any) -> None:
        columns = (sa.column(k) for k in ("workflow_uuid", *values))
        table = sa.table("workflow_status", *columns, schema=self.schema)
        with self.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.workflow_uuid == workflow_id).values(**values))


@dataclass
class _Current:
    harness: Harness | None = None


_current = _Current()


@DBOS.workflow(name="shopfloor.tests.scripted")
async def scripted(script: list[list[Any]]) -> list[Any]:
    harness = _current.harness
    assert harness is not None
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    results: list[Any] = []
    for index, (op, arg) in enumerate(script):

        async def body(index: int = index, op: str = op, arg: Any = arg) -> dict[str, Any]:
            key = f"{workflow_id}:{index}"
            harness.executions[key] += 1
            first = harness.executions[key] == 1
            if op == "fail":
                raise ValueError(f"scripted failure {arg}")
            if op == "cancel" and first:
                await asyncio.to_thread(harness.cancel, workflow_id)
            if op == "owner" and first:
                await asyncio.to_thread(harness.set_status, workflow_id, owner_xid="another-execution")
                harness.stolen.set()
            if op == "hang" and first:  # until the test cancels the workflow's task
                await asyncio.Event().wait()
            if op == "cancelled_status" and first:
                await asyncio.to_thread(harness.set_status, workflow_id, status="CANCELLED")
            return {"index": index, "value": arg}

        try:
            results.append(await DBOS.run_step_async({"name": f"{op}:{index}"}, body))
        except (ValueError, PortableWorkflowError) as exc:  # raised, then replayed from its record
            results.append({"error": str(exc)})
        if op == "cancel_after" and not harness.executions[f"{workflow_id}:{index}:cancelled"]:
            # Between this step's record and the next step's look-up: the window the lean look-up moves.
            harness.executions[f"{workflow_id}:{index}:cancelled"] += 1
            await asyncio.to_thread(harness.cancel, workflow_id)
    return results


def make_script(rng: random.Random, length: int) -> list[list[Any]]:
    return [[rng.choice(OPS), rng.randrange(1000)] for _ in range(length)]


@pytest.fixture
async def launched(rt_settings: Settings) -> AsyncIterator[Harness]:
    check_dbos()
    rt_settings.ensure_home()
    configure_dbos_logging()
    DBOS(config=dbos_config(rt_settings, new_executor_id("test")))
    DBOS.launch()
    if rt_settings.db_url.startswith("sqlite"):
        inline_step_bookkeeping()
    engine = sa.create_engine(engine_url(rt_settings.db_url))
    client = DBOSClient(**client_kwargs(rt_settings))
    _current.harness = Harness(engine=engine, client=client, schema=step_row_defaults().schema)
    try:
        yield _current.harness
    finally:
        _current.harness = None
        client.destroy()
        engine.dispose()
        await asyncio.to_thread(DBOS.destroy)
        restore_step_bookkeeping()


@dataclass(frozen=True)
class Outcome:
    result: Any
    interruptions: list[str]
    executions: list[int]
    steps: list[dict[str, Any]]
    status: dict[str, Any]
    #: the workflow's ``workflow_output`` row (its recorded result or error)
    output: dict[str, Any]  # empty where it has none


async def run_script(harness: Harness, settings: Settings, script: list[list[Any]]) -> Outcome:
    workflow_id = uuid.uuid4().hex
    interruptions: list[str] = []
    # Executions fenced off by an owner change wait for the new owner's outcome until the end.
    parked: set[asyncio.Task[Any]] = set()
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(scripted, script)
    for _ in range(len(script) + 1):
        # A cancelled run ends its handle; a run whose owner changed waits for that owner's
        # outcome, so the harness resumes it (as a recovery would) once the change is made.
        harness.stolen.clear()
        result_of = asyncio.ensure_future(handle.get_result())
        stolen = asyncio.ensure_future(harness.stolen.wait())
        done, _ = await asyncio.wait({result_of, stolen}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        stolen.cancel()
        if result_of in done:
            try:
                result = result_of.result()
                break
            except dbos_error.DBOSAwaitedWorkflowCancelledError as exc:
                interruptions.append(type(exc).__name__)
                # The handle reports the cancel as soon as the status says so; the cancelled
                # execution itself stops at its next step boundary. Resuming before it got there
                # would let it run the next step's body beside the resumed execution, a race of
                # the harness (on both paths alike), not a difference between them.
                await _until_ended(parked)
        elif stolen in done:
            result_of.cancel()
            interruptions.append("owner changed")
            parked |= {task for task in workflow_tasks() if not task.done()}
        else:
            raise AssertionError(f"the script stalled: {script}, {interruptions}")
        await asyncio.to_thread(harness.client.resume_workflow, workflow_id)
        handle = await DBOS.retrieve_workflow_async(workflow_id)
    else:
        raise AssertionError(f"the script never finished: {interruptions}")
    executions = [harness.executions[f"{workflow_id}:{i}"] for i in range(len(script))]
    return Outcome(result, interruptions, executions, *rows(harness, workflow_id))


async def _until_ended(parked: set[asyncio.Task[Any]]) -> None:
    """Wait until every workflow execution of this process but the ``parked`` ones has ended."""
    running = [task for task in workflow_tasks() if not task.done() and task not in parked]
    if running:
        _, pending = await asyncio.wait(running, timeout=15)
        assert not pending, "a cancelled execution did not stop at its next step boundary"


def rows(harness: Harness, workflow_id: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    prefix = f"{harness.schema}." if harness.schema else ""

    def stable(row: sa.Row[Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in row._mapping.items()
            if k not in VOLATILE and not k.endswith(("_at", "_epoch_ms"))
        }

    with harness.engine.connect() as conn:
        steps = conn.execute(
            sa.text(f"SELECT * FROM {prefix}operation_outputs WHERE workflow_uuid = :w ORDER BY function_id"),
            {"w": workflow_id},
        ).all()
        (status,) = conn.execute(
            sa.text(f"SELECT * FROM {prefix}workflow_status WHERE workflow_uuid = :w"), {"w": workflow_id}
        ).all()
        # none for a run that ended cancelled
        outputs = conn.execute(
            sa.text(f"SELECT * FROM {prefix}workflow_output WHERE workflow_uuid = :w"), {"w": workflow_id}
        ).all()
        timed = conn.execute(
            sa.text(
                f"SELECT count(*) FROM {prefix}operation_outputs WHERE workflow_uuid = :w "
                "AND (started_at_epoch_ms IS NULL OR completed_at_epoch_ms < started_at_epoch_ms)"
            ),
            {"w": workflow_id},
        ).scalar()
    assert timed == 0, "every step row has a start and ends after it"
    return [stable(s) for s in steps], stable(status), stable(outputs[0]) if outputs else {}


@pytest.mark.parametrize("seed", range(4))
async def test_lean_and_dbos_paths_leave_the_same_rows(
    launched: Harness, rt_settings: Settings, seed: int
) -> None:
    script = make_script(random.Random(seed), 8)
    stock = await run_script(launched, rt_settings, script)
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    uninstall = install_step_recorder(recorder)
    if recorder.in_place:  # as a runtime runs it: each step's record settles in the group commit,
        # the run's start and end records too (from DBOS's threads)
        recorder.attach(asyncio.get_running_loop())
        inline_step_bookkeeping(recorder.settle, recorder.off_loop)
    try:
        lean = await run_script(launched, rt_settings, script)
    finally:
        if recorder.in_place:
            inline_step_bookkeeping()
        uninstall()
    differing = {k: (v, stock.status[k]) for k, v in lean.status.items() if stock.status.get(k) != v}
    assert differing == {}, script
    assert lean == stock, script
    # A recorded step never ran again; a step whose record was fenced off ran once more on resume.
    fenced = sum(1 for op, _ in script if op in ("cancel", "owner"))
    assert sum(stock.executions) == len(script) + fenced
    assert [s["function_name"] for s in stock.steps] == [f"{op}:{i}" for i, (op, _) in enumerate(script)]


async def run_lean(harness: Harness, settings: Settings, script: list[list[Any]]) -> tuple[Outcome, int]:
    """``run_script`` through the lean recorder, as a runtime installs it; and its look-ups left unread."""
    recorder = open_recorder(settings.db_url, step_row_defaults())
    uninstall = install_step_recorder(recorder)
    if recorder.in_place:  # as a runtime runs it: each step's record settles in the group commit,
        # the run's start and end records too (from DBOS's threads)
        recorder.attach(asyncio.get_running_loop())
        inline_step_bookkeeping(recorder.settle, recorder.off_loop)
    try:
        return await run_script(harness, settings, script), recorder.unread
    finally:
        if recorder.in_place:
            inline_step_bookkeeping()
        uninstall()


async def test_a_fresh_run_reads_only_its_first_look_up_and_a_resume_reads_below_its_high_water(
    launched: Harness, rt_settings: Settings
) -> None:
    """A run that started fresh reads once (its high-water mark, its status); each later step's
    cancel check was made by the record of the step before. Cancelled at step 2 and resumed, the
    resumed execution reads at steps 0 and 1 (below its high-water mark: recorded, returned, never
    re-run) and at step 2 (beyond it, but its predecessor was replayed, not recorded), then no more."""
    fresh, unread = await run_lean(launched, rt_settings, [["step", i] for i in range(6)])
    assert fresh.executions == [1] * 6 and unread == 5
    script = [["step", 0], ["step", 1], ["cancel", 2], ["step", 3], ["step", 4], ["step", 5]]
    resumed, unread = await run_lean(launched, rt_settings, script)
    assert resumed.interruptions == ["DBOSAwaitedWorkflowCancelledError"]
    assert resumed.executions == [1, 1, 2, 1, 1, 1]
    # the cancelled execution: steps 1 and 2 unread (its record of 2 fenced off); the resumed: 3, 4, 5
    assert unread == 2 + 3


async def test_a_cancel_before_a_steps_record_runs_no_further_body(
    launched: Harness, rt_settings: Settings
) -> None:
    """Committed while step 1's body runs (before its record): the record is fenced off (a cancel
    clears ``owner_xid``) and no later body runs in that execution, as on DBOS's own path."""
    script = [["step", 0], ["cancel", 1], ["step", 2], ["step", 3]]
    stock = await run_script(launched, rt_settings, script)
    lean, _ = await run_lean(launched, rt_settings, script)
    assert lean == stock
    # step 1 ran again on resume (its record was fenced off); step 2 ran once, after the resume
    assert lean.executions == [1, 2, 1, 1]


async def test_a_cancel_between_a_record_and_the_next_look_up_stops_the_run_at_the_next_record(
    launched: Harness, rt_settings: Settings
) -> None:
    """Committed after step 1's record and before step 2's look-up: DBOS's look-up sees it and runs
    no body; the lean look-up does not read, so step 2's body runs once in the cancelled execution
    (the window this recorder widens, by the loop's own work between two steps) and its record is
    fenced off; no later body runs there, and the rows and the result are DBOS's."""
    script = [["step", 0], ["cancel_after", 1], ["step", 2], ["step", 3]]
    stock = await run_script(launched, rt_settings, script)
    lean, _ = await run_lean(launched, rt_settings, script)
    assert stock.executions == [1, 1, 1, 1]
    assert lean.executions == [1, 1, 2, 1]
    assert (lean.result, lean.interruptions, lean.steps, lean.status) == (
        stock.result,
        stock.interruptions,
        stock.steps,
        stock.status,
    )


async def test_an_end_whose_record_does_not_land_takes_the_recorded_outcome_as_dbos_does(
    launched: Harness, rt_settings: Settings
) -> None:
    """Cancelled after its last step's record, the workflow returns, and its end's record (made on the
    loop, answered "landed" until its commit) does not land: the end is made again as DBOS makes it,
    which takes the recorded outcome (the cancel), and the resumed run ends as on DBOS's own path."""
    script = [["step", 0], ["cancel_after", 1]]
    stock = await run_script(launched, rt_settings, script)
    lean, _ = await run_lean(launched, rt_settings, script)
    assert stock.interruptions == ["DBOSAwaitedWorkflowCancelledError"]
    assert lean == stock


async def test_a_look_up_reads_unless_the_previous_record_proved_the_run_owned_and_not_cancelled(
    launched: Harness, lean: Any
) -> None:
    """Per execution (its ownership token): the first look-up reads; one right after a record whose
    statement saw the run owned and not cancelled does not; a record that saw it CANCELLED (a status
    written without clearing the owner), a look-up at or below the high-water mark, another
    execution, and a step recorded by another owner beyond the mark after such a record: in the
    last case the look-up answers "not recorded" (DBOS's would return the other owner's row), and
    this execution's record of it is fenced off, as a record after any hand-off is."""
    workflow_id = await _pending_workflow(launched, "me")
    base = _step_row(workflow_id, completed_at=5_000_000)
    _dbos_record(_renamed(base, 3, "step:3"), "me")  # a row of an earlier execution: the mark is 3
    reads = lean.unread
    assert lean.look_up(workflow_id, 1, "step:1", "me") is None  # read: the first
    lean.record(_renamed(base, 1, "step:1"), "me")
    assert lean.look_up(workflow_id, 2, "step:2", "me") is None  # read: at or below the mark
    lean.record(_renamed(base, 2, "step:2"), "me")
    assert lean.look_up(workflow_id, 3, "step:3", "me") is not None  # read: the earlier row, replayed
    assert lean.unread == reads
    assert lean.look_up(workflow_id, 4, "step:4", "me") is None  # read: step 3 was not recorded by me
    lean.record(_renamed(base, 4, "step:4"), "me")
    assert lean.look_up(workflow_id, 5, "step:5", "me") is None
    assert lean.unread == reads + 1
    # A status written CANCELLED without clearing the owner: the record is written (as DBOS's is)
    # and proves nothing, so the next look-up reads and stops the run.
    lean.record(_renamed(base, 5, "step:5"), "me")
    await asyncio.to_thread(launched.set_status, workflow_id, status="CANCELLED")
    lean.record(_renamed(base, 6, "step:6"), "me")
    with pytest.raises(dbos_error.DBOSWorkflowCancelledError):
        lean.look_up(workflow_id, 7, "step:7", "me")
    # Resumed (a new token): reads again, the mark now 6.
    await asyncio.to_thread(launched.set_status, workflow_id, status="PENDING", owner_xid="me-again")
    assert lean.look_up(workflow_id, 6, "step:6", "me-again") is not None
    lean.record(_renamed(base, 7, "step:7"), "me-again")
    # Another owner takes over after that record and records step 8 before this execution looks it up.
    await asyncio.to_thread(launched.set_status, workflow_id, owner_xid="another-execution")
    _dbos_record(_renamed(base, 8, "step:8"), "another-execution")
    assert system_database().check_operation_execution(workflow_id, 8, "step:8") is not None
    assert lean.look_up(workflow_id, 8, "step:8", "me-again") is None  # unread
    with pytest.raises(dbos_error.DBOSWorkflowConflictIDError):
        lean.record(_renamed(base, 8, "step:8"), "me-again")
    assert lean.look_up(workflow_id, 8, "step:8") is not None  # outside an execution: always read
    assert lean.unread == reads + 2


def _step_row(workflow_id: str, *, completed_at: int, output: str = '"x"') -> StepRow:
    return StepRow(
        workflow_id=workflow_id,
        function_id=1,
        function_name="step:1",
        started_at_ms=completed_at - 5,
        completed_at_ms=completed_at,
        output=output,
        error=None,
        serialization="portable_json",
    )


def _dbos_record(row: StepRow, owner_xid: str | None) -> None:
    system_database().record_operation_result(
        {
            "workflow_uuid": row.workflow_id,
            "function_id": row.function_id,
            "function_name": row.function_name,
            "started_at_epoch_ms": row.started_at_ms,
            "output": row.output,
            "error": row.error,
            "serialization": row.serialization,
            "child_workflow_id": None,
        },
        completed_at_epoch_ms=row.completed_at_ms,
        owner_xid=owner_xid,
    )


async def _pending_workflow(harness: Harness, owner: str) -> str:
    """A workflow row owned by ``owner`` (its one step recorded, then left PENDING)."""
    workflow_id = uuid.uuid4().hex
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(scripted, [])
    await handle.get_result()
    await asyncio.to_thread(harness.set_status, workflow_id, status="PENDING", owner_xid=owner)
    return workflow_id


@pytest.fixture
def lean(launched: Harness, rt_settings: Settings) -> Iterator[Any]:
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    yield recorder
    recorder.close()


async def test_retried_commit_nondeterminism_and_fencing_match_dbos(launched: Harness, lean: Any) -> None:
    """Per path: the same record twice is a retry (no error); another completion time at the same
    step is nondeterminism; a record by an execution that no longer owns the workflow is fenced."""
    outcomes = []
    for record in (_dbos_record, lean.record):
        workflow_id = await _pending_workflow(launched, "me")
        seen = []
        row = _step_row(workflow_id, completed_at=1_000_000)
        record(row, "me")
        record(row, "me")
        seen.append(lean.look_up(workflow_id, 1, "step:1"))
        for attempt in (_step_row(workflow_id, completed_at=1_000_001, output='"y"'),):
            with pytest.raises(dbos_error.DBOSStepNondeterminismError) as caught:
                record(attempt, "me")
            seen.append(str(caught.value).replace(workflow_id, "W"))
        fenced = StepRow(**{**row.__dict__, "function_id": 2, "function_name": "step:2"})
        with pytest.raises(dbos_error.DBOSWorkflowConflictIDError):
            record(fenced, "someone-else")
        seen.append(lean.look_up(workflow_id, 2, "step:2"))  # nothing was written
        with pytest.raises(dbos_error.DBOSUnexpectedStepError) as unexpected:
            lean.look_up(workflow_id, 1, "step:other")
        seen.append(str(unexpected.value).replace(workflow_id, "W"))
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == {
        "output": '"x"',
        "error": None,
        "serialization": "portable_json",
        "child_workflow_id": None,
        "child_shard_key": None,
    }


async def test_the_look_up_returns_what_dbos_returns(launched: Harness, lean: Any) -> None:
    workflow_id = await _pending_workflow(launched, "me")
    _dbos_record(_step_row(workflow_id, completed_at=2_000_000), "me")
    dbos_check = system_database().check_operation_execution
    for function_id, name in [(1, "step:1"), (2, "step:2")]:
        assert lean.look_up(workflow_id, function_id, name) == dbos_check(workflow_id, function_id, name)
    await asyncio.to_thread(launched.set_status, workflow_id, status="CANCELLED")
    for look_up in (lean.look_up, dbos_check):
        with pytest.raises(dbos_error.DBOSWorkflowCancelledError):
            look_up(workflow_id, 1, "step:1")
    for look_up in (lean.look_up, dbos_check):
        with pytest.raises(AssertionError, match="does not exist"):
            look_up("no-such-workflow", 1, "step:1")


@pytest.mark.parametrize("recorder", ["lean", "dbos"])
async def test_the_setting_chooses_who_writes_the_step_rows(
    rt_settings: Settings, agent: AgentDir, monkeypatch: pytest.MonkeyPatch, recorder: str
) -> None:
    """A whole run: with ``lean`` DBOS's own engine writes no step row, with ``dbos`` it writes each;
    on SQLite the lean recorder writes the run's start and outcome too (PostgreSQL keeps DBOS's)."""
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__STEP_RECORDER", recorder)
    settings = load_settings()
    assert settings.runtime.step_recorder == recorder and settings.db_url == rt_settings.db_url
    written: list[str] = []
    outcomes: list[str] = []
    starts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO") and "operation_outputs" in statement:
            written.append(statement)
        if "INSERT INTO" in statement.upper() and "workflow_output" in statement:
            outcomes.append(statement)
        if statement.lstrip().upper().startswith("INSERT INTO") and "workflow_status" in statement:
            starts.append(statement)

    async with Runtime(compose(settings)) as runtime:
        await runtime.start_executor()
        sa.event.listen(system_database().engine, "before_cursor_execute", count)
        run_id = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(30):
            record = await runtime.wait(run_id)
        steps = await runtime.recorded_steps(run_id)
    assert record.status == "completed" and len(steps) >= 5
    assert len(written) == (0 if recorder == "lean" else len(steps))
    lean_outcome = recorder == "lean" and settings.db_url.startswith("sqlite")
    assert len(outcomes) == (0 if lean_outcome else 1)
    assert len(starts) == (0 if lean_outcome else 1)


def _another_writer(db_url: str) -> sqlite3.Connection:
    """Another writer's connection to the SQLite database: ``BEGIN IMMEDIATE`` there holds the write lock."""
    return sqlite3.connect(sa.make_url(db_url).database or "", isolation_level=None)


def _renamed(row: StepRow, function_id: int, name: str) -> StepRow:
    return StepRow(**{**row.__dict__, "function_id": function_id, "function_name": name})


async def test_batched_durability_commits_a_model_step_with_the_next_step(
    launched: Harness, rt_settings: Settings
) -> None:
    sync = open_recorder(rt_settings.db_url, step_row_defaults())
    batched = open_recorder(rt_settings.db_url, step_row_defaults(), durability="batched")
    try:
        for recorder in (sync, batched):
            workflow_id = await _pending_workflow(launched, "me")
            model = _renamed(_step_row(workflow_id, completed_at=3_000_000), 1, "model:1")
            recorder.record(model, "me")
            committed = sync.look_up(workflow_id, 1, "model:1") is not None
            assert committed == (recorder is sync), "sync commits each step; batched defers a model step"
            recorder.record(_renamed(model, 2, "tool:1:tick"), "me")
            assert sync.look_up(workflow_id, 1, "model:1") is not None  # written with the tool's row
            assert sync.look_up(workflow_id, 2, "tool:1:tick") is not None
        # A deferred batch whose run changed owner is fenced off whole; a flush commits what waits.
        workflow_id = await _pending_workflow(launched, "me")
        model = _renamed(_step_row(workflow_id, completed_at=3_000_000), 1, "model:1")
        batched.record(model, "me")
        batched.record(_renamed(model, 2, "model:2"), "me")
        await asyncio.to_thread(launched.set_status, workflow_id, owner_xid="another-execution")
        with pytest.raises(dbos_error.DBOSWorkflowConflictIDError):
            batched.record(_renamed(model, 3, "tool:2:x"), "me")
        assert [sync.look_up(workflow_id, i, f"model:{i}") for i in (1, 2)] == [None, None]
        batched.record(_renamed(model, 4, "model:4"), "another-execution")
        assert sync.look_up(workflow_id, 4, "model:4") is None
        batched.flush(workflow_id)
        assert sync.look_up(workflow_id, 4, "model:4") is not None
    finally:
        sync.close()
        batched.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the lock is SQLite's single writer
async def test_a_batch_that_failed_to_commit_is_written_by_the_retry(
    launched: Harness, rt_settings: Settings
) -> None:
    """DBOS's retry calls ``record`` again after "database is locked": the deferred rows are kept."""
    batched = open_recorder(rt_settings.db_url, step_row_defaults(), durability="batched")
    blocker = _another_writer(rt_settings.db_url)
    try:
        workflow_id = await _pending_workflow(launched, "me")
        model = _renamed(_step_row(workflow_id, completed_at=4_000_000), 1, "model:1")
        tool = _renamed(model, 2, "tool:1:tick")
        batched.record(model, "me")
        batched._conn.execute("PRAGMA busy_timeout=50")  # type: ignore[attr-defined]  # the fault
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            batched.record(tool, "me")
        blocker.execute("ROLLBACK")
        batched.record(tool, "me")
        assert batched.look_up(workflow_id, 1, "model:1") is not None
        assert batched.look_up(workflow_id, 2, "tool:1:tick") is not None
    finally:
        blocker.close()
        batched.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit is SQLite's
async def test_steps_of_concurrent_runs_share_one_commit_and_fail_alone(
    launched: Harness, rt_settings: Settings
) -> None:
    """Steps recorded together (the runs of one worker) are written in one transaction; each step
    returns once its row is inserted, and is durable once ``confirmed``; a fenced-off one fails
    without failing the others."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    commits: list[str] = []
    # Counting what reaches SQLite: groups begin on the loop's connection, records from
    # elsewhere go through the writer's.
    for conn in (recorder._conn, recorder._eager):  # type: ignore[attr-defined]
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    try:
        workflows = [await _pending_workflow(launched, "me") for _ in range(8)]
        rows = [_step_row(w, completed_at=5_000_000 + i) for i, w in enumerate(workflows)]
        owners = ["me"] * 7 + ["someone-else"]  # the last run changed owner meanwhile

        async def step(row: StepRow, owner: str) -> bool:
            await recorder.settle(lambda: recorder.record(row, owner))
            await recorder.confirmed(row.workflow_id)
            return recorder.look_up(row.workflow_id, 1, "step:1") is not None  # durable once confirmed

        outcomes = await asyncio.gather(*map(step, rows, owners), return_exceptions=True)
        assert outcomes[:7] == [True] * 7
        assert isinstance(outcomes[7], dbos_error.DBOSWorkflowConflictIDError)
        assert recorder.look_up(workflows[7], 1, "step:1") is None
        assert len(commits) == 1
        # A failed step raises its error once the row recording that error is durable.
        failed = await _pending_workflow(launched, "me")
        error_row = StepRow(**{**_step_row(failed, completed_at=5_500_000).__dict__, "output": None})
        error_row = StepRow(**{**error_row.__dict__, "error": '"boom"'})

        def record_then_raise() -> None:
            recorder.record(error_row, "me")
            raise ValueError("the step failed")

        with pytest.raises(ValueError, match="the step failed"):
            await recorder.settle(record_then_raise)
        await recorder.confirmed(failed)
        assert recorder.look_up(failed, 1, "step:1") is not None and len(commits) == 2
        # A record outside ``settle`` (another thread's step, a direct call) commits at once.
        alone = await _pending_workflow(launched, "me")
        recorder.record(_step_row(alone, completed_at=6_000_000), "me")
        assert recorder.look_up(alone, 1, "step:1") is not None and len(commits) == 3
    finally:
        recorder.close()


def _committed(db_url: str, workflow_id: str) -> int:
    """The workflow's step rows another connection sees (committed ones only)."""
    with contextlib.closing(sqlite3.connect(sa.make_url(db_url).database or "")) as conn:
        query = "SELECT count(*) FROM operation_outputs WHERE workflow_uuid = ?"
        count: int = conn.execute(query, (workflow_id,)).fetchone()[0]
    return count


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit is SQLite's
async def test_a_step_is_given_back_once_inserted_and_its_next_step_waits_for_the_commit(
    launched: Harness, rt_settings: Settings
) -> None:
    """A step whose row is inserted returns while its commit (the fsync) is still in the writer
    thread, so the run's own work overlaps it; ``confirmed`` (what the run's next step waits for)
    returns only once the row is committed."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    gate = threading.Event()
    try:
        workflow_id = await _pending_workflow(launched, "me")
        before = _committed(rt_settings.db_url, workflow_id)
        row = _renamed(_step_row(workflow_id, completed_at=9_000_000), 2, "step:2")
        # The writer thread busy with a job ahead of the commit: it stays in flight until the gate opens.
        writer = recorder._writer_thread()  # type: ignore[attr-defined]
        writer.submit(asyncio.get_running_loop(), lambda: gate.wait(30) and [], lambda _: None)
        async with asyncio.timeout(10):
            await recorder.settle(lambda: recorder.record(row, "me"))  # returns: inserted
        confirming = asyncio.ensure_future(recorder.confirmed(workflow_id))
        await asyncio.sleep(0.05)
        assert not confirming.done()
        assert await asyncio.to_thread(_committed, rt_settings.db_url, workflow_id) == before
        gate.set()
        async with asyncio.timeout(10):
            await confirming
        assert await asyncio.to_thread(_committed, rt_settings.db_url, workflow_id) == before + 1
        await recorder.confirmed(workflow_id)  # nothing left to wait for
    finally:
        gate.set()
        recorder.close()


class _FailingCommit:
    """A connection whose COMMIT fails as a full or failing disk makes it fail (rolled back): a fault
    this machine cannot cause on demand."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit is SQLite's
async def test_a_commit_that_fails_after_its_step_returned_is_raised_before_the_next_step(
    launched: Harness, rt_settings: Settings
) -> None:
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    try:
        workflow_id = await _pending_workflow(launched, "me")
        before = _committed(rt_settings.db_url, workflow_id)
        eager = recorder._eager  # type: ignore[attr-defined]
        recorder._eager = _FailingCommit(eager)  # type: ignore[attr-defined]  # the fault
        row = _renamed(_step_row(workflow_id, completed_at=9_500_000), 2, "step:2")
        async with asyncio.timeout(10):
            await recorder.settle(lambda: recorder.record(row, "me"))
            with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
                await recorder.confirmed(workflow_id)
        recorder._eager = eager  # type: ignore[attr-defined]
        assert await asyncio.to_thread(_committed, rt_settings.db_url, workflow_id) == before
        await recorder.confirmed(workflow_id)  # raised once; the run's next step records again
    finally:
        recorder.close()


async def _group_committed(recorder: Any) -> None:
    """Until the SQLite recorder's staged rows are committed (or failed): state to poll, nothing to await."""
    while recorder._in_flight or recorder._staged:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit is SQLite's
async def test_batched_records_are_committed_behind_the_run_and_raised_where_it_flushes(
    launched: Harness, rt_settings: Settings
) -> None:
    """``durability = "batched"`` on SQLite: a record (a model's, or a tool's) returns before its insert
    and its commit, which land behind the run in order; ``confirmed`` (the runner's flush) waits for
    them. A record that fails (fenced off here, a failed commit below) is raised there, and fails every
    later record of its run, so none lands after the gap; another run's records are not touched."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults(), durability="batched")
    blocker = _another_writer(rt_settings.db_url)
    try:
        workflow_id = await _pending_workflow(launched, "me")
        model = _renamed(_step_row(workflow_id, completed_at=5_000_000), 2, "model:2")
        tool = _renamed(model, 3, "tool:2:calculator")
        blocker.execute("BEGIN IMMEDIATE")  # no commit can land: the records return all the same
        async with asyncio.timeout(10):
            await recorder.settle(lambda: recorder.record(model, "me"))
            await recorder.settle(lambda: recorder.record(tool, "me"))
        assert await asyncio.to_thread(_committed, rt_settings.db_url, workflow_id) == 0
        flushed = asyncio.ensure_future(recorder.confirmed(workflow_id))
        await asyncio.sleep(0.2)
        assert not flushed.done(), "the flush waits for the commit"
        blocker.execute("ROLLBACK")
        async with asyncio.timeout(40):
            await flushed
        assert await asyncio.to_thread(_committed, rt_settings.db_url, workflow_id) == 2

        # Fenced off (another execution owns the run): raised at the flush, the later record not written.
        fenced = await _pending_workflow(launched, "another-execution")
        other = await _pending_workflow(launched, "me")
        first = _renamed(_step_row(fenced, completed_at=6_000_000), 2, "model:2")
        mine = _renamed(_step_row(other, completed_at=6_000_000), 2, "model:2")
        async with asyncio.timeout(10):
            await recorder.settle(lambda: recorder.record(first, "me"))
            await recorder.settle(lambda: recorder.record(mine, "me"))
            await _group_committed(recorder)
            await asyncio.to_thread(launched.set_status, fenced, owner_xid="me")  # owned again: too late
            await recorder.settle(lambda: recorder.record(_renamed(first, 3, "model:3"), "me"))
            with pytest.raises(dbos_error.DBOSWorkflowConflictIDError):
                await recorder.confirmed(fenced)
            await recorder.confirmed(other)
            await recorder.confirmed(fenced)  # raised once
        assert await asyncio.to_thread(_committed, rt_settings.db_url, fenced) == 0
        assert await asyncio.to_thread(_committed, rt_settings.db_url, other) == 1

        # A commit that fails: its rows and every later one of the run are lost, and the flush says so.
        failing = await _pending_workflow(launched, "me")
        eager = recorder._eager  # type: ignore[attr-defined]
        recorder._eager = _FailingCommit(eager)  # type: ignore[attr-defined]  # the fault
        row = _renamed(_step_row(failing, completed_at=7_000_000), 2, "model:2")
        async with asyncio.timeout(10):
            await recorder.settle(lambda: recorder.record(row, "me"))
            await _group_committed(recorder)
            recorder._eager = eager  # type: ignore[attr-defined]
            await recorder.settle(lambda: recorder.record(_renamed(row, 3, "model:3"), "me"))
            with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
                await recorder.confirmed(failing)
        assert await asyncio.to_thread(_committed, rt_settings.db_url, failing) == 0
    finally:
        blocker.close()
        recorder.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the group commit is SQLite's
async def test_a_run_store_statement_shares_the_step_rows_commit(
    launched: Harness, rt_settings: Settings
) -> None:
    """A statement of ours (a run's start or end in the run store) staged beside step rows is
    committed with them, its row count returned once durable; one that fails fails alone."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    store = RunStore(make_engine(rt_settings.db_url))
    commits: list[str] = []
    for conn in (recorder._conn, recorder._eager):  # type: ignore[attr-defined]
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    try:
        run = queued_run(uuid.uuid4().hex)
        await asyncio.to_thread(store.create, run)
        workflow_id = await _pending_workflow(launched, "me")
        row = _step_row(workflow_id, completed_at=8_000_000)
        started = store.update_statement(run.run_id, unless_terminal=True, status="running", started_at=2.0)
        missing = store.update_statement("no-such-run", status="running")
        broken = ("UPDATE shopfloor_runs SET status = NULL WHERE run_id = ?", [(run.run_id,)])  # NOT NULL
        event = {"run_id": run.run_id, "kind": "step", "step": 0, "data": "{}", "at": 3.0}
        events = store.append_events_statement([{**event, "seq": seq} for seq in (0, 1, 0)])  # one again
        outcomes = await asyncio.gather(
            recorder.settle(lambda: recorder.record(row, "me")),
            recorder.execute_beside(*started),
            recorder.execute_beside(*missing),
            recorder.execute_beside(*broken),
            recorder.execute_beside(*events),
            return_exceptions=True,
        )
        assert outcomes[:3] == [None, 1, 0]
        assert isinstance(outcomes[3], sqlite3.IntegrityError)
        assert outcomes[4] == 2  # insert-or-ignore: the repeated event is skipped
        assert len(commits) == 1  # one commit for the step row and the statements
        recorded = await asyncio.to_thread(store.get, run.run_id)
        assert (recorded.status, recorded.started_at) == ("running", 2.0)
        assert [e["seq"] for e in await asyncio.to_thread(store.read_events, run.run_id)] == [0, 1]
        assert recorder.look_up(workflow_id, 1, "step:1") is not None
    finally:
        recorder.close()
        store.close()


def _transactions(statements: list[str]) -> list[list[str]]:
    """The traced statements of one connection, split into its transactions (BEGIN .. COMMIT)."""
    done: list[list[str]] = []
    for sql in statements:
        if sql.startswith("BEGIN"):
            done.append([])
        elif done:
            done[-1].append(sql)
    return done


async def _traced_run(rt_settings: Settings, agent: AgentDir) -> tuple[dict[int, list[str]], list[str]]:
    """The statements the recorder's two connections ran for one run started here and waited for
    (by connection), and the kinds of the run's events."""
    async with Runtime(compose(rt_settings)) as runtime:
        await runtime.start_executor()
        recorder = runtime._recorder
        assert isinstance(recorder, SQLiteStepRecorder)
        traced: dict[int, list[str]] = {0: [], 1: []}
        for index, conn in enumerate((recorder._conn, recorder._eager)):
            conn.set_trace_callback(traced[index].append)
        run_id = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(20):
            assert (await runtime.wait(run_id)).status == "completed"
        events = [stored.event.kind async for stored in runtime.events(run_id, follow=False)]
    return traced, events


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_run_started_here_has_its_row_written_in_the_transaction_of_its_workflows_start(
    rt_settings: Settings, agent: AgentDir
) -> None:
    """No commit of its own before the workflow's: the run's row and DBOS's record of the start are
    durable together (a crash between them left a queued run without its workflow)."""
    traced, _ = await _traced_run(rt_settings, agent)
    inserts = [
        [
            table
            for sql in transaction
            for table in ("shopfloor_runs", "workflow_status")
            if f"{table} (" in sql
        ]
        for statements in traced.values()
        for transaction in _transactions(statements)
        if any("INSERT INTO shopfloor_runs" in sql for sql in transaction)
    ]
    assert inserts == [["shopfloor_runs", "workflow_status"]]  # one transaction, the run's row first


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_runs_end_is_written_in_the_transaction_of_its_last_events(
    rt_settings: Settings, agent: AgentDir
) -> None:
    """The run's end in the run store and the events buffered before it (its run_finished) are durable
    together, in one commit rather than one each."""
    traced, events = await _traced_run(rt_settings, agent)
    assert events[-1] == "run_finished"
    ends = [
        transaction
        for statements in traced.values()
        for transaction in _transactions(statements)
        if any(sql.startswith("UPDATE shopfloor_runs SET status='completed'") for sql in transaction)
    ]
    assert len(ends) == 1
    assert any("run_finished" in sql for sql in ends[0])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_ends_of_runs_ending_together_share_one_commit(rt_settings: Settings) -> None:
    """Runs that end at once have their ends (and the events before them) written in one group commit,
    not one after another (each end waited for its own commit while the next waited for the event log)."""
    async with Runtime(compose(rt_settings)) as runtime:
        await runtime.start_executor()
        recorder = runtime._recorder
        assert isinstance(recorder, SQLiteStepRecorder)
        run_ids = [uuid.uuid4().hex for _ in range(5)]
        for run_id in run_ids:
            await asyncio.to_thread(runtime.store.create, queued_run(run_id))
            runtime.event_log.sink(run_id)(RunEvent(kind="run_started", run_id=run_id, step=0, data={}))
        commits: list[str] = []
        for conn in (recorder._conn, recorder._eager):
            conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        await asyncio.gather(*(runtime.finish_run(run_id, status="completed") for run_id in run_ids))
        assert len(commits) == 1
        records = await runtime.get_runs(run_ids)
        assert all(records[run_id].status == "completed" for run_id in run_ids)
        for run_id in run_ids:
            assert [e.event.kind async for e in runtime.events(run_id, follow=False)] == ["run_started"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_start_whose_row_cannot_be_written_fails_and_records_no_start(
    rt_settings: Settings, agent: AgentDir
) -> None:
    """The row fails (a run of that id exists): the start rolls back with it and raises its error."""
    chosen = uuid.uuid4().hex
    async with Runtime(compose(rt_settings)) as runtime:
        await runtime.start_executor()
        recorder = runtime._recorder
        assert isinstance(recorder, SQLiteStepRecorder)
        await asyncio.to_thread(runtime.store.create, queued_run(chosen, task="already here"))
        with pytest.raises(sqlite3.IntegrityError):
            await runtime.start_run(agent.path, "ticks=1", run_id=chosen)
        assert await runtime.dbos_status(chosen) is None
        assert (await runtime.get_run(chosen)).task == "already here"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_run_started_here_records_its_start_on_the_loop_and_a_relaunched_one_in_dbos_thread(
    rt_settings: Settings, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DBOS records a workflow's start in a thread (``_init_workflow``): a run started here has it
    recorded on the event loop instead (``start_here``); a start without its run's row beside it
    (a relaunch: the row exists) keeps DBOS's thread."""
    import dbos._core as dbos_core

    threads: list[str] = []
    init_workflow = dbos_core._init_workflow

    def spied(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return init_workflow(*args, **kwargs)

    async with Runtime(compose(rt_settings)) as runtime:
        await runtime.start_executor()  # its check of DBOS's internals first, then the spy
        monkeypatch.setattr(dbos_core, "_init_workflow", spied)
        here = await runtime.start_run(agent.path, "ticks=1")
        queued = queued_run(uuid.uuid4().hex, task="already here")
        await asyncio.to_thread(runtime.store.create, queued)
        relaunched = await runtime.relaunch(queued.run_id)
        assert relaunched is not None
        async with asyncio.timeout(20):
            assert (await runtime.wait(here)).status == "completed"
            await relaunched.handle.get_result()
    assert threads[0] == threading.current_thread().name
    assert threads[1] != threading.current_thread().name and len(threads) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_new_run_whose_id_a_workflow_holds_fails_and_writes_neither(
    rt_settings: Settings, agent: AgentDir
) -> None:
    """DBOS would attach the start to the workflow there (and the run stay queued for ever): its
    start is refused in the commit instead, with the run's row."""
    from shopfloor.errors import RunNotFoundError
    from shopfloor.runtime._executor import RUN_QUEUE
    from shopfloor.runtime._workflow import WORKFLOW_NAME

    taken = uuid.uuid4().hex
    async with Runtime(compose(rt_settings)) as runtime:
        await runtime.start_executor()
        client = await runtime.client()
        await client.enqueue_async(
            {"workflow_name": WORKFLOW_NAME, "queue_name": RUN_QUEUE, "workflow_id": taken}, taken
        )
        with pytest.raises(sqlite3.IntegrityError, match="exists already"):
            await runtime.start_run(agent.path, "ticks=1", run_id=taken)
        with pytest.raises(RunNotFoundError):
            await runtime.get_run(taken)
        assert (await runtime.dbos_status(taken) or {}).get("status") == "ENQUEUED"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_group_commit_that_found_the_database_locked_is_retried(
    launched: Harness, rt_settings: Settings
) -> None:
    """Another process holding SQLite's write lock past the busy timeout delays the staged rows
    (the loop stays free meanwhile); they are written once the lock is released."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    blocker = _another_writer(rt_settings.db_url)
    try:
        workflow_id = await _pending_workflow(launched, "me")
        recorder._conn.execute("PRAGMA busy_timeout=20")  # type: ignore[attr-defined]  # the fault
        blocker.execute("BEGIN IMMEDIATE")
        row = _step_row(workflow_id, completed_at=7_000_000)
        waiting = asyncio.ensure_future(recorder.settle(lambda: recorder.record(row, "me")))
        for _ in range(200):  # bounded: the step keeps waiting while the lock is held
            await asyncio.sleep(0.01)
            if recorder._backoff > 0.2:  # type: ignore[attr-defined]  # retried a few times
                break
        assert not waiting.done()
        blocker.execute("ROLLBACK")
        async with asyncio.timeout(30):
            await waiting
            await recorder.confirmed(workflow_id)
        assert recorder.look_up(workflow_id, 1, "step:1") is not None
    finally:
        blocker.close()
        recorder.close()


# The lean step path (``lean_run_step_async``): on SQLite a plain async step skips DBOS's outcome layers.
SETTLES = (
    # DBOS's own rows: every op of the scripts, a fenced-off record, a cancel, an error row
    [["step", 1], ["fail", 2], ["owner", 3], ["step", 4], ["cancel", 5], ["fail", 6], ["step", 7]],
)


async def _in_place(call: Callable[[], Any]) -> Any:
    """A settle for DBOS's own record (it commits before it returns): nothing to wait for."""
    return call()


async def _run_with(
    harness: Harness, settings: Settings, script: list[list[Any]], *, lean_recorder: bool, lean_steps: bool
) -> tuple[Outcome, int]:
    """``run_script`` with DBOS's own record or the lean recorder behind it, and DBOS's outcome
    layers or the lean step path in front; and how many times a step's bookkeeping settled."""
    recorder = open_recorder(settings.db_url, step_row_defaults()) if lean_recorder else None
    uninstall = install_step_recorder(recorder) if recorder is not None else None
    settled = 0
    settle = recorder.settle if recorder is not None else _in_place

    async def counting(call: Callable[[], Any]) -> Any:
        nonlocal settled
        settled += 1
        return await settle(call)

    inline_step_bookkeeping(counting, lean_steps=lean_steps)
    try:
        return await run_script(harness, settings, script), settled
    finally:
        inline_step_bookkeeping()
        if uninstall is not None:
            uninstall()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("seed", [*range(4), "every op"])
@pytest.mark.parametrize("lean_recorder", [False, True], ids=["dbos-record", "lean-record"])
async def test_lean_steps_and_dbos_layers_leave_the_same_rows(
    launched: Harness, rt_settings: Settings, seed: int | str, lean_recorder: bool
) -> None:
    """The same script through DBOS's outcome layers and through the lean step path, over DBOS's own
    record and over the lean recorder: the same rows, results, interruptions (a cancel, an owner
    change: the record fenced off) and bodies run (a recorded step, or its error, replayed)."""
    script = SETTLES[0] if seed == "every op" else make_script(random.Random(int(seed) + 100), 8)
    layers, _ = await _run_with(launched, rt_settings, script, lean_recorder=lean_recorder, lean_steps=False)
    lean, _ = await _run_with(launched, rt_settings, script, lean_recorder=lean_recorder, lean_steps=True)
    assert lean == layers, script
    if seed == "every op":
        assert lean.interruptions == ["owner changed", "DBOSAwaitedWorkflowCancelledError"]
        assert lean.executions == [1, 1, 2, 1, 2, 1, 1]  # fenced off and cancelled: run again on resume
        errors = [(s["function_name"], s["output"], s["error"] is not None) for s in lean.steps]
        assert [e for e in errors if e[2]] == [("fail:1", None, True), ("fail:5", None, True)]
        assert set(lean.result[1]) == set(lean.result[5]) == {"error"}  # replayed, and raised live


@DBOS.workflow(name="shopfloor.tests.context_probe")
async def context_probe() -> list[Any]:
    """What DBOS's context says inside a passing and a failing step, and around them, under an
    identity (``DBOSContextSetAuth``) and start options (``SetWorkflowTimeout``) of the workflow's."""

    def seen() -> dict[str, Any]:
        status = DBOS.step_status
        return {
            "workflow": DBOS.workflow_id,
            "step_id": DBOS.step_id,
            "status": None
            if status is None
            else [status.step_id, status.current_attempt, status.max_attempts],
            "user": [DBOS.authenticated_user, DBOS.authenticated_roles],
            "timeout": dbos_context.get_workflow_start_options().workflow_timeout_ms,
        }

    async def body() -> dict[str, Any]:
        inside = seen()
        with DBOSContextSetAuth("bob", ["guest"]):  # the step's own identity scope, left as found
            inside["scoped"] = DBOS.authenticated_user
        return inside

    async def failing() -> None:
        raise ValueError(json.dumps(seen()))

    observed: list[Any] = []
    with DBOSContextSetAuth("alice", ["admin"]), SetWorkflowTimeout(60):
        observed.append(seen())
        observed.append(await DBOS.run_step_async({"name": "probe"}, body))
        observed.append(seen())
        try:
            await DBOS.run_step_async({"name": "probe-fail"}, failing)
        except ValueError as exc:
            observed.append(json.loads(str(exc)))
        observed.append(seen())
    observed.append(seen())
    return observed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_lean_step_sees_and_leaves_dbos_context_as_dbos_layers_do(
    launched: Harness, rt_settings: Settings
) -> None:
    """The lean path enters and leaves a step's DBOS context without ``EnterDBOSStepCtx``: inside a
    step (passing or failing) the same step id and status, the workflow's identity without its
    scope and no start options; after it, the workflow's context, scope and options as they were."""
    observed = []
    for lean_steps in (False, True):
        recorder = open_recorder(rt_settings.db_url, step_row_defaults())
        uninstall = install_step_recorder(recorder)
        inline_step_bookkeeping(recorder.settle, lean_steps=lean_steps)
        try:
            with SetWorkflowID(workflow_id := uuid.uuid4().hex):
                handle = await DBOS.start_workflow_async(context_probe)
            async with asyncio.timeout(15):
                result = await handle.get_result()
        finally:
            inline_step_bookkeeping()
            uninstall()
        observed.append(json.loads(json.dumps(result).replace(workflow_id, "WF")))
    layers, lean = observed
    assert lean == layers
    workflow = {
        "workflow": "WF",
        "step_id": None,
        "status": None,
        "user": ["alice", ["admin"]],
        "timeout": 60000,
    }
    in_step = {"workflow": "WF", "user": ["alice", ["admin"]], "timeout": None}
    assert lean == [
        workflow,
        {**in_step, "step_id": 1, "status": [1, None, None], "scoped": "bob"},
        workflow,
        {**in_step, "step_id": 2, "status": [2, None, None]},
        workflow,
        {**workflow, "user": [None, None], "timeout": None},
    ]


@DBOS.workflow(name="shopfloor.tests.executor_probe")
async def executor_probe() -> list[bool]:
    """Whether ``asyncio.to_thread`` in each step runs on DBOS's pool, the loop's default executor
    pointed elsewhere between two steps."""
    loop = asyncio.get_running_loop()

    async def body() -> bool:
        # a pool's threads are named after it (its ``_threads`` gains a thread only once it started)
        prefix = f"{getattr(dbos_executor(), '_thread_name_prefix', None)}_"
        return await asyncio.to_thread(lambda: threading.current_thread().name.startswith(prefix))

    seen = [await DBOS.run_step_async({"name": "one"}, body)]
    elsewhere = concurrent.futures.ThreadPoolExecutor(1)
    try:
        loop.set_default_executor(elsewhere)
        seen.append(await DBOS.run_step_async({"name": "two"}, body))
        seen.append(await DBOS.run_step_async({"name": "three"}, body))
    finally:
        elsewhere.shutdown(wait=False)
    return seen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_lean_step_runs_to_thread_on_dbos_pool_as_dbos_layers_do(
    launched: Harness, rt_settings: Settings
) -> None:
    """DBOS points the loop's default executor at its pool before every step; the lean
    ``DBOS.run_step_async`` only where it points elsewhere: each step's threads are DBOS's alike."""
    for lean_steps in (False, True):
        recorder = open_recorder(rt_settings.db_url, step_row_defaults())
        uninstall = install_step_recorder(recorder)
        inline_step_bookkeeping(recorder.settle, lean_steps=lean_steps)
        try:
            with SetWorkflowID(uuid.uuid4().hex):
                handle = await DBOS.start_workflow_async(executor_probe)
            async with asyncio.timeout(15):
                assert await handle.get_result() == [True, True, True], lean_steps
        finally:
            inline_step_bookkeeping()
            uninstall()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_plain_async_step_settles_once_on_the_lean_path(
    launched: Harness, rt_settings: Settings
) -> None:
    """DBOS's layers pass a step's look-up, an empty stage and its record through ``to_thread``
    (``settle`` on SQLite): three a step. The lean path settles the record alone, and
    ``lean_steps=False`` keeps DBOS's layers."""
    script = [["step", i] for i in range(4)]
    layers, through_layers = await _run_with(
        launched, rt_settings, script, lean_recorder=True, lean_steps=False
    )
    lean, through_lean = await _run_with(launched, rt_settings, script, lean_recorder=True, lean_steps=True)
    # and two of the workflow's own (its start and its end), on both
    assert (through_layers, through_lean) == (3 * len(script) + 2, len(script) + 2)
    assert lean == layers and lean.executions == [1] * len(script)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("lean_steps", [False, True])
async def test_a_step_cancelled_while_its_body_runs_records_nothing(
    launched: Harness, rt_settings: Settings, lean_steps: bool
) -> None:
    """A workflow task cancelled in a step's body (a runtime closing): no row for that step, on
    both paths, and a resume runs the step's body again."""
    recorder = open_recorder(rt_settings.db_url, step_row_defaults())
    uninstall = install_step_recorder(recorder)
    inline_step_bookkeeping(recorder.settle, lean_steps=lean_steps)
    workflow_id = uuid.uuid4().hex
    try:
        with SetWorkflowID(workflow_id):
            handle = await DBOS.start_workflow_async(scripted, [["step", 0], ["hang", 1], ["step", 2]])
        async with asyncio.timeout(15):
            while launched.executions[f"{workflow_id}:1"] == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        (task,) = [task for task in workflow_tasks() if not task.done()]
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        assert [s["function_name"] for s in rows(launched, workflow_id)[0]] == ["step:0"]
        await asyncio.to_thread(launched.client.resume_workflow, workflow_id)
        handle = await DBOS.retrieve_workflow_async(workflow_id)
        async with asyncio.timeout(15):
            result = await handle.get_result()
    finally:
        inline_step_bookkeeping()
        uninstall()
    assert [r["index"] for r in result] == [0, 1, 2]
    assert [launched.executions[f"{workflow_id}:{i}"] for i in range(3)] == [1, 2, 1]
    assert [s["function_name"] for s in rows(launched, workflow_id)[0]] == ["step:0", "hang:1", "step:2"]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_many_threads_share_the_postgres_recorders_few_connections(
    launched: Harness, rt_settings: Settings
) -> None:
    """DBOS's executor has a thread per run in a step (no bound): 200 runs at once each opened a
    connection of their own and PostgreSQL refused the 101st ("too many clients")."""
    workflow_id = await _pending_workflow(launched, "me")
    _dbos_record(_step_row(workflow_id, completed_at=2_000_000), "me")
    recorder = PostgresStepRecorder(rt_settings.db_url, step_row_defaults(), connections=2)
    ours = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shopfloor_steps'"
    try:
        with launched.engine.connect() as conn:
            before = conn.execute(sa.text(ours)).scalar_one()

        def look_up(_: int) -> Any:
            return recorder.look_up(workflow_id, 1, "step:1")

        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            found = await asyncio.gather(*(loop.run_in_executor(pool, look_up, i) for i in range(400)))
            with launched.engine.connect() as conn:
                during = conn.execute(sa.text(ours)).scalar_one()
        assert all(item is not None and item["error"] is None for item in found)
        assert during - before <= 2
        assert len(recorder._all) <= 2
    finally:
        recorder.close()


def test_open_recorder_picks_the_backend_by_dialect_and_names_the_others(db_url: str, tmp_path: Path) -> None:
    sqlite = db_url.startswith("sqlite")
    url = f"sqlite:///{tmp_path / 'dbos.sqlite'}" if sqlite else db_url
    defaults = StepRowDefaults(app_name=None, now_sql="0", schema=None)
    recorder = open_recorder(url, defaults)
    try:
        expected = SQLiteStepRecorder if sqlite else PostgresStepRecorder
        assert type(recorder) is expected
    finally:
        recorder.close()
    with pytest.raises(ConfigError, match=r"no recorder for mysql databases \(it has postgresql, sqlite\)"):
        open_recorder("mysql://user@localhost/shop", defaults)


async def test_the_runner_waits_for_the_steps_before_to_be_committed_before_a_step_starts(
    launched: Harness,
) -> None:
    """``DBOSStepRunner``: every step's body starts after ``confirm`` (the commits of the steps
    before it), and one with effects, and the step after it, after ``flush`` (which also commits what
    ``batched`` deferred); a step without effects (a calculator's) after ``confirm`` like a model's."""
    order: list[str] = []

    async def confirm() -> None:
        order.append("confirm")

    async def flush() -> None:
        order.append("flush")

    runner = DBOSStepRunner("run", confirm=confirm, flush=flush)

    def body(name: str) -> Callable[[], Any]:
        async def run() -> str:
            order.append(name)
            return name

        return run

    assert await runner.step("model:1", body("model:1")) == "model:1"
    assert await runner.step("tool:1:calculator", body("tool:1:calculator")) == "tool:1:calculator"
    assert await runner.step("model:2", body("model:2")) == "model:2"
    assert await runner.step("tool:2:mail", body("tool:2:mail"), effects=True) == "tool:2:mail"
    assert await runner.step("model:3", body("model:3")) == "model:3"
    assert await runner.step("model:4", body("model:4")) == "model:4"
    assert order == [
        *("confirm", "model:1", "confirm", "tool:1:calculator", "confirm", "model:2"),
        *("flush", "tool:2:mail", "flush", "model:3", "confirm", "model:4"),
    ]


@pytest.mark.parametrize("records_yield", [False, True])
async def test_a_step_that_never_waits_gives_the_loop_back_unless_its_record_did(
    launched: Harness, records_yield: bool
) -> None:
    """Outside a workflow nothing records the step, so only the runner's own turn gives the loop
    back: taken unless the runner was told each record waits for a group commit."""
    turns = 0

    async def other_run() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def instant() -> str:
        return "done"

    other = asyncio.ensure_future(other_run())
    await asyncio.sleep(0)
    try:
        before = turns
        runner = DBOSStepRunner("run", records_yield=records_yield)
        assert await runner.step("model:1", instant) == "done"
        assert (turns > before) is not records_yield
    finally:
        other.cancel()
