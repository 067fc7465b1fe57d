"""The lean step recorder on SQLite (``_recorder.py`` has the design it shares with PostgreSQL's).

It is raw ``sqlite3`` on DBOS's own file (WAL, DBOS's busy timeout and foreign keys), the record
inside ``BEGIN IMMEDIATE ... COMMIT`` so the owner check and the write are one transaction; the
records of a worker's runs share group commits on the event loop (``SQLiteStepRecorder``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dbos import error as dbos_error
from sqlalchemy.engine import make_url

from shopfloor.errors import ConfigError
from shopfloor.runtime._dbos_internals import StepRow, StepRowDefaults, WorkflowStart
from shopfloor.runtime._recorder import Durability, LeanRecorder, Statement
from shopfloor.runtime._writer import Writer
from shopfloor.storage import open_sqlite

__all__ = ["SQLiteStepRecorder"]

T = TypeVar("T")
log = logging.getLogger("shopfloor.runtime")


class SQLiteStepRecorder(LeanRecorder):
    """On SQLite DBOS's step bookkeeping runs on the event loop (``_dbos_internals``), through ``settle``: a
    row recorded there is staged, and the step waits (without holding the loop) until a commit scheduled
    right after the tasks ready now writes every staged row in one transaction. The rows are inserted on
    the loop (``BEGIN IMMEDIATE`` without waiting for the write lock), and the ``COMMIT`` (the fsync)
    runs in a writer thread while the loop runs the other runs, whose rows make the next group, and the
    stepping runs' own work up to their next step: a step whose row is inserted returns, and its run's
    next step waits for the commit (``confirmed``), so no step starts before every step before it is
    durable (``durability = "sync"`` is unchanged) while the fsync overlaps the run's own work instead of
    adding to it. The runs of one worker share a commit (one fsync) instead of queueing one each. A run's
    start and end in the run store join the same commits (``execute_beside``; a run started here has its
    row in the transaction of its workflow's start, which is recorded on the loop: ``beside_start``,
    ``start_here``), and so does DBOS's own record of a workflow's end, made on the loop (``off_loop``).
    Look-ups read on a connection of their own. A row that is fenced off or nondeterministic fails only
    its own step (its rows roll back to a savepoint); where another connection holds the write lock the
    writer thread writes the group, waiting as long as the busy timeout; "database is locked" past it
    (another process writing for longer) keeps the rows staged and retries the commit with a backoff, as
    DBOS's own retry would, without blocking the loop meanwhile. Records from other threads (a sync step)
    commit at once.
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
        self._writer: Writer[_Outcomes] | None = None
        self._in_flight = False
        #: per thread: where ``settle`` collects the commits its call staged (None outside one), and
        #: in an ``off_loop`` thread the loop its outcome record is staged on
        self._local = threading.local()
        self._closed = False
        #: the loop the runs execute on (``attach``): where a start from a thread is staged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._staged: list[_Staged] = []
        #: by workflow: the commit its last step, given back once inserted, still waits for
        self._unconfirmed: dict[str, asyncio.Future[None]] = {}
        #: by workflow id: a statement of ours that goes into the transaction of its workflow's start
        self._besides: dict[str, _Beside] = {}
        #: by workflow: what failed the commit of a record of it that a later step did not wait for
        #: (``durability = "batched"``): its later records fail with it, so none lands after a gap
        self._broken: dict[str, BaseException] = {}
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
        inserted, where their owner and cancel checks are made (raising what those raised: a
        fenced-off or nondeterministic step), or committed where the group could not be inserted on
        the loop; ``confirmed`` waits for the commit."""
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
        land, the outcome another execution records, as a result DBOS waits for on the loop) here,
        its record (``record_outcome``) staged into the next group commit beside other runs' step
        rows, instead of a commit of its own through SQLAlchemy (~0.9 ms of CPU a run) or a thread
        hop (~90 Python calls on the loop's thread, ~130 with the record staged back from there).

        The record answers "landed" at once and ``call`` returns as if it had; where the commit finds
        it did not (the run was cancelled, or another execution owns it), nothing was written ("a
        write that did not land leaves no orphan output") and ``call`` had done nothing else, so it
        runs again, as DBOS runs it, in a thread whose record is staged back on this loop: it finds
        the outcome not landing and adopts the recorded one."""
        here = _Outcome()
        self._local.outcome = here
        failed: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # the workflow's own error, re-raised once its record landed
            failed = exc
        finally:
            self._local.outcome = None
        staged = here.staged
        if staged is not None:
            await staged.done
            if staged.rowcount == 0:
                return await self._in_thread(call)
        if failed is not None:
            raise failed
        return result

    async def _in_thread(self, call: Callable[[], T]) -> T:
        """``call`` in a thread, its ``record_outcome`` staged back on this loop (``_from_thread``).
        Not in the writer thread: a group begun on the loop holds the write lock until the writer
        thread commits it."""
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
        """In ``off_loop``: the outcome's UPDATE and output upsert in the next group commit, answered
        "landed" at once (``off_loop`` checks it once committed); in its thread, the same, that thread
        waiting for it; anywhere else (or once the loop or this recorder has stopped) None, and DBOS
        writes it."""
        params = (status, workflow_id, owner_xid, output, error)
        here: _Outcome | None = getattr(self._local, "outcome", None)
        if here is not None:
            here.staged = self._stage_item(_Staged(outcome=params))
            return True
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            return None
        return self._from_thread(loop, self._staged_outcome(params))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def record_start(self, start: WorkflowStart) -> tuple[Any, ...] | None:
        """From a thread (DBOS starts a workflow in one: ``_init_workflow``) while a loop stages here:
        the status upsert (and the inputs, where its names match) in the next group commit on the
        ``attach``ed loop, after the statement ``beside_start`` put beside it, this thread waiting for
        it; from a loop's own thread, or unattached, None (a start with a statement beside it raises
        instead: its workflow would run without what the statement writes)."""
        beside = self._besides.get(start.workflow_id)
        if beside is not None and beside.here:
            # ``start_here`` on the loop: staged now, the row a first insert returns answered at once (the
            # commit refuses any other), the start awaited in ``_start_here`` before the workflow runs.
            beside.staged = self._stage_item(_Staged(start=start, statement=beside.statement))
            return start.fresh
        loop = self._loop
        returned: tuple[Any, ...] | None = None
        if loop is not None and _running_loop() is None:  # on a loop's thread, waiting would hold it up
            returned = self._from_thread(loop, self._staged_start(start, beside))
        if returned is None and beside is not None:
            raise RuntimeError(
                f"the step recorder stopped before it recorded the start of workflow {start.workflow_id}"
            )
        return returned

    def start_here(self, workflow_id: str, call: Callable[[], T]) -> Coroutine[Any, Any, T] | None:
        """DBOS's record of the start of ``workflow_id`` (``call``: its ``_init_workflow``) on this
        recorder's loop, without DBOS's thread, where ``beside_start`` put a run's row beside it (a fresh
        run: its start cannot find a workflow of its id, and is refused in the commit where it does);
        None otherwise, and DBOS records it in its thread (``record_start`` stages it back here)."""
        beside = self._besides.get(workflow_id)
        if beside is None or self._closed or self._loop is None or _running_loop() is not self._loop:
            return None
        return self._start_here(beside, call)

    async def _start_here(self, beside: _Beside, call: Callable[[], T]) -> T:
        beside.here = True
        try:
            started = call()
        finally:
            beside.here = False
        if beside.staged is not None:
            await beside.staged.done
            beside.written = True
        return started

    @contextlib.contextmanager
    def beside_start(self, workflow_id: str, sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[None]:
        """Execute a statement of ours (a run's row in the run store) in the transaction of DBOS's
        record of the start of ``workflow_id`` made inside this block: the two are durable together,
        in one commit instead of one each, and the statement is written before the workflow can run.
        Where it fails, the start fails with its error and leaves neither; a start that this recorder
        did not record (DBOS's own path) raises once it returns."""
        beside = _Beside(statement=(sql, [tuple(row) for row in rows]))
        self._besides[workflow_id] = beside
        try:
            yield
        finally:
            del self._besides[workflow_id]
        if not beside.written:
            raise RuntimeError(f"the start of workflow {workflow_id} was recorded without its statement")

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

    async def _staged_start(self, start: WorkflowStart, beside: _Beside | None) -> tuple[Any, ...] | None:
        statement = beside.statement if beside is not None else None
        staged = self._stage_item(_Staged(start=start, statement=statement))
        await staged.done
        if beside is not None:
            beside.written = True
        return staged.returned

    async def _staged_outcome(self, params: tuple[Any, ...]) -> bool:
        staged = self._stage_item(_Staged(outcome=params))
        await staged.done
        return staged.rowcount > 0

    def _write_start(
        self, conn: sqlite3.Connection, start: WorkflowStart, beside: tuple[str, list[tuple[Any, ...]]] | None
    ) -> tuple[Any, ...]:
        if beside is not None:  # first: the run's row exists wherever its workflow's start does
            conn.executemany(*beside)
        row: tuple[Any, ...] = conn.execute(start.status_sql, start.status_params).fetchone()
        if beside is not None and row != start.fresh:
            # A new run's id taken by a workflow already: neither is written (``start_here`` answered
            # for a first insert; DBOS would attach the run to that workflow, left queued for ever).
            raise sqlite3.IntegrityError(
                f"a workflow {start.workflow_id} exists already: a new run cannot take its id"
            )
        if row[1:4] == start.expected:  # a start refused for its names writes no inputs, as DBOS's
            conn.execute(start.input_sql, start.input_params)
        return row

    def _write_outcome(self, conn: sqlite3.Connection, params: tuple[Any, ...]) -> int:
        status, workflow_id, owner_xid, output, error = params
        landed = conn.execute(self._outcome_sql, (status, workflow_id, owner_xid)).rowcount
        if landed:  # a write that did not land leaves no orphan output, as DBOS's
            conn.execute(self._output_sql, (workflow_id, output, error))
        return landed

    def record(self, row: StepRow, owner_xid: str | None) -> None:
        """On the loop (in ``settle``) every record goes into the next group commit at once, whatever
        the durability (with ``batched`` committed behind the run: ``_commit``); elsewhere (a sync
        step's thread) as ``LeanRecorder.record``."""
        if getattr(self._local, "waits", None) is None:
            super().record(row, owner_xid)
            return
        assert row.error is None or row.output is None, "Only one of error or output can be set"
        self._commit(row.workflow_id, [(row, owner_xid)])

    async def flush_async(self, workflow_id: str) -> None:
        with self._pending_lock:
            pending = bool(self._pending.get(workflow_id))
        if pending:  # deferred in a thread (a sync step): staged now
            await self.settle(lambda: self.flush(workflow_id))
        await self.confirmed(workflow_id)

    def _commit(self, workflow_id: str, rows: list[tuple[StepRow, str | None]]) -> None:
        waits: list[asyncio.Future[None]] | None = getattr(self._local, "waits", None)
        if waits is None:
            super()._commit(workflow_id, rows)
            return
        with self._pending_lock:
            batch = [*self._pending.pop(workflow_id, ()), *rows]
        if not batch:
            return
        if self.durability == "batched":
            self._stage_behind(workflow_id, batch)
        else:
            waits.append(self._stage(batch))

    def _stage_behind(self, workflow_id: str, batch: list[tuple[StepRow, str | None]]) -> None:
        """``durability = "batched"``: the rows go into the next group commit, and the step returns
        without waiting for their insert or their commit (write-behind): the run's next model call
        starts at once and the fsync runs beside it. What the insert or the commit raises (a fenced-off
        or nondeterministic step, a failed commit) is raised where the runner flushes (``confirmed``:
        before and after a step with effects, an approval wait, a sleep, the run's end), and fails
        every later record of the run (``_broken``): none lands after a gap. The look-up of the next
        step reads where the insert has not yet made its cancel check (``_proven_unrecorded``), so a
        cancel still stops the run at the next step boundary."""
        item = self._stage_item(_Staged(batch=batch, behind=True))
        item.durable = asyncio.get_running_loop().create_future()
        self._unconfirmed[workflow_id] = item.durable

    async def execute_beside(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Execute a statement of ours on DBOS's database once per parameter row (the run store: a
        run started or ended, a batch of events) in the next group commit, beside the step rows;
        the rows it changed, once committed. A run's start and end, and the events of every run,
        then share the commit of other runs' steps instead of taking one each (in a thread that
        would wait for the GIL at every bound parameter while the loop runs the agents)."""
        (changed,) = await self.execute_all_beside([(sql, rows)])
        return changed

    def execute_all_beside(self, statements: Sequence[Statement]) -> Awaitable[list[int]]:
        """``execute_beside`` of each statement in order, all in the same group commit (so in one
        transaction, each fails alone): what must be durable together (a run's end and its last events)
        takes one commit, not one each. Staged at the call (so in the order of the calls), the rows each
        changed once awaited and committed; what failed one of them is raised once all are settled."""
        return self._settled(
            [self._stage_item(_Staged(statement=(sql, [tuple(r) for r in rows]))) for sql, rows in statements]
        )

    async def _settled(self, staged: list[_Staged]) -> list[int]:
        failed: BaseException | None = None
        for item in staged:
            try:
                await item.done
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return [item.rowcount for item in staged]

    def _stage(self, batch: list[tuple[StepRow, str | None]]) -> asyncio.Future[None]:
        return self._stage_item(_Staged(batch=batch)).done

    def _stage_item(self, staged: _Staged) -> _Staged:
        loop = asyncio.get_running_loop()
        self._staged.append(staged)
        if not self._commit_scheduled:
            # After the tasks ready now: the other runs of this worker stage their rows first.
            self._commit_scheduled = True
            loop.call_soon(self._commit_staged)
        return staged

    def _writer_thread(self) -> Writer[_Outcomes]:
        if self._writer is None:
            self._writer = Writer("shopfloor-steps")
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
        # The writer thread waits out the fsync (or, where another connection holds SQLite's write
        # lock, the busy timeout and the whole group) while the loop runs the other runs, whose rows
        # make the next group, and the stepping runs' own work up to their next step (``_inserted``).
        loop = asyncio.get_running_loop()
        self._in_flight = True
        done = functools.partial(self._group_done, staged)
        if began is None:
            self._writer_thread().submit(loop, functools.partial(self._write_group, staged), done)
        else:
            self._writer_thread().submit(loop, functools.partial(self._end, began), done, hand_over=True)
            self._inserted(loop, staged, began)

    def _inserted(
        self, loop: asyncio.AbstractEventLoop, staged: list[_Staged], outcomes: list[BaseException | None]
    ) -> None:
        """Give back at once the steps whose rows ``_begin`` inserted: their outcome is known (the owner
        and cancel checks, the completion time, all in the insert's RETURNING), only the COMMIT (the
        fsync) is still to come. The loop goes on with the run's own work (events, spans, the context
        window, the next request) while the writer thread commits, and the run's next step waits for
        the commit before it starts (``confirmed``): no step's body runs before every step before it is
        durable, as with a commit awaited at the step's end, but the fsync no longer adds to the loop's
        work (one run alone paid both, one after the other). A commit that fails is raised at that next
        step, or at the run's end (``flush_async``); a fenced-off or nondeterministic step, known at the
        insert, is raised at its own step as before (settled with the commit, in ``_written``)."""
        for item, outcome in zip(staged, outcomes, strict=True):
            if outcome is None and item.batch and item.statement is None and item.outcome is None:
                if item.durable is None:  # (not when a commit that failed for the lock is retried)
                    item.durable = loop.create_future()
                    self._unconfirmed[item.batch[0][0].workflow_id] = item.durable
                _settle(item.done, None)

    async def confirmed(self, workflow_id: str) -> None:
        """Once the workflow's last recorded step is committed (raising what failed its commit, or the
        commit of a record before it: groups commit in order, so the last landing means all did)."""
        durable = self._unconfirmed.pop(workflow_id, None)
        try:
            if durable is not None:
                await durable
        finally:  # raised once: by the last record, or here
            broken = self._broken.pop(workflow_id, None)
        if broken is not None:
            raise broken

    def _group_done(self, staged: list[_Staged], outcome: _Outcomes) -> None:
        self._in_flight = False
        self._written(staged, outcome)
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
        """Commit what ``_begin`` inserted (holding the lock it took), in the writer thread."""
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
            for item in staged:
                if item.durable is not None:  # given back before its commit: its run's later records
                    self._broken.setdefault(item.batch[0][0].workflow_id, outcome)
            _settle_all(staged, outcome)
            return
        self._backoff = _FIRST_BACKOFF
        for item, result in zip(staged, outcome, strict=True):
            _settle_item(item, result)
            if result is None and item.durable is not None:
                # Landed: forgotten (one that failed is kept for ``confirmed`` to raise).
                workflow_id = item.batch[0][0].workflow_id
                if self._unconfirmed.get(workflow_id) is item.durable:
                    del self._unconfirmed[workflow_id]

    def _apply(self, conn: sqlite3.Connection, item: _Staged) -> BaseException | None:
        if item.statement is None and item.outcome is None and item.start is None:
            workflow_id = item.batch[0][0].workflow_id
            broken = self._broken.get(workflow_id) if self._broken else None
            if broken is not None:  # a record before it was lost: this one must not land after the gap
                return broken
            failed = self._insert_alone(conn, item.batch)
            if failed is not None and item.behind:  # its run stepped on: its later records fail too
                self._broken.setdefault(workflow_id, failed)
            return failed
        # A statement that fails (a constraint) fails its caller alone: the group goes on.
        conn.execute("SAVEPOINT statement")
        try:
            if item.start is not None:
                item.returned = self._write_start(conn, item.start, item.statement)
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
            self._writer.close()  # the commit in flight ends first
        # Rows of steps stopped while they waited for the group commit: recorded all the same.
        staged, self._staged = self._staged, []
        for item in staged:
            written = self._write_group([item])
            outcome = written if isinstance(written, BaseException) else written[0]
            with contextlib.suppress(RuntimeError):  # the step's loop may be closed already
                _settle_item(item, outcome)
        with self._lock:
            self._conn.close()
            self._eager.close()
        with self._read_lock:
            self._reader.close()


def _loop_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass(kw_only=True)
class _Staged:
    """One step's rows (or a statement of ours) waiting for the group commit, and who waits for them."""

    #: a step's rows (none for a statement, a start or an end)
    batch: list[tuple[StepRow, str | None]] = field(default_factory=list)
    #: made on the loop that stages it
    done: asyncio.Future[None] = field(default_factory=_loop_future)
    #: ``execute_beside``: the statement and its parameter rows, and its row count once executed (with
    #: ``start``: the statement ``beside_start`` executes before it)
    statement: tuple[str, list[tuple[Any, ...]]] | None = None
    #: ``record_outcome``: (status, workflow id, owner token, output, error) of a workflow's end
    outcome: tuple[Any, ...] | None = None
    #: ``record_start``: a workflow's start, and the status row its upsert returned
    start: WorkflowStart | None = None
    returned: tuple[Any, ...] | None = None
    rowcount: int = 0
    #: a step given back once inserted (``_inserted``): settled when its commit lands or fails
    durable: asyncio.Future[None] | None = None
    #: committed behind its run (``_stage_behind``): no one awaits ``done``, only ``durable``
    behind: bool = False


@dataclass(kw_only=True)
class _Beside:
    """``beside_start``'s statement, and whether it was committed with its workflow's start."""

    statement: tuple[str, list[tuple[Any, ...]]]
    written: bool = False
    #: inside ``start_here``: ``record_start`` stages the start on the loop (``staged``)
    here: bool = False
    staged: _Staged | None = None


@dataclass(kw_only=True)
class _Outcome:
    """The record of a workflow's end ``off_loop`` staged (None: its ``persist`` recorded none)."""

    staged: _Staged | None = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running on this thread, None on a thread that runs none."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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


def _settle_item(item: _Staged, outcome: BaseException | None) -> None:
    """Settle what the step waits for, and what its next step waits for where it was given back
    once inserted (``_inserted``)."""
    _settle(item.done, outcome)
    if item.behind and outcome is not None and not item.done.cancelled():
        item.done.exception()  # retrieved: ``durable`` carries it to ``confirmed``
    durable = item.durable
    if durable is not None:
        _settle(durable, outcome)
        if outcome is not None and durable.done() and not durable.cancelled():
            durable.exception()  # retrieved: ``confirmed`` raises it, if the run steps again


def _settle_all(staged: list[_Staged], exc: BaseException) -> None:
    for item in staged:
        _settle_item(item, exc)
