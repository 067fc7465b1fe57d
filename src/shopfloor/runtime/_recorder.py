"""The lean step recorder: DBOS's own step rows, written with the fewest statements the same checks need.

For each step DBOS 3.4 sends 8 statements through SQLAlchemy (two pool pre-pings, a status
and an output look-up, ``BEGIN IMMEDIATE``, an owner-fencing ``UPDATE``, the ``INSERT ... ON
CONFLICT``, ``COMMIT``); ~88% of its CPU a step is that path, not the database. This recorder
stands behind DBOS's ``check_operation_execution`` and ``record_operation_result``
(``_dbos_internals.install_step_recorder``) and does the same work as:

- the look-up: one joined ``SELECT`` of the workflow's status and the step's row. A missing
  workflow fails as DBOS's does, a cancelled one raises ``DBOSWorkflowCancelledError`` (a
  cancelled run stops at the next step boundary), a recorded step is returned (never re-run),
  another step name at that position raises ``DBOSUnexpectedStepError``;
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

With ``[runtime] durability = "batched"`` the rows of model and schema steps wait in memory
and are committed in the transaction of the next step's row, or when the runner flushes
(before a tool step, an approval wait, a durable sleep, the run's end); a batch whose run
changed owner is fenced off whole.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

import psycopg
from dbos import error as dbos_error
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from shopfloor.errors import ConfigError
from shopfloor.runtime._dbos_internals import StepRow, StepRowDefaults
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
T = TypeVar("T")
Durability = Literal["sync", "batched"]
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

    @abstractmethod
    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        """(status, output, error, function_name, child_workflow_id, serialization, function_id)
        of the workflow and its step; the step's columns None where it has no row."""

    @abstractmethod
    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        """Insert each row where its owner still matches, in one transaction, calling ``_check``
        on each row's RETURNING rows before the commit (an error rolls the batch back)."""

    @abstractmethod
    def close(self) -> None: ...

    def look_up(self, workflow_id: str, function_id: int, function_name: str) -> dict[str, Any] | None:
        found = self._look_up_row(workflow_id, function_id)
        assert found is not None, f"Error: Workflow {workflow_id} does not exist"
        status, output, error, recorded_name, child_workflow_id, serialization, step_id = found
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

    def flush(self, workflow_id: str) -> None:
        """Commit the workflow's deferred rows now (before a tool runs, a wait, the run's end)."""
        self._commit(workflow_id, [])

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

    @staticmethod
    def _check(row: StepRow, returned: list[tuple[Any, ...]]) -> None:
        if not returned:
            raise dbos_error.DBOSWorkflowConflictIDError(row.workflow_id)
        existing = returned[0][0]
        if existing is None or int(existing) != row.completed_at_ms:
            raise dbos_error.DBOSStepNondeterminismError(row.workflow_id, row.function_id)


class SQLiteStepRecorder(LeanRecorder):
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
        self._lock = threading.Lock()
        self._look_up_sql = (
            "SELECT s.status, o.output, o.error, o.function_name, o.child_workflow_id, o.serialization, "
            "o.function_id FROM workflow_status AS s LEFT JOIN operation_outputs AS o "
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
            "RETURNING completed_at_epoch_ms"
        )

    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        with self._lock:
            found: tuple[Any, ...] | None = self._conn.execute(
                self._look_up_sql, (workflow_id, function_id)
            ).fetchone()
        return found

    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
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
                    self._check(row, conn.execute(self._insert_sql, params).fetchall())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStepRecorder(LeanRecorder):
    def __init__(self, url: str, defaults: StepRowDefaults, *, durability: Durability = "sync") -> None:
        super().__init__(url, defaults, durability=durability)
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        schema = '"' + (defaults.schema or "dbos").replace('"', '""') + '"'
        # DBOS calls the look-up and record from its worker threads: a connection per thread.
        self._local = threading.local()
        self._all: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._look_up_sql = (
            "SELECT s.status, o.output, o.error, o.function_name, o.child_workflow_id, o.serialization, "
            f"o.function_id FROM {schema}.workflow_status AS s LEFT JOIN {schema}.operation_outputs AS o "
            "ON o.workflow_uuid = s.workflow_uuid AND o.function_id = %(function_id)s "
            "WHERE s.workflow_uuid = %(workflow_id)s"
        )
        self._insert_sql = (
            f"INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, "
            "started_at_epoch_ms, completed_at_epoch_ms, output, error, child_workflow_id, "
            "serialization, application_name, retention_timestamp) "
            "SELECT %(workflow_id)s, %(function_id)s, %(function_name)s, %(started_at)s::bigint, "
            "%(completed_at)s::bigint, %(output)s::text, %(error)s::text, NULL, %(serialization)s::text, "
            f"%(app_name)s::text, {defaults.now_sql} "
            "WHERE %(owner_xid)s::text IS NULL OR EXISTS (SELECT 1 FROM "
            f"{schema}.workflow_status WHERE workflow_uuid = %(workflow_id)s "
            "AND owner_xid = %(owner_xid)s::text FOR NO KEY UPDATE) "
            "ON CONFLICT (workflow_uuid, function_id) DO UPDATE SET "
            "completed_at_epoch_ms = operation_outputs.completed_at_epoch_ms "
            "RETURNING completed_at_epoch_ms"
        )

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn: psycopg.Connection[tuple[Any, ...]] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self._conninfo, autocommit=True, application_name="shopfloor_steps")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, params, prepare=True).fetchall(), sql)

    def _run(self, work: Callable[[psycopg.Connection[tuple[Any, ...]]], T], sql: str) -> T:
        conn = self._connection()
        try:
            return work(conn)
        except psycopg.OperationalError as exc:
            # Raised as SQLAlchemy raises it for DBOS's own engine, so DBOS's retry waits for the
            # database to come back; this thread connects afresh on the next attempt.
            self._local.conn = None
            conn.close()
            raise sa_exc.OperationalError(sql, None, exc, connection_invalidated=True) from exc

    def _look_up_row(self, workflow_id: str, function_id: int) -> tuple[Any, ...] | None:
        rows = self._execute(self._look_up_sql, {"workflow_id": workflow_id, "function_id": function_id})
        return rows[0] if rows else None

    def _write(self, batch: list[tuple[StepRow, str | None]]) -> None:
        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            # One row (sync durability, the usual case) is one autocommitted statement.
            with conn.transaction() if len(batch) > 1 else contextlib.nullcontext():
                for row, owner_xid in batch:
                    returned = conn.execute(self._insert_sql, self._params(row, owner_xid), prepare=True)
                    self._check(row, returned.fetchall())

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
