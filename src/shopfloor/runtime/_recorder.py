"""The lean step recorder: DBOS's own step rows, written with the fewest statements the same checks need.

For each step DBOS 3.4 sends 8 statements through SQLAlchemy (two pool pre-pings, a status
and an output look-up, ``BEGIN IMMEDIATE``, an owner-fencing ``UPDATE``, the ``INSERT ... ON
CONFLICT``, ``COMMIT``); ~88% of its CPU a step is that path, not the database. This recorder
stands behind DBOS's ``check_operation_execution`` and ``record_operation_result``
(``_dbos_internals.install_step_recorder``) and does the same work as:

- the look-up: one joined ``SELECT`` of the workflow's status and the step's row. A missing
  workflow fails as DBOS's does, a cancelled one raises ``DBOSWorkflowCancelledError`` (a
  cancelled run stops at the next step boundary), a recorded step is returned (never re-run),
  another step name at that position raises ``DBOSUnexpectedStepError``. No read at all for a
  step no one can have recorded yet whose cancel check the record before it made (below);
- the record: one ``INSERT ... SELECT ... WHERE EXISTS (the owner still matches) ON CONFLICT
  DO UPDATE (a no-op) RETURNING completed_at_epoch_ms``. No row back means this execution no
  longer owns the workflow (``DBOSWorkflowConflictIDError``: fenced off after a hand-off); a
  row with another completion time is nondeterminism (``DBOSStepNondeterminismError``), the
  same time a retried commit of this very record. Errors are recorded as DBOS records them
  (the serialised exception in ``error``).

The backends, one module each, opened by the database URL's dialect (``open_recorder``):
``_recorder_sqlite.py``, raw ``sqlite3`` on DBOS's own file with the records of a worker's runs
group-committed, and ``_recorder_pg.py``, psycopg 3 on at most 8 connections shared by DBOS's
threads. ``[runtime] step_recorder = "dbos"`` keeps DBOS's own path.

The look-up without a read. An execution's first look-up also reads the workflow's highest recorded
step (its high-water mark). A row beyond the mark can only have been written after this execution
started, by another owner, and this execution's record of that step is fenced off by the owner check
whatever the look-up answered; so the read's one remaining job there is the cancel check. The record
returns the workflow's status from the same statement as its owner check (in SQLite's write
transaction; on PostgreSQL from the row the check locks, its latest version), and a cancel (DBOS's
``cancel_workflows`` and its deadline sweep) clears ``owner_xid`` as it sets CANCELLED. So where step
N+1 is beyond the mark and the execution's last contact was its own record of step N that found the run
owned and not CANCELLED, the look-up of N+1 answers "not recorded" without reading
(``_proven_unrecorded``). The cancel window moves from [look-up of N+1 .. body of N+1] (DBOS) to
[record of N .. body of N+1]: a cancel committed in between lets N+1's body run once, as DBOS lets a
body run for a cancel committed during it, and its record is then fenced off (no row; the run stops
there). It widens the window only by the loop's own work between two steps, which is acceptable: neither
path can stop a body already started, and the rows, the outcome and a resume are DBOS's. The same window
covers a workflow deleted there (fenced off instead of failing the look-up) and another owner that took
the run over after record N and recorded N+1 before the look-up (its body runs here and is fenced off,
where DBOS replays that row; DBOS too runs one body beside such an owner, at the first step it has not
recorded). Everything else reads: positions at or below the mark (recovery, forks, resumes, and so
nondeterminism checks), the step after a replayed step, a DBOS-side write (a sleep, a recv), a batched
record not committed yet, a record without an owner token, concurrent steps, a look-up outside the
workflow's execution, and an execution this recorder forgot (it remembers the latest 4,096).

With ``[runtime] durability = "batched"`` no step waits for the commit of the records before it,
except where the runner flushes: before and after a step with effects (a tool's call, unless the tool
says it has none: ``Tool.effects``), before an approval wait or a durable sleep, and at the run's end.
On SQLite every record still goes into the next group commit at once and is committed behind the run
(write-behind: the fsync overlaps the next model call instead of preceding it); on PostgreSQL the rows
of model and schema steps wait in memory and are committed in the transaction of the next step's row,
or at a flush; a batch whose run changed owner is fenced off whole.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from dbos import error as dbos_error
from sqlalchemy.engine import make_url

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError
from shopfloor.runtime._dbos_internals import StepRow, StepRowDefaults, WorkflowStart

__all__ = [
    "DEFERRED_STEPS",
    "Durability",
    "LeanRecorder",
    "Statement",
    "open_recorder",
    "step_recorders",
]

_CANCELLED = "CANCELLED"
T = TypeVar("T")
Durability = Literal["sync", "batched"]
#: a statement of ours and its parameter rows (``execute_beside``)
Statement = tuple[str, Sequence[Sequence[Any]]]
#: Steps whose record ``durability = "batched"`` defers: a crash before their commit calls the
#: model (or computes the staged schema) again; their results had no effect outside the run yet.
DEFERRED_STEPS = ("model:", "schema:")


class LeanRecorder(ABC):
    """A database's lean look-up and record of DBOS step rows (``open_recorder`` picks one by URL)."""

    #: whether its writes run on the event loop (SQLite, as the rest of DBOS's bookkeeping there)
    in_place: ClassVar[bool] = False

    def __init__(self, url: str, defaults: StepRowDefaults, *, durability: Durability = "sync") -> None:
        self.url = url
        self.app_name = defaults.app_name
        self.durability = durability
        #: batched: model and schema steps recorded but not committed yet, by workflow
        self._pending: dict[str, list[tuple[StepRow, str | None]]] = {}
        self._pending_lock = threading.Lock()
        #: by workflow: what the execution stepping it now proved (``look_up``), oldest first
        self._executions: dict[str, _Execution] = {}
        self._executions_lock = threading.Lock()
        #: look-ups answered without a read (a step no one can have recorded, the cancel check proven)
        self.unread = 0

    @abstractmethod
    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        """(status, output, error, function_name, child_workflow_id, serialization, function_id,
        the workflow's highest recorded function_id) of the workflow and its step; the step's columns
        None where it has no row."""

    @abstractmethod
    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        """Insert each row where its owner still matches, in one transaction, calling ``_check``
        on each row's RETURNING rows before the commit (an error rolls the batch back)."""

    @abstractmethod
    def close(self) -> None: ...

    def look_up(
        self, workflow_id: str, function_id: int, function_name: str, owner_xid: str | None = None
    ) -> dict[str, Any] | None:
        """DBOS's look-up of a step, for the execution owning the workflow as ``owner_xid`` (None:
        outside the workflow's own execution, where it always reads)."""
        if owner_xid is not None and self._proven_unrecorded(workflow_id, function_id, owner_xid):
            return None
        found = self._look_up_row(workflow_id, function_id)
        assert found is not None, f"Error: Workflow {workflow_id} does not exist"
        status, output, error, recorded_name, child_workflow_id, serialization, step_id, high = found
        if owner_xid is not None:
            self._started(workflow_id, owner_xid, high)
        if status == _CANCELLED:
            raise dbos_error.DBOSWorkflowCancelledError(
                f"Workflow {workflow_id} is cancelled. Aborting function."
            )
        if step_id is None:
            return None
        if recorded_name != function_name:
            raise dbos_error.DBOSUnexpectedStepError(
                workflow_id=workflow_id,
                step_id=function_id,
                expected_name=function_name,
                recorded_name=recorded_name,
            )
        return {
            "output": output,
            "error": error,
            "serialization": serialization,
            "child_workflow_id": child_workflow_id,
            "child_shard_key": None,
        }

    def record(self, row: StepRow, owner_xid: str | None) -> None:
        assert row.error is None or row.output is None, "Only one of error or output can be set"
        if self.durability == "batched" and row.function_name.startswith(DEFERRED_STEPS):
            # Committed with the next step's row (or at a flush): a crash before then calls the
            # model again, nothing worse, since every other kind of step flushes first.
            with self._pending_lock:
                self._pending.setdefault(row.workflow_id, []).append((row, owner_xid))
            return
        self._commit(row.workflow_id, [(row, owner_xid)])

    def record_outcome(
        self, workflow_id: str, status: str, output: str | None, error: str | None, owner_xid: str | None
    ) -> bool | None:
        """DBOS's record of a workflow's outcome (``update_workflow_outcome``): whether it landed, or
        None where DBOS writes it itself (here: always; the SQLite recorder takes the record of a run's
        end into its group commit)."""
        return None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the runs recorded here execute on (``in_place`` recorders stage there;
        the others record from any thread and keep no loop)."""
        return None

    def record_start(self, start: WorkflowStart) -> tuple[Any, ...] | None:
        """DBOS's record of a workflow's start (``init_workflow``): the status row as its upsert
        returned it, or None where DBOS writes it itself (here: always; the SQLite recorder takes a
        start made from a thread into its group commit)."""
        return None

    def flush(self, workflow_id: str) -> None:
        """Commit the workflow's deferred rows now (before a tool runs, a wait, the run's end)."""
        self._commit(workflow_id, [])

    async def flush_async(self, workflow_id: str) -> None:
        """``flush`` from the event loop (in a thread: the commit is a round trip; none where nothing
        waits, as after a step with effects, whose record was committed at once)."""
        with self._pending_lock:
            if not self._pending.get(workflow_id):
                return
        await asyncio.to_thread(self.flush, workflow_id)

    async def confirmed(self, workflow_id: str) -> None:
        """Once every step the workflow recorded is committed (raising what failed a commit): what a
        step waits for before it starts where a step is given back before its commit lands (the
        SQLite recorder's group commit); here every record is committed before it returns."""
        return None

    async def settle(self, call: Callable[[], T]) -> T:
        """Run DBOS's step bookkeeping ``call`` on the event loop (``in_place`` recorders; see
        ``SQLiteStepRecorder.settle`` for one that groups the commits of concurrent steps)."""
        return call()

    async def off_loop(self, call: Callable[[], T]) -> T:
        """Run DBOS's record of a workflow's end off the event loop (its own commit)."""
        return await asyncio.to_thread(call)

    async def execute_beside(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Execute a statement of ours on DBOS's database once per parameter row; the rows it changed,
        once committed (the SQLite recorder groups it with step rows; ``in_place`` recorders only)."""
        raise NotImplementedError(f"{type(self).__name__} writes no statements of ours")

    def execute_all_beside(self, statements: Sequence[Statement]) -> Awaitable[list[int]]:
        """``execute_beside`` of each statement, staged at the call and committed together (``in_place``
        recorders only)."""
        raise NotImplementedError(f"{type(self).__name__} writes no statements of ours")

    def start_here(self, workflow_id: str, call: Callable[[], T]) -> Coroutine[Any, Any, T] | None:
        """DBOS's record of a workflow's start (``call``) on the event loop, or None where DBOS makes it
        in its thread (here: always; see ``SQLiteStepRecorder.start_here``)."""
        return None

    def beside_start(
        self, workflow_id: str, sql: str, rows: Sequence[Sequence[Any]]
    ) -> AbstractContextManager[None]:
        """Execute a statement of ours in the transaction of DBOS's record of the start of
        ``workflow_id`` made inside the block (the SQLite recorder; ``in_place`` recorders only)."""
        raise NotImplementedError(f"{type(self).__name__} writes no statements of ours")

    def _commit(self, workflow_id: str, rows: list[tuple[StepRow, str | None]]) -> None:
        with self._pending_lock:
            pending = list(self._pending.get(workflow_id, ()))
        if not pending and not rows:
            return
        try:
            self._write([*pending, *rows])
        except (dbos_error.DBOSWorkflowConflictIDError, dbos_error.DBOSStepNondeterminismError):
            self._forget(workflow_id, len(pending))  # this execution can never write them
            raise
        # Kept until written: DBOS's retry ("database is locked") calls ``record`` again.
        self._forget(workflow_id, len(pending))

    def _forget(self, workflow_id: str, count: int) -> None:
        with self._pending_lock:
            rest = self._pending.pop(workflow_id, [])[count:]
            if rest:
                self._pending[workflow_id] = rest

    def _check(self, row: StepRow, owner_xid: str | None, returned: list[tuple[Any, ...]]) -> None:
        """Raise what DBOS raises for the record's RETURNING rows (completion time, workflow status
        as the owner check saw it); where the owner matched and the run was not cancelled, that is
        the cancel check of the execution's next step (``_proven_unrecorded``)."""
        if not returned:
            raise dbos_error.DBOSWorkflowConflictIDError(row.workflow_id)
        existing, status = returned[0]
        if existing is None or int(existing) != row.completed_at_ms:
            raise dbos_error.DBOSStepNondeterminismError(row.workflow_id, row.function_id)
        if owner_xid is None:
            return
        with self._executions_lock:
            execution = self._executions.get(row.workflow_id)
            if execution is not None and execution.owner_xid == owner_xid:
                execution.proven = row.function_id if status not in (None, _CANCELLED) else None

    def _started(self, workflow_id: str, owner_xid: str, high: int | None) -> None:
        """After a read for the execution ``owner_xid``: its first read fixes the high-water mark
        (the highest step recorded when it started); every read ends what a record had proven."""
        with self._executions_lock:
            execution = self._executions.get(workflow_id)
            if execution is None or execution.owner_xid != owner_xid:
                self._executions.pop(workflow_id, None)
                if len(self._executions) >= _EXECUTIONS:  # the oldest forgotten: its next look-up reads
                    del self._executions[next(iter(self._executions))]
                self._executions[workflow_id] = _Execution(
                    owner_xid=owner_xid, high_water=-1 if high is None else int(high)
                )
            else:
                execution.proven = None

    def _proven_unrecorded(self, workflow_id: str, function_id: int, owner_xid: str) -> bool:
        """Whether the look-up of ``function_id`` can answer "not recorded" without a read.

        Yes only where (1) the step is beyond every row the workflow had when this execution first
        read (so any row there was written after, by another owner, and this execution's record of
        it is fenced off by the owner check anyway), and (2) this execution's last contact with the
        database was its record of the step just before, whose owner check found it still owning
        the run (a cancel clears ``owner_xid``) and the status not CANCELLED: the cancel check this
        read would make, made by that record's own statement a moment earlier. A recovery, a fork
        or a resume reads at every step below its high-water mark; batched (uncommitted) records,
        DBOS's own writes (a sleep, a recv) and concurrent steps prove nothing, so the next look-up
        reads."""
        with self._executions_lock:
            execution = self._executions.get(workflow_id)
            if execution is None or execution.owner_xid != owner_xid:
                return False
            proven, execution.proven = execution.proven, None
            unread = function_id > execution.high_water and proven == function_id - 1
            self.unread += unread
            return unread


@dataclass(kw_only=True)
class _Execution:
    """What one execution of a workflow (its ownership token) has proven so far."""

    owner_xid: str
    #: the workflow's highest recorded step when this execution first read (-1: none)
    high_water: int
    #: the step whose record was this execution's last contact, found it owning a run not cancelled
    proven: int | None = None


#: executions remembered at most (one per workflow running here; a forgotten one reads again)
_EXECUTIONS = 4096


def step_recorders() -> Registry[type[LeanRecorder]]:
    """The lean recorders by the database URL's dialect, each imported when first opened."""
    return Registry(
        "step recorder",
        {
            "sqlite": "shopfloor.runtime._recorder_sqlite:SQLiteStepRecorder",
            "postgresql": "shopfloor.runtime._recorder_pg:PostgresStepRecorder",
        },
    )


def open_recorder(url: str, defaults: StepRowDefaults, *, durability: Durability = "sync") -> LeanRecorder:
    dialect = make_url(url).get_backend_name()
    recorders = step_recorders()
    if dialect not in recorders:
        raise ConfigError(
            f'[runtime] step_recorder = "lean" has no recorder for {dialect} databases '
            f'(it has {", ".join(sorted(recorders))}): set step_recorder = "dbos"'
        )
    return recorders.get(dialect)(url, defaults, durability=durability)
