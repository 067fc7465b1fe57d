"""The DBOS workflow of a run, and what it does: load the agent, run the loop durably, record the end.

The workflow's only input is the run id: everything else (spec path, task, model
override, release digest, and for a fork its parent and fork step) is in the run store
row written before the workflow was started or enqueued. A run started in this process
(``Runtime.start_run``) hands its workflow that row and the spec it just loaded
(``HANDED``, a context variable the workflow's task inherits), so its first execution
neither reads the row back nor loads the spec again; a recovered, resumed or queued run
reads both. Everything the workflow writes to the run store is an
idempotent overwrite, so replaying it during recovery is harmless.

DBOS calls a workflow by its registered name, so the function is module-level and finds the
runtime that executes it in ``EXECUTORS``: the one lookup of live state in this package, keyed by
the DBOS executor id that the ``Runtime`` launched DBOS with, entered by that runtime when it
launches and removed when it closes (``Executors.enter``). Everything else reaches the workflow
through that runtime: its services, its stores, its telemetry (active around the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from dbos import DBOS
from dbos import error as dbos_error

from shopfloor.agent import ApprovalRequest, RunEvent, RunResult
from shopfloor.config import Settings
from shopfloor.errors import RunStateError, ShopfloorError
from shopfloor.runtime._children import RunChildren, child_limits
from shopfloor.runtime._environment import Branch, RunEnvironment, open_environment
from shopfloor.runtime._events import EventLog
from shopfloor.runtime._runner import DBOSStepRunner
from shopfloor.runtime._services import Services
from shopfloor.runtime._steps import RecordedStep
from shopfloor.runtime._store import RunRecord, RunStore
from shopfloor.runtime._threads import Threads
from shopfloor.security import Admission
from shopfloor.spec import LoadedSpec
from shopfloor.telemetry import Telemetry, redact, redact_exception

EventSinkFn = Callable[[RunEvent], None]

__all__ = [
    "CHILD_WORKFLOW_NAME",
    "EXECUTORS",
    "HANDED",
    "WORKFLOW_NAME",
    "ExecutionContext",
    "Executors",
    "Handoff",
    "run_child_workflow",
    "run_workflow",
]

WORKFLOW_NAME = "shopfloor.run"
#: a child run (``runtime/_children.py``): the same workflow under a name of its own, so that a dead
#: executor's children are recovered on a queue of their own (``CHILD_QUEUE``)
CHILD_WORKFLOW_NAME = "shopfloor.child"


@dataclass(frozen=True)
class Handoff:
    """What ``start_run`` hands the workflow it starts in this process: the run's row as it wrote
    it, and the spec it loaded for it (so checked against the row's digest already)."""

    record: RunRecord
    loaded: LoadedSpec


#: set around ``DBOS.start_workflow_async`` by the runtime; the workflow's task copies it
HANDED: ContextVar[Handoff | None] = ContextVar("shopfloor_handed_run", default=None)


class ExecutionContext(Protocol):
    services: Services
    settings: Settings
    store: RunStore
    event_log: EventLog
    #: where the run's spans go (None: not traced)
    telemetry: Telemetry | None
    #: where its blocking calls run (building its agent)
    threads: Threads

    @property
    def admission(self) -> Admission | None: ...

    async def dbos_status(self, run_id: str) -> dict[str, Any] | None: ...

    async def flush_steps(self, run_id: str) -> None: ...

    async def confirm_steps(self, run_id: str) -> None: ...

    @property
    def records_yield(self) -> bool: ...

    async def recorded_steps(self, run_id: str) -> list[RecordedStep]: ...

    async def update_run(self, run_id: str, *, unless_terminal: bool = False, **values: Any) -> bool: ...

    async def finish_run(self, run_id: str, **values: Any) -> None: ...

    async def end_run(self, run_id: str) -> None: ...

    async def resume_run(self, run_id: str) -> None: ...

    async def enqueue_child(self, run_id: str) -> bool: ...


class Executors:
    """The runtimes executing workflows in this process, by DBOS executor id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, ExecutionContext] = {}

    def enter(self, executor_id: str, context: ExecutionContext) -> Callable[[], None]:
        """Make ``context`` the executor of the workflows DBOS runs as ``executor_id``; returns what
        takes it out again."""
        with self._lock:
            if executor_id in self._by_id:
                raise RuntimeError(f"executor {executor_id} is executing already in this process")
            self._by_id[executor_id] = context

        def leave() -> None:
            with self._lock:
                if self._by_id.get(executor_id) is context:
                    del self._by_id[executor_id]

        return leave

    def get(self, executor_id: str) -> ExecutionContext:
        with self._lock:
            context = self._by_id.get(executor_id)
        if context is None:
            raise RuntimeError(
                f"a Shopfloor run was dispatched to executor {executor_id}, which has no active Runtime here"
            )
        return context


EXECUTORS = Executors()


async def _run(run_id: str) -> dict[str, Any]:
    return await _execute_here(run_id)


async def _run_child(run_id: str) -> dict[str, Any]:
    return await _execute_here(run_id)


# DBOS reads a workflow's signature at every start (``inspect.signature``, twice: whether its first
# parameter is ``self``), ~75 Python calls on the loop a run; a function's ``__signature__`` is what
# ``inspect.signature`` answers with, taken once here.
for _body in (_run, _run_child):
    _body.__signature__ = inspect.signature(_body)  # type: ignore[attr-defined]

run_workflow = DBOS.workflow(name=WORKFLOW_NAME)(_run)
run_child_workflow = DBOS.workflow(name=CHILD_WORKFLOW_NAME)(_run_child)


async def _execute_here(run_id: str) -> dict[str, Any]:
    """A run's workflow body on this executor's context, its telemetry active."""
    context = EXECUTORS.get(DBOS.executor_id)
    telemetry = context.telemetry
    with telemetry.activate() if telemetry is not None else contextlib.nullcontext():
        return await _execute(context, run_id)


async def _execute(ctx: ExecutionContext, run_id: str) -> dict[str, Any]:
    store = ctx.store
    handed = HANDED.get()
    if handed is not None and handed.record.run_id != run_id:
        handed = None  # the run that started this one (a parent), not this run
    record = handed.record if handed is not None else await asyncio.to_thread(store.get, run_id)
    if record.done:
        # Recovered after its end was recorded (the process died before DBOS saw the workflow
        # return): its slots may not have been given back yet.
        await ctx.end_run(run_id)
        return {"run_id": run_id, "status": record.status}
    # Its slots are this process's to renew from here (replayed by a recovery: they are taken back).
    await ctx.resume_run(run_id)
    started = record.started_at or time.time()
    running = await ctx.update_run(
        run_id, unless_terminal=True, status="running", executor_id=DBOS.executor_id, started_at=started
    )
    if handed is not None and not running:
        # Ended between its start and here (cancelled before its workflow began): as read.
        record = await asyncio.to_thread(store.get, run_id)
        if record.done:
            await ctx.end_run(run_id)
            return {"run_id": run_id, "status": record.status}
    emit = ctx.event_log.sink(run_id)

    async def on_wait(request: ApprovalRequest) -> None:
        approval = {
            "step": request.step,
            "tool": request.tool,
            "arguments": request.arguments,
            "approvers": list(request.approvers),
            "timeout": request.timeout,
            # what an approver may edit, and the proposal it is checked against (``Runtime.approve``)
            **({"proposal": request.proposal, "editable": request.editable} if request.proposal else {}),
            "requested_at": time.time(),
        }
        await ctx.update_run(run_id, unless_terminal=True, status="waiting_approval", approval=approval)
        await ctx.event_log.flush()

    async def on_resume(request: ApprovalRequest) -> None:
        await ctx.update_run(run_id, unless_terminal=True, status="running", approval=None)

    runner = DBOSStepRunner(
        run_id,
        on_wait=on_wait,
        on_resume=on_resume,
        flush=lambda: ctx.flush_steps(run_id),
        confirm=lambda: ctx.confirm_steps(run_id),
        records_yield=ctx.records_yield,
    )
    environment: RunEnvironment | None = None
    try:
        if record.parent_run_id is not None and record.fork_step is not None:
            runner.prefix = await _fork_prefix(ctx, record.parent_run_id, record.fork_step)
        loaded = (
            handed.loaded
            if handed is not None
            else await asyncio.to_thread(ctx.services.load_spec, record.spec_path)
        )
        if loaded.digest != record.release_digest:
            return await _fail(
                ctx,
                record,
                runner,
                emit,
                "release_changed",
                f"the agent at {record.spec_path} changed since the run started "
                f"({record.release_digest} -> {loaded.digest}); start a new run",
            )
        # Its workspace (a commit per tool call that changed files), skills and tools.
        child = record.child_params
        limits = loaded.spec.limits
        environment = await open_environment(
            loaded,
            ctx.services,
            run_id=run_id,
            model=record.model,
            identity=record.caller,
            connectors=ctx.services.connectors() if loaded.spec.connectors else None,
            admission=ctx.admission,
            # a child starts no children of its own: a tool cannot fan out without end
            children=RunChildren(ctx, record, parallel=limits.max_parallel_children)
            if child is None
            else None,
            branch=_branch(run_id, child) if child is not None else None,
            # a child's: within what its parent lent it
            limits=child_limits(limits, child, started) if child is not None else None,
            threads=ctx.threads,
        )
        attributes = environment.loop.trace_attributes
        if record.release is not None:
            attributes["shopfloor.release"] = record.release
            attributes["shopfloor.release.track"] = record.track or "stable"
        if child is None:
            result = await environment.loop.run(record.task, run_id=run_id, runner=runner, on_event=emit)
        else:
            attributes["shopfloor.run.parent_id"] = record.parent_run_id or ""
            result = await environment.loop.run_call(
                str(child["tool"]),
                dict(child["params"]),
                task=record.task,
                run_id=run_id,
                runner=runner,
                on_event=emit,
            )
    except (dbos_error.DBOSWorkflowCancelledError, dbos_error.DBOSWorkflowConflictIDError):
        # Asked through the client: inside the workflow, DBOS's own status call would raise again.
        status = await ctx.dbos_status(run_id)
        if status is not None and status["status"] == "CANCELLED":
            emit(
                RunEvent(
                    kind="run_finished",
                    run_id=run_id,
                    step=runner.executed_steps + runner.replayed_steps,
                    data={"status": "cancelled", "stop_reason": "cancelled", "error": "cancelled by request"},
                )
            )
            await _finish(
                ctx,
                run_id,
                runner,
                status="cancelled",
                stop_reason="cancelled",
                output=None,
                error="cancelled by request",
                steps=None,
                workspace_commit=environment.commit if environment else None,
            )
        # Otherwise another executor owns the run now (it was recovered elsewhere): leave it alone.
        await ctx.event_log.flush()
        raise
    except ShopfloorError as exc:
        return await _fail(ctx, record, runner, emit, "error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        await _fail(ctx, record, runner, emit, "error", f"internal error: {type(exc).__name__}: {exc}")
        # DBOS records the exception a workflow raises (its arguments): redacted like the rest.
        redact_exception(exc)
        raise
    finally:
        if environment is not None:
            await environment.close()
    await _finish(
        ctx,
        run_id,
        runner,
        status=result.status,
        stop_reason=result.stop_reason,
        output=result.output,
        error=result.error,
        steps=len(result.steps),
        usage=result.usage.to_dict(),
        workspace_commit=environment.commit,
    )
    return _outcome(result)


def _branch(run_id: str, child: dict[str, Any]) -> Branch | None:
    """A child run's branch, ``child-ID`` of its parent's workspace (None: the parent had none)."""
    workspace = child.get("workspace")
    if not isinstance(workspace, str):
        return None
    start = child.get("branch_from")
    return Branch(workspace=workspace, ref=f"child-{run_id}", start=start if isinstance(start, str) else None)


def _outcome(result: RunResult) -> dict[str, Any]:
    """What DBOS records as the workflow's output: the run's outcome, its steps counted. Each step is
    recorded already in its own row; the whole list again (arguments and results) cost the end of
    a run CPU and bytes in proportion to its length, for a copy nothing reads."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "output": result.output,
        "error": result.error,
        "steps": len(result.steps),
        "usage": result.usage.to_dict(),
    }


async def _fork_prefix(ctx: ExecutionContext, parent_run_id: str, fork_step: int) -> list[RecordedStep]:
    """The parent's recorded steps before ``fork_step``: what a fork takes instead of running them. Read
    again when a fork is recovered (the steps it took already are its own record by then)."""
    recorded = await ctx.recorded_steps(parent_run_id)
    if len(recorded) < fork_step - 1:
        raise RunStateError(
            f"run {parent_run_id} has {len(recorded)} recorded steps now (pruned?): "
            f"the fork cannot take the {fork_step - 1} before its fork step"
        )
    return recorded[: fork_step - 1]


async def _fail(
    ctx: ExecutionContext,
    record: RunRecord,
    runner: DBOSStepRunner,
    emit: EventSinkFn,
    reason: str,
    error: str,
) -> dict[str, Any]:
    error = redact(error)  # from an exception: a model's base URL, a file's contents...
    emit(
        RunEvent(
            kind="run_finished",
            run_id=record.run_id,
            step=0,
            data={"status": "failed", "stop_reason": reason, "error": error},
        )
    )
    await _finish(
        ctx, record.run_id, runner, status="failed", stop_reason=reason, output=None, error=error, steps=None
    )
    return {"run_id": record.run_id, "status": "failed", "stop_reason": reason, "error": error}


async def _finish(
    ctx: ExecutionContext,
    run_id: str,
    runner: DBOSStepRunner,
    *,
    status: str,
    stop_reason: str,
    output: str | None,
    error: str | None,
    steps: int | None,
    usage: dict[str, int] | None = None,
    workspace_commit: str | None = None,
) -> None:
    # The run's end is durable with every step before it (``durability = "batched"``); a cancelled
    # run no longer owns its workflow, and its deferred steps run again if it is resumed.
    with (
        contextlib.suppress(dbos_error.DBOSWorkflowConflictIDError)
        if status == "cancelled"
        else contextlib.nullcontext()
    ):
        await runner.flush()
    values: dict[str, Any] = {
        "status": status,
        "stop_reason": stop_reason,
        "output": output,
        "error": error,
        "faults": runner.faults,
        "approval": None,
        "finished_at": time.time(),
        "input_tokens": usage["input_tokens"] if usage else runner.input_tokens,
        "output_tokens": usage["output_tokens"] if usage else runner.output_tokens,
        "model_calls": usage["model_calls"] if usage else runner.model_calls,
    }
    if steps is not None:
        values["steps"] = steps
    if workspace_commit is not None:
        values["workspace_commit"] = workspace_commit
    # Its concurrent-run slots go back first, so whoever sees the run ended can start another at once
    # (a crash in between: the recovered workflow replays to here and records the end), then the end is
    # recorded with every event before it.
    await ctx.end_run(run_id)
    await ctx.finish_run(run_id, **values)
