"""Every use Shopfloor makes of DBOS's private internals, checked against the DBOS they were written for.

DBOS offers no public way to do seven things Shopfloor needs: run its step bookkeeping
on the event loop (``dbos._outcome`` calls ``asyncio.to_thread`` three times a step), record a run's
start there too (``dbos._core`` records it in a thread: ``_init_workflow``), take a plain
async step past the layers that wrap it (``lean_run_step_async``, and in front of it a
``DBOS.run_step_async`` that snapshots the step's context without ``DBOSContext()`` and points the
loop's default executor at DBOS's pool only where it points elsewhere), put
a lean recorder behind its step look-up and record (``SystemDatabase.check_operation_execution``
and ``record_operation_result``) and its record of a workflow's outcome
(``update_workflow_outcome``), stop the workflow tasks still running when a runtime closes
(``DBOS._workflow_tasks``) and hand a dead executor's run back to a queue
(``SystemDatabase.reenqueue_for_recovery``). Each is a private name that may change in any
release, so this is the only module that imports ``dbos._*`` (``tests/runtime/test_internals.py``
scans ``src/`` to keep it so), and ``check_dbos()`` runs before DBOS launches: it compares
the installed version with the one pinned here and the source of each internal with the
fingerprint taken of it, and refuses to start, naming what changed, rather than fall back
silently. After upgrading DBOS, read what changed in each named internal, adapt this module
and the step recorders (``_recorder*.py``), then update ``DBOS_VERSION`` and ``FINGERPRINTS``
(``fingerprints()`` gives the new ones).

Taking the fingerprints reads and parses the source (~0.1 s, at every start of an executor), so
a passed check is remembered in the data dir (``cache/dbos-check.json``) under the DBOS version
and the path, size and mtime of every module the internals live in: any change to those files,
or another DBOS, misses the cache and checks again. Only a pass is remembered.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import FunctionType
from typing import Any, Protocol, TypeVar

import dbos._context as _context
import dbos._core as _core
import dbos._dbos as _dbos
import dbos._logger as _logger
import dbos._outcome as _outcome
import dbos._schemas as _schemas
import dbos._serialization as _serialization
import dbos._sys_db as _sys_db
from dbos import error as dbos_error

from shopfloor._json import JsonText
from shopfloor.errors import DurableEngineError

__all__ = [
    "DBOS_VERSION",
    "FINGERPRINTS",
    "InPlaceAsyncio",
    "OffLoop",
    "Settle",
    "StepRecorder",
    "StepRow",
    "StepRowDefaults",
    "WorkflowStart",
    "check_dbos",
    "dbos_executor",
    "fingerprints",
    "inline_step_bookkeeping",
    "install_step_recorder",
    "lean_run_step_async",
    "reenqueue_for_recovery",
    "restore_step_bookkeeping",
    "serialize_output",
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
    yield "dbos._core.run_step_async", _core.run_step_async
    yield "dbos._core.normalize_step_options", _core.normalize_step_options
    yield "dbos._dbos.DBOS.run_step_async", _dbos.DBOS.run_step_async
    yield "dbos._dbos.DBOS._configure_asyncio_thread_pool", _dbos.DBOS._configure_asyncio_thread_pool
    yield "dbos._dbos.DBOS.logger", vars(_dbos.DBOS)["logger"].fget
    yield "dbos._dbos._SharedExecutor", _dbos._SharedExecutor
    yield "dbos._context.snapshot_step_context", _context.snapshot_step_context
    yield "dbos._context.DBOSContext.__init__", _context.DBOSContext.__init__
    yield "dbos._context.DBOSContext.create_child", _context.DBOSContext.create_child
    yield "dbos._context.DBOSContext.snapshot_step_ctx", _context.DBOSContext.snapshot_step_ctx
    yield "dbos._context.get_authentication", _context.get_authentication
    yield "dbos._dbos.StepReservation.run_async", _dbos.StepReservation.run_async
    yield "dbos._context.EnterDBOSStepCtx", _context.EnterDBOSStepCtx
    yield "dbos._context.assert_current_dbos_context", _context.assert_current_dbos_context
    yield "dbos._context.get_local_dbos_context", _context.get_local_dbos_context
    yield "dbos._context._set_local_dbos_context", _context._set_local_dbos_context
    yield "dbos._context._reset_context_var", _context._reset_context_var
    yield "dbos._context.DBOSContext.is_workflow", _context.DBOSContext.is_workflow
    yield "dbos._context.DBOSContext.is_step", _context.DBOSContext.is_step
    yield "dbos._context.DBOSContext.start_step", _context.DBOSContext.start_step
    yield "dbos._context.DBOSContext.end_step", _context.DBOSContext.end_step
    yield "dbos._serialization.serialize_value", _serialization.serialize_value
    yield "dbos._serialization.serialize_exception", _serialization.serialize_exception
    yield "dbos._serialization.deserialize_value", _serialization.deserialize_value
    yield "dbos._serialization.deserialize_exception", _serialization.deserialize_exception
    yield "dbos._serialization.serialize_value_as", _serialization.serialize_value_as
    yield "dbos._serialization.serialization_for_type", _serialization.serialization_for_type
    yield "dbos._serialization._portableify", _serialization._portableify
    yield "dbos._serialization.DBOSPortableJSONSerializer", _serialization.DBOSPortableJSONSerializer
    yield "dbos._core._get_wf_invoke_func", _core._get_wf_invoke_func
    yield "dbos._core._execute_workflow_async", _core._execute_workflow_async
    yield "dbos._dbos._get_dbos_instance", _dbos._get_dbos_instance
    yield "dbos._dbos.DBOS.__init__", _dbos.DBOS.__init__
    yield "dbos._dbos.DBOS._destroy", _dbos.DBOS._destroy
    yield "dbos._context.current_owner_xid", _context.current_owner_xid
    yield "dbos._sys_db.db_retry", _sys_db.db_retry
    yield "SystemDatabase.check_operation_execution", sys_db.check_operation_execution
    yield "SystemDatabase._check_operation_execution_txn", sys_db._check_operation_execution_txn
    yield "SystemDatabase.record_operation_result", sys_db.record_operation_result
    yield "SystemDatabase._record_operation_result_txn", sys_db._record_operation_result_txn
    yield "SystemDatabase._check_owner_txn", sys_db._check_owner_txn
    yield "SystemDatabase._now_ms_sql", sys_db._now_ms_sql
    yield "SystemDatabase.reenqueue_for_recovery", sys_db.reenqueue_for_recovery
    yield "SystemDatabase.update_workflow_outcome", sys_db.update_workflow_outcome
    yield "dbos._core.start_workflow_async", _core.start_workflow_async
    yield "dbos._core._init_workflow", _core._init_workflow
    yield "dbos._core._assemble_workflow_status", _core._assemble_workflow_status
    yield "SystemDatabase.init_workflow", sys_db.init_workflow
    yield "SystemDatabase._insert_workflow_status", sys_db._insert_workflow_status
    yield (
        "SystemDatabase._update_workflow_outcome_in_transaction",
        sys_db._update_workflow_outcome_in_transaction,
    )


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
    "dbos._core.run_step_async": "70fd4b1e1695b0e0",
    "dbos._core.normalize_step_options": "757c53bd024bf1ef",
    "dbos._dbos.DBOS.run_step_async": "622cb49a09a2bc7b",
    "dbos._dbos.DBOS._configure_asyncio_thread_pool": "882e8e7fc2ceabc1",
    "dbos._dbos.DBOS.logger": "289aeb380cd01155",
    "dbos._dbos._SharedExecutor": "e7019bc19ad2cae8",
    "dbos._context.snapshot_step_context": "899a5c0ff4c4ae90",
    "dbos._context.DBOSContext.__init__": "01e33d43e7182d16",
    "dbos._context.DBOSContext.create_child": "180e7e2d6f76aa64",
    "dbos._context.DBOSContext.snapshot_step_ctx": "4b6c56a71977c822",
    "dbos._context.get_authentication": "cb6283ded00eed4d",
    "dbos._dbos.StepReservation.run_async": "8c93b34e3e60abeb",
    "dbos._context.EnterDBOSStepCtx": "5ed1d63f1d56ba18",
    "dbos._context.assert_current_dbos_context": "1cd2d299d30938b1",
    "dbos._context.get_local_dbos_context": "3cc8d947bcb582a5",
    "dbos._context._set_local_dbos_context": "963432d4f11fe3f7",
    "dbos._context._reset_context_var": "8600b21dd9e32e2f",
    "dbos._context.DBOSContext.is_workflow": "9825376df88f3398",
    "dbos._context.DBOSContext.is_step": "71c6a8245464b1e6",
    "dbos._context.DBOSContext.start_step": "c6311d63adbcb6e2",
    "dbos._context.DBOSContext.end_step": "527a1bd163d569f6",
    "dbos._serialization.serialize_value": "6e2f8f55e9978ec8",
    "dbos._serialization.serialize_exception": "f17ad91902cc43ab",
    "dbos._serialization.deserialize_value": "f22490354f07510b",
    "dbos._serialization.deserialize_exception": "31e35f62f0d4f9e2",
    "dbos._serialization.serialize_value_as": "4a97d1012fdaa929",
    "dbos._serialization.serialization_for_type": "967174f3e01e0388",
    "dbos._serialization._portableify": "43f7be43a763961f",
    "dbos._serialization.DBOSPortableJSONSerializer": "592c5e2506a37781",
    "dbos._core._get_wf_invoke_func": "6d4ded69610f99a2",
    "dbos._core._execute_workflow_async": "ab534cdce293e4b2",
    "dbos._dbos._get_dbos_instance": "d1b6a79d190d7742",
    "dbos._dbos.DBOS.__init__": "64b496c49b09b5a1",
    "dbos._dbos.DBOS._destroy": "09e06f5ebe7bcf77",
    "dbos._context.current_owner_xid": "d736075a61a21c5a",
    "dbos._sys_db.db_retry": "c548d54a31c8ccbd",
    "SystemDatabase.check_operation_execution": "ab119f8c55582f82",
    "SystemDatabase._check_operation_execution_txn": "766d41e9fedd809e",
    "SystemDatabase.record_operation_result": "4c94546a403b202a",
    "SystemDatabase._record_operation_result_txn": "c3ddd7275cd9a49b",
    "SystemDatabase._check_owner_txn": "5cea51935d85ccd6",
    "SystemDatabase._now_ms_sql": "5c53016d81240b7a",
    "SystemDatabase.reenqueue_for_recovery": "ac0bc1c45d8c36e4",
    "SystemDatabase.update_workflow_outcome": "e3decc1f72f781ff",
    "SystemDatabase._update_workflow_outcome_in_transaction": "e555fad129a51d8b",
    "dbos._core.start_workflow_async": "f1e84289f43e54bf",
    "dbos._core._init_workflow": "135d7ae720f6791e",
    "dbos._core._assemble_workflow_status": "e5fe634941825405",
    "SystemDatabase.init_workflow": "20bdb64d798db776",
    "SystemDatabase._insert_workflow_status": "f09e61856122bfb9",
}


_MODULES = (_context, _core, _dbos, _outcome, _serialization, _sys_db)
_CHECK_FILE = "dbos-check.json"


def _check_key(installed: str) -> str:
    """What a remembered pass is valid for: this module's expectations, the DBOS version and the
    stat of every file the internals are in."""
    stats = []
    for module in _MODULES:
        path = os.path.realpath(str(module.__file__))
        info = os.stat(path)
        stats.append([path, info.st_size, info.st_mtime_ns])
    material = json.dumps([DBOS_VERSION, installed, FINGERPRINTS, stats], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def _remembered(cache_dir: Path, key: str) -> bool:
    try:
        return bool(json.loads((cache_dir / _CHECK_FILE).read_text()).get("passed") == key)
    except (OSError, ValueError, AttributeError):
        return False


def _remember(cache_dir: Path, key: str) -> None:
    # Written whole and renamed into place: a reader never sees half of it.
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        part = cache_dir / f".{_CHECK_FILE}.{os.getpid()}"
        part.write_text(json.dumps({"passed": key}))
        part.replace(cache_dir / _CHECK_FILE)
    except OSError as exc:  # a read-only data dir costs the check at every start, nothing more
        log.debug("cannot remember the DBOS check in %s: %s", cache_dir, exc)


def check_dbos(
    *, installed: str | None = None, found: dict[str, str] | None = None, cache_dir: Path | None = None
) -> None:
    """Refuse to start unless the installed DBOS is the version, and each internal the source,
    that this module was written for (``installed``/``found`` stand in for what is installed).
    With ``cache_dir`` a pass is remembered there, keyed by what could change it."""
    installed = installed if installed is not None else version("dbos")
    if installed != DBOS_VERSION:
        raise DurableEngineError(
            f"dbos {installed} is installed, but Shopfloor's runtime relies on internals of dbos "
            f"{DBOS_VERSION} (src/shopfloor/runtime/_dbos_internals.py): install dbos=={DBOS_VERSION}"
        )
    key = _check_key(installed) if cache_dir is not None and found is None else None
    if key is not None and cache_dir is not None and _remembered(cache_dir, key):
        return
    found = found if found is not None else fingerprints()
    changed = sorted(name for name, digest in FINGERPRINTS.items() if found.get(name) != digest)
    if changed:
        raise DurableEngineError(
            f"dbos {installed} differs from the release Shopfloor was written for in "
            f"{', '.join(changed)}: reinstall dbos=={DBOS_VERSION} (a patched copy is installed), or "
            "adapt src/shopfloor/runtime/_dbos_internals.py to the change and update its FINGERPRINTS"
        )
    if key is not None and cache_dir is not None:
        _remember(cache_dir, key)


# Step bookkeeping on the event loop ---------------------------------------------------------
# DBOS 3.4 wraps an async step in three ``asyncio.to_thread`` hops (``Pending._intercept`` looks
# up a recorded result, ``Pending._wrap`` runs a stage that does nothing, then records the
# result). On 2-core VMs a hop costs ~0.3 ms, more than the SQLite work it carries, and SQLite
# admits one writer at a time, so the threads buy a worker's concurrent runs nothing. So on
# SQLite DBOS's outcome module sees an ``asyncio`` whose ``to_thread`` calls the function in
# place, through the lean recorder's ``settle``: a step's record is inserted in a group commit shared with
# the other runs of the worker, whose COMMIT a writer thread makes while the loop goes on (the run's next
# step waits for it: ``Runtime.confirm_steps``). DBOS's record of a workflow's end
# (``_get_wf_invoke_func``'s ``persist``, recognised by name) goes to the recorder's ``off_loop`` instead:
# the SQLite recorder makes it on the loop too, its ``update_workflow_outcome`` in the next group commit,
# and makes it again in a thread, as DBOS does, only where that record did not land (``persist`` then
# returns the outcome another execution records, as a result DBOS 3.4 waits for on the loop, not in the
# thread). DBOS's other writes there (a durable sleep, a recv) still commit on the loop.
# Heartbeats beat from their own thread, so a waiting loop never looks like a dead executor.
# PostgreSQL keeps DBOS's threads: there concurrent round trips overlap.


#: ``settle(call)``: run DBOS's bookkeeping ``call`` in place and return its result once what it
#: recorded is inserted in the SQLite recorder's group commit (``_recorder_sqlite.py``; committed by the
#: time the run's next step starts)
Settle = Callable[[Callable[[], Any]], Awaitable[Any]]


#: ``off_loop(call)``: make DBOS's record of a workflow's end (``call``) where the recorder makes it: in a
#: thread (its own commit), or on the loop in the order of its commits (the SQLite recorder)
OffLoop = Callable[[Callable[[], Any]], Awaitable[Any]]
#: ``start_here(workflow_id, call)``: run DBOS's record of a workflow's start (``call``: its
#: ``_init_workflow``) on the event loop and return its result once what it recorded is committed; None
#: where it takes DBOS's thread instead (the SQLite recorder, ``_recorder_sqlite.py``)
StartHere = Callable[[str, Callable[[], Any]], Awaitable[Any] | None]
#: What DBOS hands ``to_thread`` to record an async workflow's end (``_core._get_wf_invoke_func``):
#: its ``update_workflow_outcome`` goes to the recorder (``install_step_recorder``), the rest is DBOS's.
_WORKFLOW_END = "_get_wf_invoke_func.<locals>.persist"


class InPlaceAsyncio:
    """The asyncio module, except that ``to_thread`` runs the function on the calling thread
    (through ``settle`` when given: there a step's record may wait for its group commit), but
    for the record of a workflow's end, which goes through ``off_loop`` when given (its record may not
    land, and is then made again as DBOS makes it: ``SQLiteStepRecorder.off_loop``)."""

    def __init__(self, settle: Settle | None = None, off_loop: OffLoop | None = None) -> None:
        self._settle = settle
        self._off_loop = off_loop

    async def to_thread(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._off_loop is not None and getattr(func, "__qualname__", None) == _WORKFLOW_END:
            ended: T = await self._off_loop(functools.partial(func, *args, **kwargs))
            return ended
        if self._settle is None:
            return func(*args, **kwargs)
        result: T = await self._settle(functools.partial(func, *args, **kwargs))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


class InPlaceStart:
    """The asyncio module, except that ``to_thread`` offers DBOS's record of a workflow's start made
    outside a workflow (``_init_workflow``, in a thread in DBOS) to ``start_here`` first: where that
    takes it, it is recorded on the event loop, without a thread hop (~90 Python calls on the loop's
    thread for the hop alone, and the start's own work under the GIL beside it)."""

    def __init__(self, start_here: StartHere) -> None:
        self._start_here = start_here

    async def to_thread(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if func is _core._init_workflow and not args[1].has_parent():
            # ``start_workflow_async`` passes (dbos, the new workflow's context): its id is assigned
            here = self._start_here(
                args[1].id_assigned_for_next_workflow, functools.partial(func, *args, **kwargs)
            )
            if here is not None:
                started: T = await here
                return started
        return await asyncio.to_thread(func, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def inline_step_bookkeeping(
    settle: Settle | None = None,
    off_loop: OffLoop | None = None,
    *,
    lean_steps: bool = True,
    start_here: StartHere | None = None,
) -> None:
    """Run DBOS's step bookkeeping on the calling thread (``check_dbos`` vouched for the module),
    through ``settle`` when given; the record of a workflow's end through ``off_loop`` when given,
    and that of a workflow's start through ``start_here`` when given (``InPlaceStart``).
    With ``settle`` and ``lean_steps`` a plain async step takes ``lean_run_step_async`` (the same
    rows and outcomes, without DBOS's outcome layers); ``lean_steps=False`` keeps DBOS's layers."""
    setattr(_outcome, "asyncio", InPlaceAsyncio(settle, off_loop))  # noqa: B010 - a private name, on purpose
    starts: Any = asyncio if start_here is None else InPlaceStart(start_here)
    setattr(_core, "asyncio", starts)  # noqa: B010 - a private name, on purpose
    steps: Any = _core.run_step_async
    entry: Any = _DBOS_RUN_STEP_ASYNC
    if settle is not None and lean_steps:
        steps = functools.partial(lean_run_step_async, settle)
        entry = classmethod(_lean_dbos_run_step_async(dict(vars(_context.DBOSContext())), steps))
    setattr(_dbos, "run_step_async", steps)  # noqa: B010 - what ``DBOS.run_step_async`` calls
    setattr(_dbos.DBOS, "run_step_async", entry)  # noqa: B010 - ``DBOS.run_step_async`` itself


def restore_step_bookkeeping() -> None:
    if isinstance(getattr(_outcome, "asyncio", None), InPlaceAsyncio):
        setattr(_outcome, "asyncio", asyncio)  # noqa: B010
    if isinstance(getattr(_core, "asyncio", None), InPlaceStart):
        setattr(_core, "asyncio", asyncio)  # noqa: B010
    setattr(_dbos, "run_step_async", _core.run_step_async)  # noqa: B010
    setattr(_dbos.DBOS, "run_step_async", _DBOS_RUN_STEP_ASYNC)  # noqa: B010


#: DBOS's own ``DBOS.run_step_async`` (the classmethod), put back by ``restore_step_bookkeeping``
_DBOS_RUN_STEP_ASYNC = vars(_dbos.DBOS)["run_step_async"]


def _lean_dbos_run_step_async(
    blank: dict[str, Any], steps: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """``DBOS.run_step_async`` in front of the lean step path (``steps``, what it calls as
    ``_dbos.run_step_async``): the step's context made from ``blank``
    (``_snapshot_step_context``), and the loop's default executor pointed at DBOS's pool only where it
    points elsewhere (DBOS's ``_configure_asyncio_thread_pool`` sets it before every step, ~6 Python
    calls; setting it again to what it is changes nothing). ``_default_executor`` is the loop's own
    field (CPython's ``BaseEventLoop``, all ``set_default_executor`` sets); a loop without it is
    configured before every step, as DBOS does."""

    async def run_step_async(
        cls: Any, dbos_step_options: Any, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "run_step_async() was called while an event loop is not running. Use run_step(...) instead."
            ) from None
        step_ctx = _snapshot_step_context(blank)
        dbos = _dbos._get_dbos_instance()
        shared = dbos._shared_executor_field
        if (
            shared is None
            or shared.executor is not dbos._executor_field
            or getattr(loop, "_default_executor", None) is not shared
        ):
            await cls._configure_asyncio_thread_pool()
        return await steps(dbos, step_ctx, func, dbos_step_options or {}, args, kwargs)

    return run_step_async


def _snapshot_step_context(blank: dict[str, Any]) -> Any:
    """``snapshot_step_context(reserve_sleep_id=False)``: in a workflow (not in a step) its
    ``snapshot_step_ctx()``, the step's child context, with the same fields in the same order, made
    from ``blank`` (the fields of a new ``DBOSContext``, each of which ``DBOSContext()`` sets to a
    constant or this sets again) rather than through ``DBOSContext()`` (which reads the environment),
    ``create_child`` and ``get_authentication``: ~19 Python calls a step down to ~4."""
    ctx = _context._dbos_context_var.get()
    if ctx is None or len(ctx.workflow_id) == 0 or ctx.curr_step_function_id >= 0:
        return ctx  # no context, or one that is not a workflow's: DBOS hands it over as it is
    # ``get_authentication(ctx)``: ``ctx`` is the current context, so its identity scope counts
    scope = _context._auth_scope_var.get()
    roles = ctx.authenticated_roles if scope is None else scope.roles
    parent_fid = ctx.function_id
    ctx.function_id = parent_fid + 1
    step_ctx = object.__new__(_context.DBOSContext)
    step_ctx.__dict__ = {
        **blank,
        "used_datasources": [],
        "context_spans": [],
        # ``create_child(is_for_workflow=False)``
        "logger": ctx.logger,
        "parent_workflow_id": ctx.workflow_id,
        "parent_workflow_fid": parent_fid,
        "authenticated_user": ctx.authenticated_user if scope is None else scope.user,
        "authenticated_roles": None if roles is None else roles[:],
        "assumed_role": ctx.assumed_role,
        "serialization_type": ctx.serialization_type,
        # ``snapshot_step_ctx``
        "executor_id": ctx.executor_id,
        "app_id": ctx.app_id,
        "workflow_id": ctx.workflow_id,
        "shard_key": ctx.shard_key,
        "owner_xid": ctx.owner_xid,
        "workflow_deadline_epoch_ms": ctx.workflow_deadline_epoch_ms,
        "function_id": ctx.function_id,
    }
    return step_ctx


# The lean step path ---------------------------------------------------------------------------
# An async step of DBOS 3.4 goes through four ``Pending`` layers (``invoke_step``: the step context,
# the look-up, the record, the body), each a coroutine and closures, with three ``to_thread`` calls
# (in place here: through ``settle``) and two re-configurations of the loop's thread pool, ~100 Python
# calls a step on the loop's one thread. ``lean_run_step_async`` does what those layers do for a plain
# async step (no retries, no preemption, no timeout), in the same order and with the same calls into
# DBOS's system database (the recorder behind it): enter the step context, look the step up (a recorded
# step is returned, or its recorded error raised, and never run again), run the body, record its output
# or its error through ``settle`` (raising what the record raised: fenced off, nondeterminism) and
# return. A record that fails is followed, as ``Pending._wrap`` follows it, by a record of that failure
# as the step's error (which the owner check or the existing row refuses in turn), and a cancelled task
# is logged as DBOS logs it and not recorded. Any other step takes DBOS's own path.


async def lean_run_step_async(
    settle: Settle,
    dbos: Any,
    step_ctx: Any,
    func: Callable[..., Any],
    options: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``dbos._core.run_step_async`` (the same arguments after ``settle``), for a plain async step
    of a workflow without DBOS's outcome layers; every other call is handed to it."""
    options = _core.normalize_step_options(options)
    if (
        step_ctx is None
        # ``not step_ctx.is_workflow()``, read off the fields it reads (three calls a step)
        or len(step_ctx.workflow_id) == 0
        or step_ctx.curr_step_function_id >= 0
        or options["retries_allowed"]
        or options["preemptible"]
        or options["timeout_seconds"] is not None
        or not _is_coroutine_function(func)
    ):
        return await _core.run_step_async(dbos, step_ctx, func, options, args, kwargs)
    step_name = options["name"] or func.__qualname__
    started_at_ms = int(time.time() * 1000)
    entered = _enter_step(step_ctx, {"name": step_name, "operationType": "step"})
    # ``DBOS.logger``: DBOS's one logger, read without its class property (two calls a step)
    logger = _logger.dbos_logger
    try:
        sys_db = dbos._sys_db
        # ``step_ctx`` is the current DBOS context from here on (what ``assert_current_dbos_context``
        # would return: ``_enter_step`` made it so, and nothing here changes it; ``settle`` calls the
        # record in place).
        recorded = sys_db.check_operation_execution(step_ctx.workflow_id, step_ctx.function_id, step_name)
        if recorded:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(f"Replaying step, id: {step_ctx.function_id}, name: {step_name}")
            if recorded["error"] is not None:
                raise _serialization.deserialize_exception(
                    recorded["error"], recorded["serialization"], dbos._serializer
                )
            if recorded["output"] is None:
                raise Exception("Output and error are both None")
            value = _serialization.deserialize_value(
                recorded["output"], recorded["serialization"], dbos._serializer
            )
        else:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(f"Running step, id: {step_ctx.function_id}, name: {step_name}")
            record = functools.partial(
                _record_step, dbos._serializer, sys_db, step_ctx, step_name, started_at_ms
            )
            try:
                value = await settle(functools.partial(record, await func(*args, **kwargs), None))
            except asyncio.CancelledError:
                logging.getLogger("dbos").warning(f"Asyncio task cancelled for workflow or step {func}")
                raise
            except BaseException as exc:
                value = await settle(functools.partial(record, None, exc))
    except BaseException as exc:
        _exit_step(entered, exc)
        raise
    _exit_step(entered, None)
    return value


# ``EnterDBOSStepCtx`` as ``lean_run_step_async`` enters and leaves it: the same context variables set
# and reset in the same order, the same step start and end on the step's context, the same assertions;
# without its object, its look-ups through ``get_local_dbos_context`` and ``is_workflow``/``is_step``
# calls (read off the fields those methods read), ~28 Python calls a step down to ~12.
# ``check_dbos`` pins the source of each name this relies on.
_Entered = tuple[Any, Any, Any, Any, Any]


def _enter_step(step_ctx: Any, attributes: dict[str, Any]) -> _Entered:
    """``EnterDBOSStepCtx(attributes, step_ctx).__enter__()``: what its ``__exit__`` needs back."""
    ctx = _context._dbos_context_var.get()
    assert ctx, "No DBOS context found"
    assert len(ctx.workflow_id) > 0 and ctx.curr_step_function_id < 0  # ``ctx.is_workflow()``
    _context._dbos_context_var.set(step_ctx)
    saved_auth = _context._auth_scope_var.get()
    auth_token = _context._auth_scope_var.set(None)
    saved_start_options = _context._workflow_start_options_var.get()
    start_options_token = _context._workflow_start_options_var.set(_context._NO_START_OPTIONS)
    step_ctx.start_step(step_ctx.function_id, attributes=attributes)
    return ctx, auth_token, saved_auth, start_options_token, saved_start_options


def _exit_step(entered: _Entered, exc_value: BaseException | None) -> None:
    """``EnterDBOSStepCtx.__exit__``: end the step on the current context and restore the workflow's."""
    prev_ctx, auth_token, saved_auth, start_options_token, saved_start_options = entered
    ctx = _context._dbos_context_var.get()
    assert ctx, "No DBOS context found"
    assert ctx.curr_step_function_id >= 0  # ``ctx.is_step()``
    ctx.end_step(exc_value)
    _context._dbos_context_var.set(prev_ctx)
    # ``_reset_context_var``: set back where the step left in another context than it entered
    try:
        _context._auth_scope_var.reset(auth_token)
    except ValueError:
        _context._auth_scope_var.set(saved_auth)
    try:
        _context._workflow_start_options_var.reset(start_options_token)
    except ValueError:
        _context._workflow_start_options_var.set(saved_start_options)


def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, read off a plain function's code flags first (the step bodies
    the loop passes: its walk through ``functools.partial`` and methods was ~10 calls a step)."""
    return bool(
        (type(func) is FunctionType and func.__code__.co_flags & inspect.CO_COROUTINE)
        or inspect.iscoroutinefunction(func)
    )


#: ``DBOSPortableJSONSerializer.serialize``'s ``json.dumps``, as an encoder made once
_PORTABLE_JSON = JsonText(ensure_ascii=False, separators=(",", ":"))
#: ``json.loads`` of what ``_PORTABLE_JSON`` wrote, without its checks for a BOM, whitespace and text
#: after the value, none of which that text holds (``json.loads`` was ~10 Python calls, this is two)
_READ_BACK = json.JSONDecoder().raw_decode


def serialize_output(value: Any, serializer: Any) -> tuple[str | None, str]:
    """``_serialization.serialize_value(value, None, serializer)``: the same text and format name.

    With DBOS's portable JSON serializer (Shopfloor's), a value JSON writes as it is is written
    directly: ``_portableify`` (a Python call and a few ``isinstance`` for every node of a step's
    output, ~90 calls a step) only makes a copy that ``json.dumps`` writes the same, as lists for
    tuples and dicts for mappings. What it would do otherwise (turn a date, a set, a ``Decimal`` into
    text; refuse a key that is not a string, which ``json`` would write as one) is left to it: a value
    whose text does not read back equal to it (a tuple, a number key) or that ``json`` cannot write
    takes DBOS's own path."""
    if type(serializer) is _serialization.DBOSPortableJSONSerializer:
        try:
            text = _PORTABLE_JSON.encode(value)
            if _READ_BACK(text)[0] == value:
                return text, serializer.name()
        except (TypeError, ValueError, RecursionError):
            pass
    output: tuple[str | None, str] = _serialization.serialize_value(value, None, serializer)
    return output


def _record_step(
    serializer: Any,
    sys_db: Any,
    ctx: Any,
    step_name: str,
    started_at_ms: int,
    value: Any,
    error: BaseException | None,
) -> Any:
    """``invoke_step``'s ``record_step_result``: record the step's output, or ``error`` as its error
    (re-raised once recorded); a cancel (preemption) and what is not an ``Exception`` go unrecorded.
    ``ctx``: the step's context, the current one (``assert_current_dbos_context``)."""
    row: Any = {
        "workflow_uuid": ctx.workflow_id,
        "function_id": ctx.function_id,
        "function_name": step_name,
        "output": None,
        "error": None,
        "serialization": None,
        "started_at_epoch_ms": started_at_ms,
        "child_workflow_id": None,
    }
    if error is None:
        row["output"], row["serialization"] = serialize_output(value, serializer)
        sys_db.record_operation_result(row)
        return value
    if isinstance(error, Exception) and not isinstance(error, dbos_error.DBOSWorkflowCancelledError):
        row["error"], row["serialization"] = _serialization.serialize_exception(error, None, serializer)
        sys_db.record_operation_result(row)
    raise error


# The launched DBOS ----------------------------------------------------------------------------


def system_database() -> Any:
    """The launched DBOS's ``SystemDatabase``."""
    return _dbos._get_dbos_instance()._sys_db


def dbos_executor() -> ThreadPoolExecutor | None:
    """The launched DBOS's own thread pool (``DBOS._executor_field``, made at launch), where its
    ``to_thread`` work runs: a workflow's record of its end among it. ``DBOS.destroy`` shuts it down
    without waiting, so a record still being written goes on after the runtime closed (and, with its
    database gone, retries for ever in a thread that keeps the process from exiting)."""
    executor: ThreadPoolExecutor | None = _dbos._get_dbos_instance()._executor_field
    return executor


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

    def look_up(
        self, workflow_id: str, function_id: int, function_name: str, owner_xid: str | None = None
    ) -> dict[str, Any] | None: ...

    def record(self, row: StepRow, owner_xid: str | None) -> None: ...

    def record_outcome(
        self, workflow_id: str, status: str, output: str | None, error: str | None, owner_xid: str | None
    ) -> bool | None:
        """DBOS's ``update_workflow_outcome``: whether the outcome landed, or None where DBOS's own
        path is to write it."""

    def record_start(self, start: WorkflowStart) -> tuple[Any, ...] | None:
        """DBOS's ``init_workflow``: the status row's RETURNING row (status, name, class_name,
        config_name, queue_name, creator_xid, serialization), or None where DBOS's own path is to
        write it."""

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class WorkflowStart:
    """DBOS's two statements for a workflow's start (``_insert_workflow_status``), compiled by
    DBOS's own engine for its database, and the values bound to them (through each column's bind
    processor): the status row's upsert, and the inputs' insert, which goes in only where the row
    came back with the names this start expects (``expected``: name, class_name, config_name), and the
    row the upsert returns where it inserts (``fresh``: no workflow of that id existed)."""

    workflow_id: str
    status_sql: str
    status_params: tuple[Any, ...]
    input_sql: str
    input_params: tuple[Any, ...]
    expected: tuple[Any, ...]
    fresh: tuple[Any, ...]


def install_step_recorder(recorder: StepRecorder) -> Callable[[], None]:
    """Put ``recorder`` behind the launched DBOS's step look-up and record, and its record of a
    workflow's outcome (``update_workflow_outcome``, where the recorder takes it); returns the undo.

    DBOS's retry (``db_retry``: SQLite's "database is locked", lost PostgreSQL connections)
    wraps them, as it wraps its own. A record of a child workflow's result keeps DBOS's own
    path (it resolves the child's shard key); Shopfloor's runs start no child workflows.
    """
    sys_db = system_database()
    retry = _sys_db.db_retry(sys_db=sys_db)
    look_up, record = retry(recorder.look_up), retry(recorder.record)
    record_outcome, record_start = retry(recorder.record_outcome), retry(recorder.record_start)
    dbos_record = sys_db.record_operation_result
    dbos_outcome = sys_db.update_workflow_outcome
    dbos_init = sys_db.init_workflow
    compiled: dict[tuple[str, ...], _Compiled] = {}

    def check_operation_execution(
        workflow_id: str, function_id: int, function_name: str, *, owner_key: str | None = None
    ) -> dict[str, Any] | None:
        # The calling execution's token (None outside the workflow's own execution).
        return look_up(workflow_id, function_id, function_name, _context.current_owner_xid(workflow_id))

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

    def update_workflow_outcome(
        workflow_id: str,
        status: str,
        *,
        output: str | None = None,
        error: str | None = None,
        owner_xid: str | None = None,
    ) -> bool:
        # DBOS's default owner: the calling execution's token (None outside it: unchecked).
        owner = owner_xid if owner_xid is not None else _context.current_owner_xid(workflow_id)
        landed = record_outcome(workflow_id, status, output, error, owner)
        if landed is None:
            return bool(dbos_outcome(workflow_id, status, output=output, error=error, owner_xid=owner_xid))
        return bool(landed)

    def init_workflow(
        status: Any, *, creator_xid: str | None, reuse_policy: str | None = None
    ) -> tuple[str, bool]:
        # A deduplicated or reuse-checked start (and any on PostgreSQL) keeps DBOS's own path.
        row = None
        if reuse_policy is None and status["deduplication_id"] is None and sys_db._is_sqlite:
            row = record_start(_workflow_start(sys_db, compiled, status, creator_xid))
        if row is None:
            started: tuple[str, bool] = dbos_init(status, creator_xid=creator_xid, reuse_policy=reuse_policy)
            return started
        return _started(status, row, creator_xid)

    sys_db.check_operation_execution = check_operation_execution
    sys_db.record_operation_result = record_operation_result
    sys_db.update_workflow_outcome = update_workflow_outcome
    sys_db.init_workflow = init_workflow

    def undo() -> None:
        names = (
            "check_operation_execution",
            "record_operation_result",
            "update_workflow_outcome",
            "init_workflow",
        )
        for name in names:
            sys_db.__dict__.pop(name, None)
        recorder.close()

    return undo


@dataclass(frozen=True)
class _Compiled:
    """One of DBOS's statements compiled for its engine: the SQL (positional parameters), its
    parameters' names in order, and the bind processor of each parameter whose type has one (by
    position)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        # The values picked in C: a generator over the parameters was ~30 Python calls a start.
        picked = [values[name] for name in self.names]
        for index, process in self.processors:
            picked[index] = process(picked[index])
        return tuple(picked)


def _compile(sys_db: Any, statement: Any, keys: list[str]) -> _Compiled:
    dialect = sys_db.engine.dialect
    done = statement.compile(
        dialect=dialect,
        column_keys=keys,
        # as ``SystemDatabase._execute_prepared`` renders DBOS's tables (no schema on SQLite)
        schema_translate_map={_schemas.SCHEMA_PLACEHOLDER: sys_db.schema},
        render_schema_translate=True,
    )
    names = tuple(done.positiontup)
    processors = tuple(
        (index, process)
        for index, name in enumerate(names)
        if (process := done.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    return _Compiled(sql=str(done), names=names, processors=processors)


def _workflow_start(
    sys_db: Any, compiled: dict[tuple[str, ...], _Compiled], status: Any, creator_xid: str | None
) -> WorkflowStart:
    """``_insert_workflow_status``'s statements and values, for a start without deduplication or a
    reuse policy on SQLite (no shard keys: ``_wf_values`` and ``_parent_values`` add nothing)."""
    wf_status = status["status"]
    enqueued = (_sys_db.WorkflowStatusString.ENQUEUED.value, _sys_db.WorkflowStatusString.DELAYED.value)
    values = dict(
        workflow_uuid=status["workflow_uuid"],
        status=wf_status,
        name=status["name"],
        class_name=status["class_name"],
        config_name=status["config_name"],
        executor_id=status["executor_id"],
        application_version=status["app_version"],
        application_id=status["app_id"],
        authenticated_user=status["authenticated_user"],
        authenticated_roles=status["authenticated_roles"],
        assumed_role=status["assumed_role"],
        queue_name=status["queue_name"],
        recovery_attempts=(1 if wf_status not in enqueued else 0),
        workflow_timeout_ms=status["workflow_timeout_ms"],
        workflow_deadline_epoch_ms=status["workflow_deadline_epoch_ms"],
        deduplication_id=status["deduplication_id"],
        priority=status["priority"],
        serialization=status["serialization"],
        queue_partition_key=status["queue_partition_key"],
        parent_workflow_id=status["parent_workflow_id"],
        creator_xid=creator_xid,
        owner_xid=(creator_xid if wf_status == _sys_db.WorkflowStatusString.PENDING.value else None),
        delay_until_epoch_ms=status["delay_until_epoch_ms"],
        attributes=status["attributes"],
        schedule_name=status["schedule_name"],
        debounce_deadline_epoch_ms=status["debounce_deadline_epoch_ms"],
        is_debounced=status["is_debounced"],
        application_name=status["application_name"],
    )
    inputs = {"workflow_uuid": status["workflow_uuid"], "inputs": status["inputs"]}
    key = tuple(values)
    status_insert = compiled.get(key)
    if status_insert is None:
        ws = sys_db.tables.workflow_status
        statement = (
            sys_db.dialect.insert(ws)
            .on_conflict_do_update(index_elements=["workflow_uuid"], set_={"creator_xid": ws.c.creator_xid})
            .returning(
                ws.c.status,
                ws.c.name,
                ws.c.class_name,
                ws.c.config_name,
                ws.c.queue_name,
                ws.c.creator_xid,
                ws.c.serialization,
            )
        )
        status_insert = compiled[key] = _compile(sys_db, statement, list(values))
    input_insert = compiled.get(("inputs",))
    if input_insert is None:
        statement = sys_db.dialect.insert(sys_db.tables.workflow_input).on_conflict_do_nothing(
            index_elements=["workflow_uuid"]
        )
        input_insert = compiled[("inputs",)] = _compile(sys_db, statement, list(inputs))
    return WorkflowStart(
        workflow_id=status["workflow_uuid"],
        status_sql=status_insert.sql,
        status_params=status_insert.params(values),
        input_sql=input_insert.sql,
        input_params=input_insert.params(inputs),
        expected=(status["name"], status["class_name"], status["config_name"]),
        fresh=(
            wf_status,
            status["name"],
            status["class_name"],
            status["config_name"],
            status["queue_name"],
            creator_xid,
            status["serialization"],
        ),
    )


def _started(status: Any, row: tuple[Any, ...], creator_xid: str | None) -> tuple[str, bool]:
    """``_insert_workflow_status``'s checks of the row its upsert returned."""
    found_status, name, class_name, config_name, queue_name, found_creator, serialization = row
    workflow_id = status["workflow_uuid"]
    message: str | None = None
    if name != status["name"]:
        message = (
            f"Workflow already exists with a different function name: {name}, "
            f"but the provided function name is: {status['name']}"
        )
    elif class_name != status["class_name"]:
        message = (
            f"Workflow already exists with a different class name: {class_name}, "
            f"but the provided class name is: {status['class_name']}"
        )
    elif config_name != status["config_name"]:
        message = (
            f"Workflow already exists with a different config name: {config_name}, "
            f"but the provided config name is: {status['config_name']}"
        )
    elif queue_name != status["queue_name"]:
        _logger.dbos_logger.warning(
            f"Workflow already exists in queue: {queue_name}, but the provided queue name is: "
            f"{status['queue_name']}. The queue is not updated."
        )
    if message is not None:
        raise dbos_error.DBOSConflictingWorkflowError(workflow_id, message)
    status["serialization"] = serialization
    return found_status, creator_xid == found_creator


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
