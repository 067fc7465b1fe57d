"""The lean step recorder on PostgreSQL (``_recorder.py`` has the design it shares with SQLite's).

It is psycopg 3 with prepared statements, one round trip each: the record is one autocommitted
statement whose owner check locks the workflow's row ``FOR NO KEY UPDATE`` (as DBOS's
``_check_owner_txn`` does) until the row is written. DBOS's threads share at most
``_PG_CONNECTIONS`` connections (``PostgresStepRecorder._borrow``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from shopfloor.runtime._dbos_internals import StepRow, StepRowDefaults
from shopfloor.runtime._recorder import Durability, LeanRecorder

__all__ = ["PostgresStepRecorder"]

#: the PostgreSQL recorder's connections at most (DBOS's own engine pools 20 by default)
_PG_CONNECTIONS = 8
#: how long a step waits for one of them before its record fails as a lost connection (DBOS retries)
_BORROW_SECONDS = 30.0
T = TypeVar("T")


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
