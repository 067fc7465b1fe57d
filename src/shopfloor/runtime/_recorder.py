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

On SQLite it is raw ``sqlite3`` on DBOS's own file (WAL, DBOS's busy timeout and foreign
keys), the record inside ``BEGIN IMMEDIATE ... COMMIT`` so the owner check and the write
are one transaction. On PostgreSQL it is psycopg 3 with prepared statements, one round trip
each: the record is one autocommitted statement whose owner check locks the workflow's row
``FOR NO KEY UPDATE`` (as DBOS's ``_check_owner_txn`` does) until the row is written.
``[runtime] step_recorder = "dbos"`` keeps DBOS's own path.

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

With ``[runtime] durability = "batched"`` the rows of model and schema steps wait in memory
and are committed in the transaction of the next step's row, or when the runner flushes
(before a tool step, an approval wait, a durable sleep, the run's end); a batch whose run
changed owner is fenced off whole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

import psycopg
from dbos import error as dbos_error
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from shopfloor.errors import ConfigError
from shopfloor.runtime._dbos_internals import StepRow, StepRowDefaults, WorkflowStart
from shopfloor.storage import open_sqlite

__all__ = [
    "DEFERRED_STEPS",
    "Durability",
    "LeanRecorder",
    "PostgresStepRecorder",
    "SQLiteStepRecorder",
    "open_recorder",
]

_CANCELLED = "CANCELLED"
#: the PostgreSQL recorder's connections at most (DBOS's own engine pools 20 by default)
_PG_CONNECTIONS = 8
#: how long a step waits for one of them before its record fails as a lost connection (DBOS retries)
_BORROW_SECONDS = 30.0
T = TypeVar("T")
Durability = Literal["sync", "batched"]
log = logging.getLogger("shopfloor.runtime")
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
        """``flush`` from the event loop (in a thread: the commit is a round trip)."""
        await asyncio.to_thread(self.flush, workflow_id)

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


class SQLiteStepRecorder(LeanRecorder):
    """On SQLite DBOS's step bookkeeping runs on the event loop (``_dbos_internals``), through
    ``settle``: a row recorded there is staged, and the step waits (without holding the loop)
    until a commit scheduled right after the tasks ready now writes every staged row in one
    transaction. The rows are inserted on the loop (``BEGIN IMMEDIATE`` without waiting for the
    write lock), and the ``COMMIT`` (the fsync) runs in a writer thread while the loop runs the
    other runs, whose rows make the next group; one step staged alone commits in place (one run
    alone pays one commit a step, as before). The runs of one worker share a commit (one fsync)
    instead of queueing one each, and each step still returns only once its row is durable
    (``durability = "sync"`` is unchanged). A run's start and end in the run store join the same
    commits (``execute_beside``), and DBOS's own record of a workflow's end runs in a thread under
    this recorder's lock (``off_loop``). Look-ups read on a connection of their own. A row that is
    fenced off or nondeterministic fails only its own step (its rows roll back to a savepoint);
    where another connection holds the write lock the writer thread writes the group, waiting as
    long as the busy timeout; "database is locked" past it (another process writing for longer)
    keeps the rows staged and retries the commit with a backoff, as DBOS's own retry would,
    without blocking the loop meanwhile. Records from other threads (a sync step) commit at once.
    """

    in_place = True

    def __init__(self, url: str, defaults: StepRowDefaults, *, durability: Durability = "sync") -> None:
        super().__init__(url, defaults, durability=durability)
        path = make_url(url).database
        if not path:
            raise ConfigError(f"the SQLite URL {url!r} names no database file")
        # One connection, used under a lock: on SQLite the bookkeeping runs on the event loop,
        # and the rare call from another thread (a sync step) waits its turn.
        # DBOS's own connection settings (busy timeout, foreign keys), and WAL set explicitly (DBOS
        # never sets it): what every SQLite store of ours gets.
        self._conn = open_sqlite(path, autocommit=True)
        # The loop's own: it never waits for SQLite's write lock (``_begin``); held, from its BEGIN
        # on the loop to its COMMIT in the writer thread, under ``_lock`` like ``_conn``.
        self._eager = open_sqlite(path, autocommit=True)
        self._eager.execute("PRAGMA busy_timeout=0")
        self._lock = threading.Lock()
        # Look-ups read on their own connection (WAL: a reader never waits for the writer), so
        # the loop reads while a group commit is written in the writer thread.
        self._reader = open_sqlite(path, autocommit=True)
        self._read_lock = threading.Lock()
        #: writes the group commits of many steps, while the loop runs the other runs meanwhile
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight = False
        #: per thread: where ``settle`` collects the commits its call staged (None outside one), and
        #: in an ``off_loop`` thread the loop its outcome record is staged on
        self._local = threading.local()
        self._closed = False
        #: the loop the runs execute on (``attach``): where a start from a thread is staged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._staged: list[_Staged] = []
        self._commit_scheduled = False
        self._backoff = _FIRST_BACKOFF
        self._look_up_sql = (
            "SELECT s.status, o.output, o.error, o.function_name, o.child_workflow_id, o.serialization, "
            "o.function_id, (SELECT max(function_id) FROM operation_outputs WHERE workflow_uuid = ?1) "
            "FROM workflow_status AS s LEFT JOIN operation_outputs AS o "
            "ON o.workflow_uuid = s.workflow_uuid AND o.function_id = ?2 WHERE s.workflow_uuid = ?1"
        )
        # The SELECT needs its WHERE for SQLite to parse the upsert; the no-op DO UPDATE makes
        # RETURNING hand back the completion time already recorded.
        self._insert_sql = (
            "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, "
            "started_at_epoch_ms, completed_at_epoch_ms, output, error, child_workflow_id, "
            "serialization, application_name, retention_timestamp) "
            f"SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, {defaults.now_sql} "
            "WHERE ?10 IS NULL OR EXISTS (SELECT 1 FROM workflow_status "
            "WHERE workflow_uuid = ?1 AND owner_xid = ?10) "
            "ON CONFLICT (workflow_uuid, function_id) DO UPDATE SET "
            "completed_at_epoch_ms = operation_outputs.completed_at_epoch_ms "
            # The status in the same transaction, under SQLite's write lock: the cancel check.
            "RETURNING completed_at_epoch_ms, (SELECT status FROM workflow_status WHERE workflow_uuid = ?1)"
        )
        # DBOS's ``_update_workflow_outcome_in_transaction``: the status where the run is PENDING and
        # (with a token) still this execution's, then its output where that landed.
        self._outcome_sql = (
            f"UPDATE workflow_status SET status = ?1, deduplication_id = NULL, owner_xid = NULL, "
            f"updated_at = {defaults.now_sql}, completed_at = {defaults.now_sql} "
            "WHERE workflow_uuid = ?2 AND status = 'PENDING' AND (?3 IS NULL OR owner_xid = ?3)"
        )
        self._output_sql = (
            "INSERT INTO workflow_output (workflow_uuid, output, error) VALUES (?1, ?2, ?3) "
            "ON CONFLICT (workflow_uuid) DO UPDATE SET output = excluded.output, error = excluded.error"
        )

    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        """The joined look-up, on the writer's own connection where no group holds it (a run stepping
        alone, between its commits), else on the reader's.

        Both read the latest committed state in a transaction of their own (autocommit, WAL), as
        DBOS's look-up does: the answer is the same. What differs is the cost: SQLite drops a
        connection's whole page cache when it sees another connection's commit, so the reader
        re-read the tables' pages from the WAL at every step (~35 us of CPU a look-up here), while
        the writer's cache stays warm across its own commits."""
        if self._lock.acquire(blocking=False):
            try:
                if not self._eager.in_transaction:
                    warm: tuple[Any, ...] | None = self._eager.execute(
                        self._look_up_sql, (workflow_id, function_id)
                    ).fetchone()
                    return warm
            finally:
                self._lock.release()
        with self._read_lock:
            found: tuple[Any, ...] | None = self._reader.execute(
                self._look_up_sql, (workflow_id, function_id)
            ).fetchone()
        return found

    def _insert(self, conn: sqlite3.Connection, batch: list[tuple[StepRow, str | None]]) -> None:
        for row, owner_xid in batch:
            params = (
                row.workflow_id,
                row.function_id,
                row.function_name,
                row.started_at_ms,
                row.completed_at_ms,
                row.output,
                row.error,
                row.serialization,
                self.app_name,
                owner_xid,
            )
            self._check(row, owner_xid, conn.execute(self._insert_sql, params).fetchall())

    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._insert(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # Group commit ---------------------------------------------------------------------------
    async def settle(self, call: Callable[[], T]) -> T:
        """Run DBOS's bookkeeping ``call`` here; return its result once the rows it recorded are
        committed (raising what their commit raised: a fenced-off or nondeterministic step)."""
        waits: list[asyncio.Future[None]] = []
        self._local.waits = waits
        try:
            result = call()
        except Exception:
            # A failed step re-raises its error once the record of that error is durable (a
            # failure to record it is raised instead, as DBOS's own record would raise it).
            self._local.waits = None
            for waiting in waits:
                await waiting
            raise
        finally:
            self._local.waits = None
        for waiting in waits:
            await waiting
        return result

    async def off_loop(self, call: Callable[[], T]) -> T:
        """Run ``call`` (DBOS's ``persist``: the record of a workflow's end, then, where it did not
        land, the wait for the outcome another execution records) in a thread, the loop going on
        meanwhile. Its record (``record_outcome``) is staged back on this loop and joins the next
        group commit, beside other runs' step rows, instead of a commit of its own through
        SQLAlchemy (~0.9 ms of CPU a run). Not in the writer thread: a group begun on the loop
        holds the write lock until the writer thread commits it."""
        loop = asyncio.get_running_loop()

        def ending() -> T:
            self._local.loop = loop
            try:
                return call()
            finally:
                self._local.loop = None

        return await asyncio.to_thread(ending)

    def record_outcome(
        self, workflow_id: str, status: str, output: str | None, error: str | None, owner_xid: str | None
    ) -> bool | None:
        """In an ``off_loop`` thread: the outcome's UPDATE and output upsert in the next group commit
        on its loop, this thread waiting for it; anywhere else (or once the loop or this recorder
        has stopped) None, and DBOS writes it."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            return None
        return self._from_thread(loop, self._staged_outcome((status, workflow_id, owner_xid, output, error)))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def record_start(self, start: WorkflowStart) -> tuple[Any, ...] | None:
        """From a thread (DBOS starts a workflow in one: ``_init_workflow``) while a loop stages here:
        the status upsert (and the inputs, where its names match) in the next group commit on the
        ``attach``ed loop, this thread waiting for it; from a loop's own thread, or unattached, None."""
        loop = self._loop
        if loop is None:
            return None
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            return None  # on a loop's thread: waiting here would hold it up
        return self._from_thread(loop, self._staged_start(start))

    def _from_thread(self, loop: asyncio.AbstractEventLoop, staged: Coroutine[Any, Any, T]) -> T | None:
        """Run ``staged`` on ``loop`` and wait for its result; None (DBOS writes instead) where the loop
        or this recorder stopped before it ran."""
        if self._closed:
            staged.close()
            return None
        try:
            result = asyncio.run_coroutine_threadsafe(staged, loop)
        except RuntimeError:  # the loop is closed
            staged.close()
            return None
        while True:
            try:
                return result.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if not loop.is_running():  # never committed here: DBOS's own record then
                    return None

    async def _staged_start(self, start: WorkflowStart) -> tuple[Any, ...] | None:
        done = asyncio.get_running_loop().create_future()
        staged = self._stage_item(_Staged(batch=[], done=done, start=start))
        await staged.done
        return staged.returned

    async def _staged_outcome(self, params: tuple[Any, ...]) -> bool:
        done = asyncio.get_running_loop().create_future()
        staged = self._stage_item(_Staged(batch=[], done=done, outcome=params))
        await staged.done
        return staged.rowcount > 0

    def _write_start(self, conn: sqlite3.Connection, start: WorkflowStart) -> tuple[Any, ...]:
        row: tuple[Any, ...] = conn.execute(start.status_sql, start.status_params).fetchone()
        if row[1:4] == start.expected:  # a start refused for its names writes no inputs, as DBOS's
            conn.execute(start.input_sql, start.input_params)
        return row

    def _write_outcome(self, conn: sqlite3.Connection, params: tuple[Any, ...]) -> int:
        status, workflow_id, owner_xid, output, error = params
        landed = conn.execute(self._outcome_sql, (status, workflow_id, owner_xid)).rowcount
        if landed:  # a write that did not land leaves no orphan output, as DBOS's
            conn.execute(self._output_sql, (workflow_id, output, error))
        return landed

    async def flush_async(self, workflow_id: str) -> None:
        await self.settle(lambda: self.flush(workflow_id))

    def _commit(self, workflow_id: str, rows: list[tuple[StepRow, str | None]]) -> None:
        waits: list[asyncio.Future[None]] | None = getattr(self._local, "waits", None)
        if waits is None:
            super()._commit(workflow_id, rows)
            return
        with self._pending_lock:
            batch = [*self._pending.pop(workflow_id, ()), *rows]
        if batch:
            waits.append(self._stage(batch))

    async def execute_beside(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Execute a statement of ours on DBOS's database once per parameter row (the run store: a
        run started or ended, a batch of events) in the next group commit, beside the step rows;
        the rows it changed, once committed. A run's start and end, and the events of every run,
        then share the commit of other runs' steps instead of taking one each (in a thread that
        would wait for the GIL at every bound parameter while the loop runs the agents)."""
        done = asyncio.get_running_loop().create_future()
        staged = self._stage_item(_Staged(batch=[], done=done, statement=(sql, [tuple(r) for r in rows])))
        await staged.done
        return staged.rowcount

    def _stage(self, batch: list[tuple[StepRow, str | None]]) -> asyncio.Future[None]:
        return self._stage_item(_Staged(batch=batch, done=asyncio.get_running_loop().create_future())).done

    def _stage_item(self, staged: _Staged) -> _Staged:
        loop = asyncio.get_running_loop()
        self._staged.append(staged)
        if not self._commit_scheduled:
            # After the tasks ready now: the other runs of this worker stage their rows first.
            self._commit_scheduled = True
            loop.call_soon(self._commit_staged)
        return staged

    def _writer_pool(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopfloor-steps")
        return self._writer

    def _commit_staged(self) -> None:
        self._commit_scheduled = False
        if self._in_flight or not self._staged:
            return  # the commit in flight starts the next one when it is done
        staged, self._staged = self._staged, []
        began = self._begin(staged)
        if isinstance(began, Exception):
            self._written(staged, began)
            return
        if began is not None and len(staged) == 1 and staged[0].batch:
            # One run stepping alone: commit in place, as fast as a step can be durable.
            self._written(staged, self._end(began))
            return
        # The writer thread waits out the fsync (or, where another connection holds SQLite's write
        # lock, the busy timeout and the whole group) while the loop runs the other runs, whose rows
        # make the next group.
        work = (
            functools.partial(self._end, began)
            if began is not None
            else functools.partial(self._write_group, staged)
        )
        self._in_flight = True
        written = asyncio.get_running_loop().run_in_executor(self._writer_pool(), work)
        written.add_done_callback(lambda done: self._group_done(staged, done))

    def _group_done(self, staged: list[_Staged], done: asyncio.Future[_Outcomes]) -> None:
        self._in_flight = False
        self._written(staged, done.result())
        if self._staged and not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_staged)

    def _begin(self, staged: list[_Staged]) -> list[BaseException | None] | Exception | None:
        """On the loop: take SQLite's write lock without waiting and insert every staged row (each
        step's outcome, or what failed them all, rolled back). None where the lock is taken: by
        this recorder's thread, or another connection (the run store, DBOS's own writes, another
        process); the writer thread then writes the group, waiting as long as the busy timeout.

        The inserts run here, not in the writer thread, because ``sqlite3`` lets go of the GIL at
        every bound parameter and step: a writer thread inserting while the loop runs the agents
        waited up to a switch interval (5 ms) for the GIL each time, and a group of 10 steps took
        10 ms where its commit took 1."""
        if not self._lock.acquire(blocking=False):
            return None
        conn = self._eager
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            return None if isinstance(exc, sqlite3.OperationalError) and _locked(exc) else exc
        try:
            return [self._apply(conn, item) for item in staged]
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._lock.release()
            return exc

    def _end(self, outcomes: list[BaseException | None]) -> _Outcomes:
        """Commit what ``_begin`` inserted (holding the lock it took), in the writer thread or in place."""
        conn = self._eager
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return exc
        finally:
            self._lock.release()
        return outcomes

    def _write_group(self, staged: list[_Staged]) -> _Outcomes:
        """One transaction for the rows of every staged step: each step's outcome, or what failed
        the whole commit."""
        outcomes: list[BaseException | None] = []
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                for item in staged:
                    outcomes.append(self._apply(conn, item))
                conn.execute("COMMIT")
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return outcomes

    def _written(self, staged: list[_Staged], outcome: _Outcomes) -> None:
        if isinstance(outcome, sqlite3.OperationalError) and _locked(outcome):
            # Another process held the write lock past the busy timeout: try again later.
            self._staged[:0] = staged
            self._retry_later(outcome)
            return
        if isinstance(outcome, BaseException):
            _settle_all(staged, outcome)
            return
        self._backoff = _FIRST_BACKOFF
        for item, result in zip(staged, outcome, strict=True):
            _settle(item.done, result)

    def _apply(self, conn: sqlite3.Connection, item: _Staged) -> BaseException | None:
        if item.statement is None and item.outcome is None and item.start is None:
            return self._insert_alone(conn, item.batch)
        # A statement that fails (a constraint) fails its caller alone: the group goes on.
        conn.execute("SAVEPOINT statement")
        try:
            if item.start is not None:
                item.returned = self._write_start(conn, item.start)
            elif item.outcome is not None:
                item.rowcount = self._write_outcome(conn, item.outcome)
            else:
                assert item.statement is not None
                item.rowcount = conn.executemany(*item.statement).rowcount
        except sqlite3.DatabaseError as exc:
            conn.execute("ROLLBACK TO statement")
            conn.execute("RELEASE statement")
            return exc
        conn.execute("RELEASE statement")
        return None

    def _insert_alone(
        self, conn: sqlite3.Connection, batch: list[tuple[StepRow, str | None]]
    ) -> BaseException | None:
        """Insert one step's rows; a fenced-off or nondeterministic one undoes only its own rows."""
        if len(batch) > 1:
            conn.execute("SAVEPOINT step_rows")
        try:
            self._insert(conn, batch)
        except (dbos_error.DBOSWorkflowConflictIDError, dbos_error.DBOSStepNondeterminismError) as exc:
            if len(batch) > 1:
                conn.execute("ROLLBACK TO step_rows")
                conn.execute("RELEASE step_rows")
            return exc
        if len(batch) > 1:
            conn.execute("RELEASE step_rows")
        return None

    def _retry_later(self, exc: sqlite3.OperationalError) -> None:
        delay, self._backoff = self._backoff, min(self._backoff * 2, _MAX_BACKOFF)
        log.warning("step records wait for SQLite's write lock (%s); retrying in %.2f s", exc, delay)
        # Replaces a commit scheduled sooner: the staged rows wait out the backoff together.
        self._commit_scheduled = True
        asyncio.get_running_loop().call_later(delay, self._commit_staged)

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # the commit in flight ends first
        # Rows of steps stopped while they waited for the group commit: recorded all the same.
        staged, self._staged = self._staged, []
        for item in staged:
            written = self._write_group([item])
            outcome = written if isinstance(written, BaseException) else written[0]
            with contextlib.suppress(RuntimeError):  # the step's loop may be closed already
                _settle(item.done, outcome)
        with self._lock:
            self._conn.close()
            self._eager.close()
        with self._read_lock:
            self._reader.close()


class PostgresStepRecorder(LeanRecorder):
    def __init__(
        self,
        url: str,
        defaults: StepRowDefaults,
        *,
        durability: Durability = "sync",
        connections: int = _PG_CONNECTIONS,
    ) -> None:
        super().__init__(url, defaults, durability=durability)
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        schema = '"' + (defaults.schema or "dbos").replace('"', '""') + '"'
        # DBOS calls the look-up and record from its worker threads, as many as it has runs in a step
        # (its executor has no bound): they share at most ``connections`` connections, borrowed for a
        # statement (or a batch's transaction) and given back, so 200 runs at once do not open 200.
        self._connections = connections
        self._idle: queue.LifoQueue[psycopg.Connection[tuple[Any, ...]]] = queue.LifoQueue()
        self._opened = 0
        self._all: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._look_up_sql = (
            "SELECT s.status, o.output, o.error, o.function_name, o.child_workflow_id, o.serialization, "
            f"o.function_id, (SELECT max(function_id) FROM {schema}.operation_outputs "
            "WHERE workflow_uuid = %(workflow_id)s) "
            f"FROM {schema}.workflow_status AS s LEFT JOIN {schema}.operation_outputs AS o "
            "ON o.workflow_uuid = s.workflow_uuid AND o.function_id = %(function_id)s "
            "WHERE s.workflow_uuid = %(workflow_id)s"
        )
        # The owner check locks the workflow's row and reads its latest version (a cancel committed
        # meanwhile is waited for and seen); its status comes back beside the completion time.
        self._insert_sql = (
            f"WITH owner AS (SELECT status FROM {schema}.workflow_status "
            "WHERE workflow_uuid = %(workflow_id)s AND owner_xid = %(owner_xid)s::text FOR NO KEY UPDATE), "
            f"written AS (INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, "
            "started_at_epoch_ms, completed_at_epoch_ms, output, error, child_workflow_id, "
            "serialization, application_name, retention_timestamp) "
            "SELECT %(workflow_id)s, %(function_id)s, %(function_name)s, %(started_at)s::bigint, "
            "%(completed_at)s::bigint, %(output)s::text, %(error)s::text, NULL, %(serialization)s::text, "
            f"%(app_name)s::text, {defaults.now_sql} "
            "WHERE %(owner_xid)s::text IS NULL OR EXISTS (SELECT 1 FROM owner) "
            "ON CONFLICT (workflow_uuid, function_id) DO UPDATE SET "
            "completed_at_epoch_ms = operation_outputs.completed_at_epoch_ms "
            "RETURNING completed_at_epoch_ms) "
            "SELECT completed_at_epoch_ms, (SELECT status FROM owner) FROM written"
        )

    def _borrow(self) -> psycopg.Connection[tuple[Any, ...]]:
        """An idle connection, a new one while fewer than ``connections`` are open, or the first
        given back (at most ``_BORROW_SECONDS``: then an OperationalError, which DBOS retries)."""
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        with self._lock:
            opening = self._opened < self._connections
            if opening:
                self._opened += 1
        if not opening:
            try:
                return self._idle.get(timeout=_BORROW_SECONDS)
            except queue.Empty:
                raise psycopg.OperationalError(
                    f"no step-recorder connection free after {_BORROW_SECONDS:.0f} s "
                    f"({self._connections} open)"
                ) from None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, application_name="shopfloor_steps")
        except BaseException:
            with self._lock:
                self._opened -= 1
            raise
        with self._lock:
            self._all.append(conn)
        return conn

    def _give_back(self, conn: psycopg.Connection[tuple[Any, ...]], *, broken: bool) -> None:
        if not broken and not conn.closed:
            self._idle.put(conn)
            return
        conn.close()
        with self._lock:
            self._opened -= 1
            if conn in self._all:
                self._all.remove(conn)

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, params, prepare=True).fetchall(), sql)

    def _run(self, work: Callable[[psycopg.Connection[tuple[Any, ...]]], T], sql: str) -> T:
        try:
            conn = self._borrow()
        except psycopg.OperationalError as exc:
            raise sa_exc.OperationalError(sql, None, exc, connection_invalidated=True) from exc
        broken = True
        try:
            result = work(conn)
            broken = False
            return result
        except psycopg.OperationalError as exc:
            # Raised as SQLAlchemy raises it for DBOS's own engine, so DBOS's retry waits for the
            # database to come back; the connection is closed and a fresh one made when needed.
            raise sa_exc.OperationalError(sql, None, exc, connection_invalidated=True) from exc
        except BaseException:
            # an error of the step's own (fenced off, nondeterminism) leaves the connection idle
            broken = conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            raise
        finally:
            self._give_back(conn, broken=broken)

    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        rows = self._execute(self._look_up_sql, {"workflow_id": workflow_id, "function_id": function_id})
        return rows[0] if rows else None

    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            # One row (sync durability, the usual case) is one autocommitted statement.
            with conn.transaction() if len(batch) > 1 else contextlib.nullcontext():
                for row, owner_xid in batch:
                    returned = conn.execute(self._insert_sql, self._params(row, owner_xid), prepare=True)
                    self._check(row, owner_xid, returned.fetchall())

        self._run(write, self._insert_sql)

    def _params(self, row: StepRow, owner_xid: str | None) -> dict[str, Any]:
        return {
            "workflow_id": row.workflow_id,
            "function_id": row.function_id,
            "function_name": row.function_name,
            "started_at": row.started_at_ms,
            "completed_at": row.completed_at_ms,
            "output": row.output,
            "error": row.error,
            "serialization": row.serialization,
            "app_name": self.app_name,
            "owner_xid": owner_xid,
        }

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
        with contextlib.suppress(queue.Empty):
            while True:
                self._idle.get_nowait()


@dataclass(kw_only=True)
class _Staged:
    """One step's rows (or a statement of ours) waiting for the group commit, and who waits for them."""

    batch: list[tuple[StepRow, str | None]]
    done: asyncio.Future[None]
    #: ``execute_beside``: the statement and its parameter rows, and its row count once executed
    statement: tuple[str, list[tuple[Any, ...]]] | None = None
    #: ``record_outcome``: (status, workflow id, owner token, output, error) of a workflow's end
    outcome: tuple[Any, ...] | None = None
    #: ``record_start``: a workflow's start, and the status row its upsert returned
    start: WorkflowStart | None = None
    returned: tuple[Any, ...] | None = None
    rowcount: int = 0


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
#: a group commit's outcome: each step's (None: written), or what failed the whole commit
_Outcomes = list[BaseException | None] | Exception
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _settle(done: asyncio.Future[None], outcome: BaseException | None) -> None:
    if done.done():  # the step was cancelled while it waited; its rows are written all the same
        return
    if outcome is None:
        done.set_result(None)
    else:
        done.set_exception(outcome)


def _settle_all(staged: list[_Staged], exc: BaseException) -> None:
    for item in staged:
        _settle(item.done, exc)


#: Lean recorders by the database URL's dialect.
RECORDERS: Mapping[str, type[LeanRecorder]] = MappingProxyType(
    {"sqlite": SQLiteStepRecorder, "postgresql": PostgresStepRecorder}
)


def open_recorder(url: str, defaults: StepRowDefaults, *, durability: Durability = "sync") -> LeanRecorder:
    dialect = make_url(url).get_backend_name()
    recorder = RECORDERS.get(dialect)
    if recorder is None:
        raise ConfigError(
            f'[runtime] step_recorder = "lean" has no recorder for {dialect} databases '
            f'(it has {", ".join(sorted(RECORDERS))}): set step_recorder = "dbos"'
        )
    return recorder(url, defaults, durability=durability)
