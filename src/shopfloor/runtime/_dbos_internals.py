"""Every use Shopfloor makes of DBOS's private internals, checked against the DBOS they were written for.

DBOS offers no public way to do four things Shopfloor needs: run its step bookkeeping
on the event loop (``dbos._outcome`` calls ``asyncio.to_thread`` three times a step), put
a lean recorder behind its step look-up and record (``SystemDatabase.check_operation_execution``
and ``record_operation_result``), stop the workflow tasks still running when a runtime
closes (``DBOS._workflow_tasks``) and hand a dead executor's run back to a queue
(``SystemDatabase.reenqueue_for_recovery``). Each is a private name that may change in any
release, so this is the only module that imports ``dbos._*`` (``tests/runtime/test_internals.py``
scans ``src/`` to keep it so), and ``check_dbos()`` runs before DBOS launches: it compares
the installed version with the one pinned here and the source of each internal with the
fingerprint taken of it, and refuses to start, naming what changed, rather than fall back
silently. After upgrading DBOS, read what changed in each named internal, adapt this module
and ``_recorder.py``, then update ``DBOS_VERSION`` and ``FINGERPRINTS``
(``fingerprints()`` gives the new ones).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol, TypeVar

import dbos._context as _context
import dbos._core as _core
import dbos._dbos as _dbos
import dbos._outcome as _outcome
import dbos._sys_db as _sys_db

from shopfloor.errors import DurableEngineError

__all__ = [
    "DBOS_VERSION",
    "FINGERPRINTS",
    "InPlaceAsyncio",
    "StepRecorder",
    "StepRow",
    "StepRowDefaults",
    "check_dbos",
    "fingerprints",
    "inline_step_bookkeeping",
    "install_step_recorder",
    "reenqueue_for_recovery",
    "restore_step_bookkeeping",
    "step_row_defaults",
    "system_database",
    "workflow_tasks",
]

T = TypeVar("T")
log = logging.getLogger("shopfloor.runtime")

#: The DBOS release this module was written against (``pyproject.toml`` pins the same).
DBOS_VERSION = "3.4.0"


def _internals() -> Iterator[tuple[str, Any]]:
    """Each internal relied on, by the name the fingerprint table uses."""
    sys_db = _sys_db.SystemDatabase
    yield "dbos._outcome.Pending._wrap", _outcome.Pending._wrap
    yield "dbos._outcome.Pending._intercept", _outcome.Pending._intercept
    yield "dbos._core.invoke_step", _core.invoke_step
    yield "dbos._dbos._get_dbos_instance", _dbos._get_dbos_instance
    yield "dbos._dbos.DBOS.__init__", _dbos.DBOS.__init__
    yield "dbos._context.current_owner_xid", _context.current_owner_xid
    yield "dbos._sys_db.db_retry", _sys_db.db_retry
    yield "SystemDatabase.check_operation_execution", sys_db.check_operation_execution
    yield "SystemDatabase._check_operation_execution_txn", sys_db._check_operation_execution_txn
    yield "SystemDatabase.record_operation_result", sys_db.record_operation_result
    yield "SystemDatabase._record_operation_result_txn", sys_db._record_operation_result_txn
    yield "SystemDatabase._check_owner_txn", sys_db._check_owner_txn
    yield "SystemDatabase._now_ms_sql", sys_db._now_ms_sql
    yield "SystemDatabase.reenqueue_for_recovery", sys_db.reenqueue_for_recovery


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def fingerprints() -> dict[str, str]:
    """The fingerprint of each internal in the installed DBOS."""
    return {name: _fingerprint(obj) for name, obj in _internals()}


#: sha256 (first 16 hex digits) of the source of each internal, taken of DBOS_VERSION.
FINGERPRINTS: dict[str, str] = {
    "dbos._outcome.Pending._wrap": "ed2dee2ae3a28d04",
    "dbos._outcome.Pending._intercept": "68d426af693b07de",
    "dbos._core.invoke_step": "f60e7b0bb683cf4f",
    "dbos._dbos._get_dbos_instance": "d1b6a79d190d7742",
    "dbos._dbos.DBOS.__init__": "64b496c49b09b5a1",
    "dbos._context.current_owner_xid": "d736075a61a21c5a",
    "dbos._sys_db.db_retry": "c548d54a31c8ccbd",
    "SystemDatabase.check_operation_execution": "ab119f8c55582f82",
    "SystemDatabase._check_operation_execution_txn": "766d41e9fedd809e",
    "SystemDatabase.record_operation_result": "4c94546a403b202a",
    "SystemDatabase._record_operation_result_txn": "c3ddd7275cd9a49b",
    "SystemDatabase._check_owner_txn": "5cea51935d85ccd6",
    "SystemDatabase._now_ms_sql": "5c53016d81240b7a",
    "SystemDatabase.reenqueue_for_recovery": "ac0bc1c45d8c36e4",
}


def check_dbos(*, installed: str | None = None, found: dict[str, str] | None = None) -> None:
    """Refuse to start unless the installed DBOS is the version, and each internal the source,
    that this module was written for (``installed``/``found`` stand in for what is installed)."""
    installed = installed if installed is not None else version("dbos")
    if installed != DBOS_VERSION:
        raise DurableEngineError(
            f"dbos {installed} is installed, but Shopfloor's runtime relies on internals of dbos "
            f"{DBOS_VERSION} (src/shopfloor/runtime/_dbos_internals.py): install dbos=={DBOS_VERSION}"
        )
    found = found if found is not None else fingerprints()
    changed = sorted(name for name, digest in FINGERPRINTS.items() if found.get(name) != digest)
    if changed:
        raise DurableEngineError(
            f"dbos {installed} differs from the release Shopfloor was written for in "
            f"{', '.join(changed)}: reinstall dbos=={DBOS_VERSION} (a patched copy is installed), or "
            "adapt src/shopfloor/runtime/_dbos_internals.py to the change and update its FINGERPRINTS"
        )


# Step bookkeeping on the event loop ---------------------------------------------------------
# DBOS 3.4 wraps an async step in three ``asyncio.to_thread`` hops (``Pending._intercept`` looks
# up a recorded result, ``Pending._wrap`` runs a stage that does nothing, then records the
# result). On 2-core VMs a hop costs ~0.3 ms, more than the SQLite work it carries, and SQLite
# admits one writer at a time, so the threads buy a worker's concurrent runs nothing. So on
# SQLite DBOS's outcome module sees an ``asyncio`` whose ``to_thread`` calls the function in
# place: the event loop waits out each step's commit (and, rarely, SQLite's busy timeout while
# another process writes). Heartbeats beat from their own thread, so a waiting loop never looks
# like a dead executor. PostgreSQL keeps DBOS's threads: there concurrent round trips overlap.


async def _in_place(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


class InPlaceAsyncio:
    """The asyncio module, except that ``to_thread`` runs the function on the calling thread."""

    to_thread = staticmethod(_in_place)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def inline_step_bookkeeping() -> None:
    """Run DBOS's step bookkeeping on the calling thread (``check_dbos`` vouched for the module)."""
    if not isinstance(getattr(_outcome, "asyncio", None), InPlaceAsyncio):
        setattr(_outcome, "asyncio", InPlaceAsyncio())  # noqa: B010 - a private name, on purpose


def restore_step_bookkeeping() -> None:
    if isinstance(getattr(_outcome, "asyncio", None), InPlaceAsyncio):
        setattr(_outcome, "asyncio", asyncio)  # noqa: B010


# The launched DBOS ----------------------------------------------------------------------------


def system_database() -> Any:
    """The launched DBOS's ``SystemDatabase``."""
    return _dbos._get_dbos_instance()._sys_db


def workflow_tasks() -> list[asyncio.Task[Any]]:
    """The workflow tasks the launched DBOS is running in this process (it offers no public list)."""
    return list(_dbos._get_dbos_instance()._workflow_tasks)


def reenqueue_for_recovery(workflow_id: str, dead_executors: list[str], queue: str) -> bool:
    """Hand a PENDING run of a dead executor back to its queue (``queue`` where it had none)."""
    return bool(system_database().reenqueue_for_recovery(workflow_id, dead_executors, queue))


# The step recorder ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StepRow:
    """One row of DBOS's ``operation_outputs``, as DBOS's ``record_operation_result`` writes it."""

    workflow_id: str
    function_id: int
    function_name: str
    started_at_ms: int | None
    completed_at_ms: int
    output: str | None
    error: str | None
    serialization: str | None


class StepRecorder(Protocol):
    """What stands behind DBOS's step look-up and record (``_recorder.py``)."""

    def look_up(self, workflow_id: str, function_id: int, function_name: str) -> dict[str, Any] | None: ...

    def record(self, row: StepRow, owner_xid: str | None) -> None: ...

    def close(self) -> None: ...


def install_step_recorder(recorder: StepRecorder) -> Callable[[], None]:
    """Put ``recorder`` behind the launched DBOS's step look-up and record; returns the undo.

    DBOS's retry (``db_retry``: SQLite's "database is locked", lost PostgreSQL connections)
    wraps both, as it wraps its own. A record of a child workflow's result keeps DBOS's own
    path (it resolves the child's shard key); Shopfloor's runs start no child workflows.
    """
    sys_db = system_database()
    retry = _sys_db.db_retry(sys_db=sys_db)
    look_up, record = retry(recorder.look_up), retry(recorder.record)
    dbos_record = sys_db.record_operation_result

    def check_operation_execution(
        workflow_id: str, function_id: int, function_name: str, *, owner_key: str | None = None
    ) -> dict[str, Any] | None:
        return look_up(workflow_id, function_id, function_name)

    def record_operation_result(
        result: Any,
        *,
        completed_at_epoch_ms: int | None = None,
        owner_xid: str | None = None,
        owner_key: str | None = None,
    ) -> None:
        if result["child_workflow_id"] is not None:
            dbos_record(
                result, completed_at_epoch_ms=completed_at_epoch_ms, owner_xid=owner_xid, owner_key=owner_key
            )
            return
        workflow_id = result["workflow_uuid"]
        row = StepRow(
            workflow_id=workflow_id,
            function_id=result["function_id"],
            function_name=result["function_name"],
            started_at_ms=result["started_at_epoch_ms"],
            # Fixed outside the retry: a retried commit is told apart from nondeterminism by it.
            completed_at_ms=(
                completed_at_epoch_ms if completed_at_epoch_ms is not None else int(time.time() * 1000)
            ),
            output=result["output"],
            error=result["error"],
            serialization=result["serialization"],
        )
        record(row, owner_xid if owner_xid is not None else _context.current_owner_xid(workflow_id))

    sys_db.check_operation_execution = check_operation_execution
    sys_db.record_operation_result = record_operation_result

    def undo() -> None:
        for name in ("check_operation_execution", "record_operation_result"):
            sys_db.__dict__.pop(name, None)
        recorder.close()

    return undo


@dataclass(frozen=True, kw_only=True)
class StepRowDefaults:
    """What the launched DBOS stamps on each step row, and where its tables are."""

    #: DBOS's application name (``application_name`` of each step row)
    app_name: str | None
    #: DBOS's own SQL for "now in ms" (``retention_timestamp``), rendered for its database
    now_sql: str
    #: the PostgreSQL schema of DBOS's tables (None on SQLite)
    schema: str | None


def step_row_defaults() -> StepRowDefaults:
    sys_db = system_database()
    now = sys_db._now_ms_sql().compile(dialect=sys_db.engine.dialect, compile_kwargs={"literal_binds": True})
    schema = None if sys_db.engine.dialect.name == "sqlite" else sys_db.schema
    return StepRowDefaults(app_name=sys_db.app_name, now_sql=str(now), schema=schema)
