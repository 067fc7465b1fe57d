"""The DBOS workflow of a run, and what it does: load the agent, run the loop durably, record the end.

The workflow's only input is the run id: everything else (spec path, task, model
override, release digest) is in the run store row written before the workflow
was started or enqueued. Everything the workflow writes to the run store is an
idempotent overwrite, so replaying it during recovery is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dbos import DBOS
from dbos import error as dbos_error

from shopfloor.agent import ApprovalRequest, RunEvent
from shopfloor.config import Settings
from shopfloor.errors import ShopfloorError
from shopfloor.runtime._environment import RunEnvironment, open_environment
from shopfloor.runtime._events import EventLog
from shopfloor.runtime._runner import DBOSStepRunner
from shopfloor.runtime._services import Services
from shopfloor.runtime._store import RunRecord, RunStore
from shopfloor.telemetry import redact, redact_exception

EventSinkFn = Callable[[RunEvent], None]

__all__ = ["WORKFLOW_NAME", "ExecutionContext", "run_workflow", "set_execution_context"]

WORKFLOW_NAME = "shopfloor.run"


class ExecutionContext(Protocol):
    services: Services
    settings: Settings
    store: RunStore
    event_log: EventLog

    async def dbos_status(self, run_id: str) -> dict[str, Any] | None: ...

    async def flush_steps(self, run_id: str) -> None: ...


@dataclass
class _Active:
    context: ExecutionContext | None = None


_active = _Active()


def set_execution_context(context: ExecutionContext | None) -> None:
    """The runtime that executes workflows in this process (DBOS itself is one per process)."""
    _active.context = context


@DBOS.workflow(name=WORKFLOW_NAME)
async def run_workflow(run_id: str) -> dict[str, Any]:
    context = _active.context
    if context is None:
        raise RuntimeError("a Shopfloor run was dispatched to a process without an active Runtime")
    return await _execute(context, run_id)


async def _execute(ctx: ExecutionContext, run_id: str) -> dict[str, Any]:
    store = ctx.store
    record = await asyncio.to_thread(store.get, run_id)
    if record.done:
        return {"run_id": run_id, "status": record.status}
    await asyncio.to_thread(
        store.update,
        run_id,
        unless_terminal=True,
        status="running",
        executor_id=DBOS.executor_id,
        started_at=record.started_at or time.time(),
    )
    emit = ctx.event_log.sink(run_id)

    async def on_wait(request: ApprovalRequest) -> None:
        approval = {
            "step": request.step,
            "tool": request.tool,
            "arguments": request.arguments,
            "approvers": list(request.approvers),
            "timeout": request.timeout,
            "requested_at": time.time(),
        }
        await asyncio.to_thread(
            store.update, run_id, unless_terminal=True, status="waiting_approval", approval=approval
        )
        await ctx.event_log.flush()

    async def on_resume(request: ApprovalRequest) -> None:
        await asyncio.to_thread(store.update, run_id, unless_terminal=True, status="running", approval=None)

    runner = DBOSStepRunner(
        run_id, on_wait=on_wait, on_resume=on_resume, flush=lambda: ctx.flush_steps(run_id)
    )
    environment: RunEnvironment | None = None
    try:
        loaded = await asyncio.to_thread(ctx.services.load_spec, record.spec_path)
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
        environment = await open_environment(
            loaded, ctx.services, run_id=run_id, model=record.model, identity=record.caller
        )
        result = await environment.loop.run(record.task, run_id=run_id, runner=runner, on_event=emit)
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
        usage=result.to_dict()["usage"],
        workspace_commit=environment.commit,
    )
    return result.to_dict()


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
    await ctx.event_log.flush()
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
    await asyncio.to_thread(ctx.store.update, run_id, **values)
