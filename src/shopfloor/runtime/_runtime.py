"""The Python API of durable runs: start, follow, wait, approve, reject, cancel, list, inspect.

A ``Runtime`` is a client of the run store and of DBOS's system database (through
``DBOSClient``: enqueue, send, cancel, read recorded steps), and becomes an
executor (DBOS launched in this process, on this event loop) when it runs a run
itself (``start_run(detach=False)``) or serves as a worker (``serve``). DBOS is
one per process, so so is an executing Runtime.

It takes everything from the ``Services`` it is given (``compose(settings)``): its database's
engine (shared with the other stores of the process), the registries, and the telemetry that
every run it executes is traced to (``telemetry``: the one active where it started executing,
else the services' own). It finds its workflows through ``EXECUTORS`` (``_workflow.py``).

Concurrent-run limits (``concurrent_runs`` of ``[[security.limits]]``, per key, team, agent or route)
are held through the ``Admission`` seam: ``start_run`` takes a slot for the run before its record
exists (a refused run leaves nothing behind), and every place that records a run's end gives it back
(the workflow's end, a cancel, the sweep that settles runs cancelled while their executor was dead, a
recovered run found already ended); giving back is idempotent, so an end seen twice frees one slot.
A slot is leased to the process that owns the run and renewed by it: the starting process until the
run is queued (``queue_run``, just before the enqueue), then the executor from the workflow's first
step (``resume_run``, which a recovery replays: the recovered run takes its slots back), so the slots
of a process killed with -9 come back after ``[security] slot_lease_seconds``.
The same budgets admit each model call of the runs executed here (requests, tokens and spend per
agent, team and route: ``AgentLoop``), so processes sharing counters (Redis, or ``shared-database``)
enforce one limit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from dbos import DBOS, DBOSClient, EnqueueOptions, SetWorkflowID, WorkflowHandleAsync

from shopfloor.config import Settings
from shopfloor.errors import (
    AgentNotFoundError,
    ConfigError,
    ForkStepError,
    ProposalEditError,
    ReleaseError,
    RunStateError,
    ShopfloorError,
)
from shopfloor.runtime._dbos_internals import (
    check_dbos,
    dbos_executor,
    inline_step_bookkeeping,
    install_step_recorder,
    restore_step_bookkeeping,
    step_row_defaults,
    workflow_tasks,
)
from shopfloor.runtime._events import EventLog, StoredEvent, follow_events
from shopfloor.runtime._executor import (
    APP_VERSION,
    CHILD_QUEUE,
    RECOVERY_QUEUE,
    RUN_QUEUE,
    Supervisor,
    client_kwargs,
    configure_dbos_logging,
    dbos_config,
    new_executor_id,
)
from shopfloor.runtime._gc import GCTuning
from shopfloor.runtime._launched import LaunchedRun
from shopfloor.runtime._recorder import LeanRecorder, open_recorder
from shopfloor.runtime._runner import approval_topic
from shopfloor.runtime._services import RoutedRun, Services
from shopfloor.runtime._signals import RunSignals, until
from shopfloor.runtime._steps import RecordedStep, recorded_steps_from
from shopfloor.runtime._store import RunRecord, RunStore
from shopfloor.runtime._threads import Threads
from shopfloor.runtime._workflow import (
    CHILD_WORKFLOW_NAME,
    EXECUTORS,
    HANDED,
    WORKFLOW_NAME,
    Handoff,
    run_workflow,
)
from shopfloor.security import LOCAL_ADMIN as ADMIN
from shopfloor.security import (
    Admission,
    Budgets,
    Governance,
    Principal,
    UsageRequest,
    approval_resource,
    build_budgets,
    build_governance,
    limits_from_settings,
)
from shopfloor.spec import LoadedSpec
from shopfloor.telemetry import Telemetry, current_telemetry
from shopfloor.tools import check_edit

__all__ = ["LOCAL_ADMIN", "LaunchedRun", "Runtime"]

#: How long closing waits for DBOS's pool to finish what it is writing (a run's record of its end; a
#: blocking step of a cancelled run may take longer, and is left to finish on its own).
_DRAIN_SECONDS = 10.0
#: what ``uuid4().hex`` gives: the only run ids a caller may choose
_RUN_ID = re.compile(r"[0-9a-f]{32}")
#: How a decision by the local administrator is recorded (a run whose spec lists no approvers).
LOCAL_ADMIN = "local-admin"


class Runtime:
    def __init__(
        self,
        services: Services,
        *,
        caller: str | None = None,
        uid: int | None = None,
        governance: Governance | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.services = services
        #: authorisation, approval policy and audit log (built from the settings at first use)
        self._governance = governance
        self._owns_governance = governance is None
        #: holds concurrent-run slots (built from the settings at first use where they limit runs)
        self._admission = admission
        self._owns_admission = admission is None
        self._budgets: Budgets | None = None  # the budgets it built itself (and closes)
        self.settings = settings = services.settings
        #: where its own budgets' limits come from (``use_limits``: a server's reloaded GitOps policy)
        self._limits_from = settings
        settings.ensure_home()
        self.store = RunStore(services.engines.get(settings.db_url), owns_engine=False)
        self.event_log = EventLog(
            self.store, interval=min(0.1, settings.runtime.poll_interval), write=self._append_events
        )
        #: blocking calls of this runtime's own on the loop's behalf (``to_thread`` at less cost)
        self.threads = Threads("shopfloor-runtime")
        #: wakes ``wait`` and ``events`` readers when this process writes a run's record or events
        self.signals = RunSignals()
        self.caller = caller or getpass.getuser()
        #: the OS user deciding approvals (local CLI mode has no other identity yet)
        self.uid = os.geteuid() if uid is None else uid
        self.executor_id: str | None = None
        self.supervisor: Supervisor | None = None
        #: whether this process dequeues runs (a worker): then child runs go to ``CHILD_QUEUE``
        self.dequeues = False
        self._client: DBOSClient | None = None
        self._client_lock = threading.Lock()
        #: the lean step recorder behind DBOS, and what takes it out again
        self._recorder: LeanRecorder | None = None
        self._uninstall_recorder: Callable[[], None] | None = None
        #: where the runs executed here are traced (None: nowhere); set when it starts executing
        self.telemetry: Telemetry | None = None
        self._leave: Callable[[], None] | None = None
        #: the garbage collector's settings while this process executes runs (``start_executor``)
        self._gc = GCTuning(settings.runtime.gc_threshold, freeze=settings.runtime.gc_freeze)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    # lifecycle -------------------------------------------------------------------------------
    async def start_executor(
        self, *, worker: bool = False, concurrency: int | None = None, executor_id: str | None = None
    ) -> str:
        """Launch DBOS in this process; a worker also dequeues runs and recovers those of dead executors."""
        if self.executor_id is not None:
            return self.executor_id
        role = "worker" if worker else "cli"
        executor_id = executor_id or new_executor_id(role)
        supervisor = Supervisor(
            self.store,
            self.settings,
            executor_id=executor_id,
            role=role,
            sweep=worker,
            on_ended=self._end_run_now,
        )
        check_dbos(cache_dir=self.settings.home / "cache")
        if self.settings.runtime.durability == "batched" and self.settings.runtime.step_recorder != "lean":
            raise ConfigError(
                '[runtime] durability = "batched" defers step records in the lean recorder: '
                'set step_recorder = "lean" (or durability = "sync")'
            )
        # Beat before launching, so no sweeper ever sees a run of ours with an unknown executor.
        await asyncio.to_thread(supervisor.beat)
        configure_dbos_logging()
        # Every run executed here is traced: spans to the local store (batched, off the step's
        # path) and to the configured OTLP collectors.
        self.telemetry = current_telemetry() or self.services.telemetry
        DBOS(config=dbos_config(self.settings, executor_id))
        if not worker:
            DBOS.listen_queues([])
        self._leave = EXECUTORS.enter(executor_id, self)
        # Launched from the running loop, DBOS runs the dequeued workflows on this loop. It blocks
        # the loop once per process (schema check, recovery scan): nothing else runs here yet.
        DBOS.launch()
        recorder = None
        if self.settings.runtime.step_recorder == "lean":
            durability = self.settings.runtime.durability
            recorder = open_recorder(self.settings.db_url, step_row_defaults(), durability=durability)
            self._uninstall_recorder = install_step_recorder(recorder)
            self._recorder = recorder
        if self.settings.db_url.startswith("sqlite"):
            # The lean recorder settles each step's record in its group commit.
            # The record of a run's end (DBOS's own commit) goes to the recorder's writer thread.
            if recorder is not None:
                recorder.attach(asyncio.get_running_loop())  # DBOS's starts, from its threads, stage there
                inline_step_bookkeeping(recorder.settle, recorder.off_loop, start_here=recorder.start_here)
            else:
                inline_step_bookkeeping()
        if worker:
            await self._register_queues(concurrency or self.settings.runtime.worker_concurrency)
        # What lives as long as the process is made by now (DBOS launched, the recorder open).
        self._gc.apply()
        supervisor.start()
        self.executor_id, self.supervisor, self.dequeues = executor_id, supervisor, worker
        return executor_id

    async def _register_queues(self, concurrency: int) -> None:
        limits = self.settings.runtime
        per_agent = limits.agent_concurrency
        limiter = (
            {"limit": limits.agent_rate_limit, "period": limits.agent_rate_period}
            if limits.agent_rate_limit
            else None
        )
        # Partitioned by agent; partition_worker_concurrency = the worker's own limit keeps the
        # queue partitioned (so every agent has its own limits) even when no per-agent limit is set.
        await DBOS.register_queue_async(
            RUN_QUEUE,
            worker_concurrency=concurrency,
            partition_concurrency=per_agent,
            partition_worker_concurrency=min(concurrency, per_agent or concurrency),
            partition_limiter=limiter,  # type: ignore[arg-type]
            polling_interval_sec=limits.poll_interval,
            on_conflict="always_update",
        )
        await DBOS.register_queue_async(
            RECOVERY_QUEUE,
            worker_concurrency=concurrency,
            polling_interval_sec=limits.poll_interval,
            on_conflict="always_update",
        )
        await DBOS.register_queue_async(
            CHILD_QUEUE,
            worker_concurrency=concurrency,
            polling_interval_sec=limits.poll_interval,
            on_conflict="always_update",
        )

    async def serve(
        self,
        *,
        concurrency: int | None = None,
        executor_id: str | None = None,
        stop: asyncio.Event | None = None,
        on_ready: Callable[[str], object] | None = None,
    ) -> None:
        """Run as a worker until ``stop`` is set (or the task is cancelled), then close;
        ``on_ready`` is called with the executor id once runs are being dequeued."""
        try:
            executor = await self.start_executor(
                worker=True, concurrency=concurrency, executor_id=executor_id
            )
            if on_ready is not None:
                on_ready(executor)
            await (stop or asyncio.Event()).wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self.executor_id is not None:
            # Runs still executing here stop as if the process died; a worker recovers them.
            # (DBOS keeps its workflow tasks in a private set; it offers no public way to stop them.)
            tasks = workflow_tasks()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            # DBOS made its own thread pool this loop's default executor and shuts it down on destroy.
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(thread_name_prefix="shopfloor")
            )
            # Let what DBOS's pool is writing (a finished run's record of its end) commit first: destroy
            # does not wait for it, and the write would go on after this runtime (and its database) closed.
            executor = dbos_executor()
            if executor is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_SECONDS):
                        await asyncio.to_thread(executor.shutdown, wait=True)
            await asyncio.to_thread(DBOS.destroy)
            if self._uninstall_recorder is not None:
                self._uninstall_recorder()
                self._uninstall_recorder = self._recorder = None
            restore_step_bookkeeping()
            if self.supervisor is not None:
                await asyncio.to_thread(self.supervisor.stop)
            self.executor_id = self.supervisor = None
            self.dequeues = False
        if self._leave is not None:  # also after a launch that failed
            self._leave()
            self._leave = None
        self._gc.restore()
        if self.telemetry is not None:
            # The telemetry belongs to the services (``Services.close`` stops it): only flushed here.
            await asyncio.to_thread(self.telemetry.force_flush)
        await self.event_log.close()
        await self.services.close_connectors()
        if self._client is not None:
            await asyncio.to_thread(self._client.destroy)
            self._client = None
        await asyncio.to_thread(self.store.close)
        self.threads.close()
        if self._governance is not None and self._owns_governance:
            self._governance.audit.close()
            self._governance = None
        if self._budgets is not None:
            await asyncio.to_thread(self._budgets.close)
            self._budgets = self._admission = None

    async def flush_steps(self, run_id: str) -> None:
        """Commit the run's deferred step records (``durability = "batched"``), and wait for the
        commit of its last step's (``confirm_steps``)."""
        recorder = self._recorder
        if recorder is not None and recorder.durability == "batched":
            await recorder.flush_async(run_id)
        else:
            await self.confirm_steps(run_id)

    @property
    def records_yield(self) -> bool:
        """Whether every step recorded here waits for a group commit's insert, giving the loop back (the
        SQLite recorder with ``durability = "sync"``; with ``batched`` it is committed behind the run),
        so a step that ran need not yield again."""
        recorder = self._recorder
        return recorder is not None and recorder.in_place and recorder.durability == "sync"

    async def confirm_steps(self, run_id: str) -> None:
        """Wait until every step the run recorded is committed (the SQLite recorder gives a step back
        once its row is inserted, its commit still in flight): before the run's next step starts. With
        ``durability = "batched"`` nothing: a step waits only where ``flush_steps`` is called (before and
        after a step with effects, an approval wait, a durable sleep, the run's end)."""
        recorder = self._recorder
        if recorder is not None and recorder.durability == "sync":
            await recorder.confirmed(run_id)

    async def update_run(self, run_id: str, *, unless_terminal: bool = False, **values: Any) -> bool:
        """``store.update`` from a run executing here: on SQLite (lean recorder) in the recorder's
        group commit, beside other runs' step rows, rather than in a commit of its own."""
        recorder = self._recorder
        if recorder is not None and recorder.in_place:
            sql, rows = self.store.update_statement(run_id, unless_terminal=unless_terminal, **values)
            changed = await recorder.execute_beside(sql, rows) > 0
        else:
            changed = await asyncio.to_thread(
                self.store.update, run_id, unless_terminal=unless_terminal, **values
            )
        if changed:
            self.signals.notify((run_id,))
        return changed

    async def finish_run(self, run_id: str, **values: Any) -> None:
        """Record a run's end (``update_run`` with ``values``) after every event buffered before it: on
        SQLite (lean recorder) the events and the end in one group commit, one transaction, instead of a
        commit each (the run's end waited for both, one after the other)."""
        recorder = self._recorder
        if recorder is None or not recorder.in_place:
            await self.event_log.flush()
            await self.update_run(run_id, **values)
            return

        def write(batch: list[dict[str, Any]]) -> Awaitable[None]:
            end = self.store.update_statement(run_id, **values)
            events = [self.store.append_events_statement(batch)] if batch else []
            return self._ended(run_id, batch, recorder.execute_all_beside([*events, end]))

        await self.event_log.flush(write)

    async def _ended(self, run_id: str, batch: list[dict[str, Any]], written: Awaitable[list[int]]) -> None:
        """``finish_run``'s statements committed: whoever waits on the run, or on those events, is woken."""
        changed = (await written)[-1]
        if batch:
            self.signals.notify_events({row["run_id"] for row in batch})
        if changed:
            self.signals.notify((run_id,))

    async def _append_events(self, batch: list[dict[str, Any]]) -> None:
        """The event log's writes: beside the step rows where ``update_run``'s go there."""
        recorder = self._recorder
        if recorder is not None and recorder.in_place:
            await recorder.execute_beside(*self.store.append_events_statement(batch))
        else:
            await asyncio.to_thread(self.store.append_events, batch)
        self.signals.notify_events({row["run_id"] for row in batch})

    async def client(self) -> DBOSClient:
        if self._client is not None:
            return self._client
        return await asyncio.to_thread(self._make_client)

    def _make_client(self) -> DBOSClient:
        # Under a lock: concurrent first starts each made a client, and the one overwritten was never
        # destroyed (its pool's connections left to the garbage collector: a ResourceWarning on PostgreSQL).
        with self._client_lock:
            if self._client is None:
                if self.executor_id is None:
                    # The client never creates DBOS's tables; a fresh database may not have them yet.
                    DBOS.migrate(self.settings.db_url)
                self._client = DBOSClient(**client_kwargs(self.settings))
            return self._client

    # runs ------------------------------------------------------------------------------------
    async def start_run(
        self,
        spec_path: str | Path | None,
        task: str,
        *,
        model: str | None = None,
        detach: bool = False,
        caller: str | None = None,
        agent: str | None = None,
        routed: RoutedRun | None = None,
        principal: Principal | None = None,
        run_id: str | None = None,
    ) -> str:
        """Create a run of the agent at ``spec_path`` and return its id. Detached runs go to the queue
        for ``shopfloor worker``; the others execute in this process (which becomes an executor).

        ``agent``: the run is started by the agent's name, so the deployment of that name (the services'
        ``run_router``) picks the release that serves it, ``spec_path`` where none is deployed;
        ``routed``: that choice, where the caller made it already (``route``).
        ``principal``: who starts it, authenticated (a server passes the request's; else the local
        administrator); its key and team, the agent's team and the agent count against concurrent-run
        limits (``BudgetExceededError`` when one is full). ``run_id``: the new run's id, chosen by a
        caller that prepares something under it first (an evaluation seeds the run's own workspace,
        ``run-<id>``, with its item's files); a fresh one otherwise."""
        if run_id is not None and not _RUN_ID.fullmatch(run_id):
            raise RunStateError(f"a run id is 32 lowercase hex digits, got {run_id[:80]!r}")
        who = caller or self.caller
        if routed is None and agent is not None:
            routed = await self.route(agent, who)
        if routed is not None:
            spec_path = routed.spec_path
        if spec_path is None:
            raise AgentNotFoundError(
                f"no agent {agent!r} is registered or deployed; `shopfloor deploy {agent}@VERSION` "
                "deploys a release of it"
            )
        loaded = await self.threads.call(self.services.load_spec, spec_path)
        if routed is not None and loaded.digest != routed.digest:
            raise ReleaseError(
                f"release {routed.release} no longer verifies: its files at {routed.spec_path} changed "
                f"({routed.digest} -> {loaded.digest}); `shopfloor release verify {routed.release}`"
            )
        record = self._new_record(loaded, task, model=model, caller=who, run_id=run_id)
        if routed is not None:
            record = replace(record, release=routed.release, track=routed.track)
        # Loaded here a moment ago: its workflow takes it, and the row, as they are (``HANDED``).
        await self._admit_and_create(loaded, record, detach=detach, principal=principal, hand_over=True)
        return record.run_id

    async def launch(
        self,
        loaded: LoadedSpec,
        task: str,
        *,
        model: str | None = None,
        run_id: str | None = None,
        caller: str | None = None,
        principal: Principal | None = None,
    ) -> LaunchedRun:
        """Start a run of ``loaded`` (``services.load_spec``, once for many runs) in this process and
        return it, its end to await: ``start_run`` without its per-run trips (loading and digesting the
        spec again, routing) and without polling the run store for the end (``wait``). For a caller
        that starts many runs of one agent itself, as an evaluation does; ``run_id`` and ``principal``
        as ``start_run``. A run whose agent changed since ``loaded`` was read fails at its start
        (``release_changed``), as any run does."""
        if run_id is not None and not _RUN_ID.fullmatch(run_id):
            raise RunStateError(f"a run id is 32 lowercase hex digits, got {run_id[:80]!r}")
        record = self._new_record(loaded, task, model=model, caller=caller or self.caller, run_id=run_id)
        handle = await self._admit_and_create(loaded, record, detach=False, principal=principal)
        assert handle is not None  # executed here, never detached
        return LaunchedRun(run_id=record.run_id, handle=handle)

    async def relaunch(self, run_id: str) -> LaunchedRun | None:
        """Start the workflow of a run recorded as queued whose workflow never started (the process that
        recorded it died in between; a run recovered by DBOS has its workflow): None where it has one
        or has ended. Its record is the run, so it starts as first recorded."""
        record = await asyncio.to_thread(self.store.get, run_id)
        if record.status != "queued" or await self.dbos_status(run_id) is not None:
            return None
        await self.start_executor()
        with SetWorkflowID(run_id):
            handle = await DBOS.start_workflow_async(run_workflow, run_id)
        return LaunchedRun(run_id=run_id, handle=handle)

    async def get_runs(self, run_ids: list[str]) -> dict[str, RunRecord]:
        """The runs of ``run_ids`` that exist, by id, read together (``RunStore.get_many``)."""
        return await self.threads.call(self.store.get_many, run_ids)

    async def fork_run(
        self,
        run_id: str,
        step: int,
        *,
        detach: bool = False,
        caller: str | None = None,
        principal: Principal | None = None,
    ) -> str:
        """Start a fork of the ended run ``run_id`` (or a unique prefix of it) and return its id: a run of
        the run's agent (its files as they are now) on the run's task and model, whose steps before
        ``step`` (1-based, up to one past the last recorded step) are taken from the run's recorded
        outputs and which runs live from there, durably like any run (recorded with its parent and fork
        step). ``ForkStepError`` for a step outside the record; detached, ``caller`` and ``principal``
        as ``start_run``."""
        parent = await self.get_run(run_id)
        if not parent.done:
            raise RunStateError(f"run {parent.run_id} is {parent.status}: fork it once it has ended")
        if parent.pruned:
            raise RunStateError(f"run {parent.run_id} was pruned: its recorded steps are gone")
        if parent.child_params is not None:
            raise RunStateError(
                f"run {parent.run_id} is a child run of {parent.parent_run_id} (one step of its tool): "
                "fork its parent instead"
            )
        recorded = await self.recorded_steps(parent.run_id)
        if not 1 <= step <= len(recorded) + 1:
            raise ForkStepError(run_id=parent.run_id, step=step, steps=len(recorded))
        loaded = await asyncio.to_thread(self.services.load_spec, parent.spec_path)
        record = replace(
            self._new_record(loaded, parent.task, model=parent.model, caller=caller or self.caller),
            parent_run_id=parent.run_id,
            fork_step=step,
        )
        if parent.release is not None and loaded.digest == parent.release_digest:
            record = replace(record, release=parent.release, track=parent.track)
        await self._admit_and_create(loaded, record, detach=detach, principal=principal)
        return record.run_id

    def _new_record(
        self, loaded: LoadedSpec, task: str, *, model: str | None, caller: str, run_id: str | None = None
    ) -> RunRecord:
        return RunRecord(
            run_id=run_id or uuid.uuid4().hex,
            agent=loaded.spec.name,
            spec_path=str(loaded.path),
            release_digest=loaded.digest,
            caller=caller,
            status="queued",
            task=task,
            model=model,
            created_at=time.time(),
        )

    async def _admit_and_create(
        self,
        loaded: LoadedSpec,
        record: RunRecord,
        *,
        detach: bool,
        principal: Principal | None,
        hand_over: bool = False,
    ) -> WorkflowHandleAsync[dict[str, Any]] | None:
        """Take the run's concurrent-run slot, then record and enqueue (or start) it; the workflow's
        handle where it started here (``hand_over``: handed ``record`` and ``loaded``, see ``HANDED``)."""
        run_id = record.run_id
        admission = self.admission
        if admission is not None:
            starter = principal or ADMIN
            if starter.team is None and loaded.spec.permissions.team is not None:
                starter = replace(starter, team=loaded.spec.permissions.team)
            request = UsageRequest(
                principal=starter, route=f"agent/{loaded.spec.name}", agent=loaded.spec.name
            )
            await asyncio.to_thread(admission.start_run, request, run_id)
        try:
            return await self._create_run(loaded, record, detach=detach, hand_over=hand_over)
        except BaseException:
            if admission is not None:
                # Nothing runs: give the slot back (a run the queue has already is released at its end).
                await asyncio.to_thread(admission.end_run, run_id)
            raise

    async def _create_run(
        self, loaded: LoadedSpec, record: RunRecord, *, detach: bool, hand_over: bool = False
    ) -> WorkflowHandleAsync[dict[str, Any]] | None:
        run_id = record.run_id
        if not detach:
            await self.start_executor()
        recorder = self._recorder
        if recorder is not None and recorder.in_place and not detach:
            # An executor on SQLite: the run's row goes into the transaction of DBOS's record of its
            # workflow's start, in the step recorder's next group commit beside the steps of the runs
            # executing already: one commit before the workflow runs instead of two, and no run left
            # queued without its workflow by a crash between them. The start is recorded on this loop
            # (``start_here``), not in DBOS's thread.
            with recorder.beside_start(run_id, *self.store.create_statement(record)):
                return await self._start_workflow(loaded, record, hand_over=hand_over)
        if recorder is not None and recorder.in_place:
            # The row in the recorder's next group commit, committed before the run is enqueued.
            await recorder.execute_beside(*self.store.create_statement(record))
        else:
            await asyncio.to_thread(self.store.create, record)
        if detach:
            admission = self.admission
            if admission is not None:
                # Before the enqueue: a worker may take the run (and lease its slots) at once.
                await asyncio.to_thread(admission.queue_run, run_id)
            client = await self.client()
            options: EnqueueOptions = {
                "workflow_name": WORKFLOW_NAME,
                "queue_name": RUN_QUEUE,
                "workflow_id": run_id,
                "queue_partition_key": loaded.spec.name,
                "app_version": APP_VERSION,
            }
            await client.enqueue_async(options, run_id)
            return None
        return await self._start_workflow(loaded, record, hand_over=hand_over)

    async def _start_workflow(
        self, loaded: LoadedSpec, record: RunRecord, *, hand_over: bool
    ) -> WorkflowHandleAsync[dict[str, Any]]:
        # The workflow's task copies this context: its first execution takes the row and the spec
        # from here instead of reading the row back and loading the spec again.
        token = HANDED.set(Handoff(record, loaded)) if hand_over else None
        try:
            with SetWorkflowID(record.run_id):
                return await DBOS.start_workflow_async(run_workflow, record.run_id)
        finally:
            if token is not None:
                HANDED.reset(token)

    @property
    def admission(self) -> Admission | None:
        """What holds concurrent-run slots and admits the model calls of the runs executed here: the one
        given, else the budgets of ``[[security.limits]]`` (None where there are none)."""
        if self._admission is None and self._owns_admission and self._limits_from.security.limits:
            self._admission = self._budgets = build_budgets(self._limits_from)
        return self._admission

    def use_limits(self, settings: Settings) -> None:
        """Hold concurrent-run slots under the ``[[security.limits]]`` of ``settings`` from now on (a
        server's reloaded GitOps policy); slots already held stay held until their runs end."""
        self._limits_from = settings
        if self._budgets is not None:
            self._budgets.set_limits(limits_from_settings(settings))

    def _end_run_now(self, run_id: str) -> None:
        if self.admission is not None:
            self.admission.end_run(run_id)

    async def end_run(self, run_id: str) -> None:
        """Give back the concurrent-run slots of a run that has ended (idempotent). Without limits
        there is nothing to give back: no thread hop at every run's end."""
        if self.admission is not None:
            await asyncio.to_thread(self._end_run_now, run_id)

    async def resume_run(self, run_id: str) -> None:
        """Lease the concurrent-run slots of a run this process executes (begun, or recovered) to it."""
        admission = self.admission
        if admission is not None:
            await asyncio.to_thread(admission.resume_run, run_id)

    async def enqueue_child(self, run_id: str) -> bool:
        """Put the recorded child run ``run_id`` on ``CHILD_QUEUE``, which every worker dequeues, where
        this process is a worker (so any worker runs it); False where it dequeues nothing (a command
        line's executor: its children are started in its own process)."""
        if not self.dequeues:
            return False
        client = await self.client()
        options: EnqueueOptions = {
            "workflow_name": CHILD_WORKFLOW_NAME,
            "queue_name": CHILD_QUEUE,
            "workflow_id": run_id,
            "app_version": APP_VERSION,
        }
        await client.enqueue_async(options, run_id)
        return True

    async def route(self, agent: str, caller: str) -> RoutedRun | None:
        """The release the deployment of ``agent`` picks for ``caller`` (None: not deployed here)."""
        router = self.services.run_router
        if router is None:
            return None
        return await asyncio.to_thread(router, self.services, agent, caller)

    async def get_run(self, run_id: str) -> RunRecord:
        """The run (``run_id`` may be a unique prefix of its id)."""
        return await self.threads.call(self.store.find, run_id)

    async def list_runs(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        agent: str | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        return await asyncio.to_thread(
            self.store.list_runs, limit=limit, status=status, agent=agent, before=before
        )

    async def children(self, run_id: str) -> list[RunRecord]:
        """The child runs of the run (``run_id`` may be a unique prefix of its id), oldest first."""
        record = await self.get_run(run_id)
        return await asyncio.to_thread(self.store.children, [record.run_id])

    async def wait(self, run_id: str) -> RunRecord:
        """Wait until the run has ended (completed, failed or cancelled) and return it.
        Bound the wait with ``asyncio.timeout``."""
        if not _RUN_ID.fullmatch(run_id):  # a prefix: read once for the whole id
            record = await self.get_run(run_id)
            if record.done:
                return record
            run_id = record.run_id
        while True:
            # Woken as soon as this process records a change of it (not of its events: it reads the
            # record alone); else the run store is read again after a poll interval (another process
            # executes it). Watched before the read: a change between the two is not missed.
            with self.signals.watch(run_id, events=False) as changed:
                record = await self.get_run(run_id)
                if record.done:
                    return record
                await until(changed, self.settings.runtime.poll_interval)

    def events(self, run_id: str, *, after: int = -1, follow: bool = True) -> AsyncIterator[StoredEvent]:
        """The run's events in order, from after ``after``; with ``follow``, live until the run ends."""
        return follow_events(
            self.store,
            run_id,
            after=after,
            follow=follow,
            poll=self.settings.runtime.poll_interval,
            signals=self.signals,
        )

    async def recorded_steps(self, run_id: str) -> list[RecordedStep]:
        """Each recorded step of the run in order: name and recorded JSON output (for replay)."""
        record = await self.get_run(run_id)
        client = await self.client()
        return recorded_steps_from(await client.list_workflow_steps_async(record.run_id))

    async def prune(self, *, older_than_days: float) -> int:
        """Retention: drop the events and DBOS's step records of runs that ended more than
        ``older_than_days`` ago (their run store rows stay; they can no longer be replayed).
        Returns how many runs were pruned."""
        cutoff = time.time() - older_than_days * 86400
        client = await self.client()
        pruned = 0
        while run_ids := await asyncio.to_thread(self.store.ended_before, cutoff):
            await client.delete_workflows_async(run_ids)
            await asyncio.to_thread(self.store.drop_events, run_ids)
            pruned += len(run_ids)
        return pruned

    # people ----------------------------------------------------------------------------------
    @property
    def governance(self) -> Governance:
        if self._governance is None:
            self._governance = build_governance(self.settings)
        return self._governance

    async def approve(
        self,
        run_id: str,
        *,
        by: str | None = None,
        reason: str = "",
        principal: Principal | None = None,
        proposal: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Approve the waiting call. ``principal``: who asks, authenticated (a server passes the request's);
        without one this is the local command line, whose rules ``_decider`` keeps. ``proposal``: what the
        call proposed as the approver edited it (only the fields its tool lets change; a bad edit raises
        ``ProposalEditError`` naming the field); the call runs with it and the audit log keeps both."""
        return await self._decide(
            run_id, approved=True, by=by, reason=reason, principal=principal, edit=proposal
        )

    async def reject(
        self, run_id: str, *, by: str | None = None, reason: str = "", principal: Principal | None = None
    ) -> RunRecord:
        return await self._decide(run_id, approved=False, by=by, reason=reason, principal=principal)

    async def _team_of(self, record: RunRecord) -> str | None:
        """The team owning the run's agent (``permissions.team`` of its spec), None if it names none."""
        try:
            loaded = await asyncio.to_thread(self.services.load_spec, record.spec_path)
        except (ShopfloorError, OSError):
            return None
        return loaded.spec.permissions.team

    def _decider(self, run_id: str, approval: dict[str, Any], by: str | None) -> str:
        """Who decides, as recorded: one of the spec's approvers, else the local administrator.

        Local CLI mode knows no identities beyond the OS user: with no approvers listed, an
        approval may only come from root or the owner of the Shopfloor home (whoever could
        change the run's data anyway), never from a name given on the command line.
        """
        approvers = [str(name) for name in approval.get("approvers") or []]
        if approvers:
            who = by or self.caller
            if who not in approvers:
                raise RunStateError(
                    f"{who!r} may not decide for run {run_id}: its approvers are "
                    f"{', '.join(approvers)} (pass --by NAME)"
                )
            return who
        home = self.settings.home
        owner = home.stat().st_uid
        if self.uid not in (0, owner):
            raise RunStateError(
                f"run {run_id} lists no approvers (permissions.approvers in its agent.yaml), so only "
                f"the local administrator may decide: root or the owner of {home} (uid {owner}); "
                f"you are uid {self.uid}"
            )
        if by is not None:
            raise RunStateError(
                f"--by {by!r}: run {run_id} lists no approvers, so the decision is the local "
                f"administrator's and is recorded as {LOCAL_ADMIN!r}; leave --by out, or list approvers "
                "under permissions.approvers in the agent.yaml"
            )
        return LOCAL_ADMIN

    async def _decide(
        self,
        run_id: str,
        *,
        approved: bool,
        by: str | None,
        reason: str,
        principal: Principal | None,
        edit: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Check who decides, record the decision in the audit log, then send it to the run, once.

        The audit entry is written first and names the call (run and step): a decision repeated, or
        retried after a crash between the two writes, is re-sent as recorded under the same idempotency
        key (DBOS delivers it once); a different decision for the same call is refused."""
        record = await self.get_run(run_id)
        if record.status != "waiting_approval" or record.approval is None:
            # The run may have moved on because this very decision was applied: a retry answers as the
            # first call did, a contrary decision names the one that was taken.
            earlier = await asyncio.to_thread(
                self.governance.audit.latest, "approval.decided", f"runs/{record.run_id}#step"
            )
            if earlier is None:
                raise RunStateError(f"run {record.run_id} is {record.status}, not waiting for approval")
            asked_by = principal.id if principal is not None else (by or LOCAL_ADMIN)
            if (earlier.details.get("approved"), earlier.details.get("by")) == (approved, asked_by) and (
                edit is None or (earlier.details.get("edit") or {}).get("after") == edit
            ):
                return record
            raise RunStateError(
                f"the last call of run {record.run_id} that waited was already "
                f"{'approved' if earlier.details.get('approved') else 'rejected'} by {earlier.actor}"
            )
        approval = record.approval
        step = int(approval["step"])
        approvers = [str(name) for name in approval.get("approvers") or []]
        team = await self._team_of(record)
        governance = self.governance
        if principal is None:
            # the local command line: the spec's approvers by name, else the machine's administrator
            who = self._decider(record.run_id, approval, by)
            actor = ADMIN if who == LOCAL_ADMIN else Principal(id=who, kind="person", name=who)
            governance.approvals.check_separation(actor, run_id=record.run_id, started_by=record.caller)
        else:
            actor, who = principal, principal.id
            await asyncio.to_thread(
                governance.approvals.check,
                actor,
                run_id=record.run_id,
                approvers=approvers,
                team=team,
                started_by=record.caller,
            )
        message: dict[str, Any] = {"approved": approved, "by": who, "reason": reason}
        edited = _edited(record.run_id, approval, edit=edit)
        if edited is not None:
            message["proposal"] = edited
        subject = approval_resource(record.run_id, step)
        earlier = await asyncio.to_thread(governance.audit.find, "approval.decided", subject)
        if earlier is None:
            await asyncio.to_thread(
                governance.audit.append,
                "approval.decided",
                actor=who,
                resource=subject,
                details={
                    **message,
                    "tool": approval.get("tool"),
                    "arguments": approval.get("arguments"),
                    "approvers": approvers,
                    "team": team,
                    "method": actor.method,
                    # who edited what (the entry's actor and time): the proposal before and after
                    **({"edit": {"before": approval["proposal"], "after": edited}} if edited else {}),
                },
            )
        elif (earlier.details.get("approved"), earlier.details.get("by")) != (approved, who) or (
            edit is not None and (earlier.details.get("edit") or {}).get("after") != edited
        ):
            raise RunStateError(
                f"the call at step {step} of run {record.run_id} was already "
                f"{'approved' if earlier.details.get('approved') else 'rejected'} by {earlier.actor}"
                + (" with another edit" if earlier.details.get("approved") == approved else "")
            )
        else:
            message = {key: earlier.details[key] for key in ("approved", "by", "reason")}
            if earlier.details.get("edit"):
                message["proposal"] = earlier.details["edit"]["after"]
        client = await self.client()
        await client.send_async(
            record.run_id, message, topic=approval_topic(step), idempotency_key=f"{subject}:decision"
        )
        return record

    async def cancel(self, run_id: str, *, by: str | None = None) -> RunRecord:
        """Cancel durably: a queued run never starts; a running one finishes its current step and stops."""
        record = await self.get_run(run_id)
        if record.done:
            raise RunStateError(f"run {record.run_id} has already ended ({record.status})")
        client = await self.client()
        if record.status == "waiting_approval" and record.approval is not None:
            # Wake the waiting run so it ends now rather than at its approval timeout.
            await client.send_async(
                record.run_id,
                {"cancel": True, "by": by or self.caller},
                topic=approval_topic(int(record.approval["step"])),
            )
        await client.cancel_workflow_async(record.run_id)
        if record.status in ("queued", "waiting_approval"):
            # No step is running: the run is cancelled now, even if no process holds it at the moment.
            await asyncio.to_thread(
                self.store.update,
                record.run_id,
                unless_terminal=True,
                status="cancelled",
                stop_reason="cancelled",
                error=f"cancelled by {by or self.caller}",
                approval=None,
                finished_at=time.time(),
            )
            self.signals.notify((record.run_id,))
        current = await self.get_run(record.run_id)
        if current.done:
            await self.end_run(current.run_id)
        # Its children are part of it: those still going are cancelled with it.
        for child in await asyncio.to_thread(self.store.children, [record.run_id]):
            if not child.done:
                with contextlib.suppress(RunStateError):  # it ended meanwhile
                    await self.cancel(child.run_id, by=by)
        return current

    async def dbos_status(self, run_id: str) -> dict[str, Any] | None:
        """DBOS's view of the run's workflow (status, executor, queue), for diagnostics."""
        client = await self.client()
        found = await client.list_workflows_async(workflow_ids=[run_id], load_input=False, load_output=False)
        if not found:
            return None
        status = found[0]
        return {"status": status.status, "executor_id": status.executor_id, "queue_name": status.queue_name}


def _edited(run_id: str, approval: dict[str, Any], *, edit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The waiting call's proposal as ``edit`` changes it (None: no edit, or one that changes nothing);
    ``ProposalEditError`` names each field its tool does not let change, or changes wrongly."""
    if edit is None:
        return None
    proposed = approval.get("proposal")
    if proposed is None:
        problem = f"the call run {run_id} waits on ({approval.get('tool')}) proposes nothing to edit"
        raise ProposalEditError([{"loc": ["proposal"], "msg": problem, "type": "value_error"}])
    edited = check_edit(approval.get("editable") or {}, proposed, edit)
    return edited if edited != proposed else None
