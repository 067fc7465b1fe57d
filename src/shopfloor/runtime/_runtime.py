"""The Python API of durable runs: start, follow, wait, approve, reject, cancel, list, inspect.

A ``Runtime`` is a client of the run store and of DBOS's system database (through
``DBOSClient``: enqueue, send, cancel, read recorded steps), and becomes an
executor (DBOS launched in this process, on this event loop) when it runs a run
itself (``start_run(detach=False)``) or serves as a worker (``serve``). DBOS is
one per process, so so is an executing Runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from dbos import DBOS, DBOSClient, EnqueueOptions, SetWorkflowID

from shopfloor.errors import ConfigError, RunStateError
from shopfloor.runtime._dbos_internals import (
    check_dbos,
    inline_step_bookkeeping,
    install_step_recorder,
    restore_step_bookkeeping,
    step_row_defaults,
    workflow_tasks,
)
from shopfloor.runtime._events import EventLog, StoredEvent, follow_events
from shopfloor.runtime._executor import (
    APP_VERSION,
    RECOVERY_QUEUE,
    RUN_QUEUE,
    Supervisor,
    client_kwargs,
    configure_dbos_logging,
    dbos_config,
    new_executor_id,
)
from shopfloor.runtime._recorder import LeanRecorder, open_recorder
from shopfloor.runtime._runner import approval_topic
from shopfloor.runtime._services import Services
from shopfloor.runtime._steps import RecordedStep, recorded_steps_from
from shopfloor.runtime._store import RunRecord, RunStore
from shopfloor.runtime._workflow import WORKFLOW_NAME, run_workflow, set_execution_context
from shopfloor.telemetry import Telemetry, configure_telemetry, current_telemetry

__all__ = ["LOCAL_ADMIN", "Runtime"]

#: How a decision by the local administrator is recorded (a run whose spec lists no approvers).
LOCAL_ADMIN = "local-admin"


class Runtime:
    def __init__(self, services: Services, *, caller: str | None = None, uid: int | None = None) -> None:
        self.services = services
        self.settings = settings = services.settings
        settings.ensure_home()
        self.store = RunStore.open(settings.db_url)
        self.event_log = EventLog(self.store, interval=min(0.1, settings.runtime.poll_interval))
        self.caller = caller or getpass.getuser()
        #: the OS user deciding approvals (local CLI mode has no other identity yet)
        self.uid = os.geteuid() if uid is None else uid
        self.executor_id: str | None = None
        self.supervisor: Supervisor | None = None
        self._client: DBOSClient | None = None
        #: the lean step recorder behind DBOS, and what takes it out again
        self._recorder: LeanRecorder | None = None
        self._uninstall_recorder: Callable[[], None] | None = None
        #: the telemetry this runtime turned on (None where the process had its own already)
        self._telemetry: Telemetry | None = None

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
        supervisor = Supervisor(self.store, self.settings, executor_id=executor_id, role=role, sweep=worker)
        check_dbos()
        if self.settings.runtime.durability == "batched" and self.settings.runtime.step_recorder != "lean":
            raise ConfigError(
                '[runtime] durability = "batched" defers step records in the lean recorder: '
                'set step_recorder = "lean" (or durability = "sync")'
            )
        # Beat before launching, so no sweeper ever sees a run of ours with an unknown executor.
        await asyncio.to_thread(supervisor.beat)
        configure_dbos_logging()
        if current_telemetry() is None and self.settings.telemetry.enabled:
            # Every run executed here is traced: spans to the local store (batched, off the
            # step's path) and to the configured OTLP collectors.
            self._telemetry = configure_telemetry(self.settings, destinations=self.services.exporters)
        DBOS(config=dbos_config(self.settings, executor_id))
        if not worker:
            DBOS.listen_queues([])
        set_execution_context(self)
        # Launched from the running loop, DBOS runs the dequeued workflows on this loop. It blocks
        # the loop once per process (schema check, recovery scan): nothing else runs here yet.
        DBOS.launch()
        if self.settings.db_url.startswith("sqlite"):
            inline_step_bookkeeping()
        if self.settings.runtime.step_recorder == "lean":
            durability = self.settings.runtime.durability
            recorder = open_recorder(self.settings.db_url, step_row_defaults(), durability=durability)
            self._uninstall_recorder = install_step_recorder(recorder)
            self._recorder = recorder
        if worker:
            await self._register_queues(concurrency or self.settings.runtime.worker_concurrency)
        supervisor.start()
        self.executor_id, self.supervisor = executor_id, supervisor
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
            await asyncio.to_thread(DBOS.destroy)
            if self._uninstall_recorder is not None:
                self._uninstall_recorder()
                self._uninstall_recorder = self._recorder = None
            restore_step_bookkeeping()
            set_execution_context(None)
            if self.supervisor is not None:
                await asyncio.to_thread(self.supervisor.stop)
            self.executor_id = self.supervisor = None
        if self._telemetry is not None:
            await asyncio.to_thread(self._telemetry.shutdown)
            self._telemetry = None
        await self.event_log.close()
        if self._client is not None:
            await asyncio.to_thread(self._client.destroy)
            self._client = None
        await asyncio.to_thread(self.store.close)

    async def flush_steps(self, run_id: str) -> None:
        """Commit the run's deferred step records (``durability = "batched"``; else nothing)."""
        recorder = self._recorder
        if recorder is not None and recorder.durability == "batched":
            if recorder.in_place:
                recorder.flush(run_id)
            else:
                await asyncio.to_thread(recorder.flush, run_id)

    async def client(self) -> DBOSClient:
        if self._client is None:
            if self.executor_id is None:
                # The client never creates DBOS's tables; a fresh database may not have them yet.
                await asyncio.to_thread(DBOS.migrate, self.settings.db_url)
            self._client = await asyncio.to_thread(lambda: DBOSClient(**client_kwargs(self.settings)))
        return self._client

    # runs ------------------------------------------------------------------------------------
    async def start_run(
        self,
        spec_path: str | Path,
        task: str,
        *,
        model: str | None = None,
        detach: bool = False,
        caller: str | None = None,
    ) -> str:
        """Create a run of the agent at ``spec_path`` and return its id. Detached runs go to the queue
        for ``shopfloor worker``; the others execute in this process (which becomes an executor)."""
        loaded = await asyncio.to_thread(self.services.load_spec, spec_path)
        run_id = uuid.uuid4().hex
        record = RunRecord(
            run_id=run_id,
            agent=loaded.spec.name,
            spec_path=str(loaded.path),
            release_digest=loaded.digest,
            caller=caller or self.caller,
            status="queued",
            task=task,
            model=model,
            created_at=time.time(),
        )
        await asyncio.to_thread(self.store.create, record)
        if detach:
            client = await self.client()
            options: EnqueueOptions = {
                "workflow_name": WORKFLOW_NAME,
                "queue_name": RUN_QUEUE,
                "workflow_id": run_id,
                "queue_partition_key": loaded.spec.name,
                "app_version": APP_VERSION,
            }
            await client.enqueue_async(options, run_id)
        else:
            await self.start_executor()
            with SetWorkflowID(run_id):
                await DBOS.start_workflow_async(run_workflow, run_id)
        return run_id

    async def get_run(self, run_id: str) -> RunRecord:
        """The run (``run_id`` may be a unique prefix of its id)."""
        return await asyncio.to_thread(self.store.find, run_id)

    async def list_runs(
        self, *, limit: int = 50, status: str | None = None, agent: str | None = None
    ) -> list[RunRecord]:
        return await asyncio.to_thread(self.store.list_runs, limit=limit, status=status, agent=agent)

    async def wait(self, run_id: str) -> RunRecord:
        """Wait until the run has ended (completed, failed or cancelled) and return it.
        Bound the wait with ``asyncio.timeout``."""
        while True:
            record = await self.get_run(run_id)
            if record.done:
                return record
            await asyncio.sleep(self.settings.runtime.poll_interval)

    def events(self, run_id: str, *, after: int = -1, follow: bool = True) -> AsyncIterator[StoredEvent]:
        """The run's events in order, from after ``after``; with ``follow``, live until the run ends."""
        return follow_events(
            self.store, run_id, after=after, follow=follow, poll=self.settings.runtime.poll_interval
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
    async def approve(self, run_id: str, *, by: str | None = None, reason: str = "") -> RunRecord:
        return await self._decide(run_id, approved=True, by=by, reason=reason)

    async def reject(self, run_id: str, *, by: str | None = None, reason: str = "") -> RunRecord:
        return await self._decide(run_id, approved=False, by=by, reason=reason)

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

    async def _decide(self, run_id: str, *, approved: bool, by: str | None, reason: str) -> RunRecord:
        record = await self.get_run(run_id)
        if record.status != "waiting_approval" or record.approval is None:
            raise RunStateError(f"run {record.run_id} is {record.status}, not waiting for approval")
        who = self._decider(record.run_id, record.approval, by)
        client = await self.client()
        message = {"approved": approved, "by": who, "reason": reason}
        await client.send_async(record.run_id, message, topic=approval_topic(int(record.approval["step"])))
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
        return await self.get_run(record.run_id)

    async def dbos_status(self, run_id: str) -> dict[str, Any] | None:
        """DBOS's view of the run's workflow (status, executor, queue), for diagnostics."""
        client = await self.client()
        found = await client.list_workflows_async(workflow_ids=[run_id], load_input=False, load_output=False)
        if not found:
            return None
        status = found[0]
        return {"status": status.status, "executor_id": status.executor_id, "queue_name": status.queue_name}
