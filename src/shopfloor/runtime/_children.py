"""Child runs: what ``ToolServices.children`` is in a durable run (``RunChildren``).

A child is a run of its parent's agent (its spec, digest, release, caller and model), recorded with
``parent_run_id`` and ``child_params`` (the tool, its params, the parent's step, and the branch of the
parent's workspace it works on: ``child-ID`` made from the parent's commit when it started), and
executed as a DBOS workflow of its own (``shopfloor.child``) on the parent's executor, beside the
others: its one step is the tool's ``call_child`` (``AgentLoop.run_call``), traced as a run of its own.

Why the parent's wait is durable: a child's id is a digest of the parent run, its step, the tool, the
child's index and its params, so the parent's tool step, run again after a crash (the step's output
was never recorded), asks for the same children. Those that exist are not started again: a finished
one's output is read from the run store, an unfinished one is left to the recovery that resumes it
(the sweep hands a dead executor's child workflows to their own queue, ``CHILD_QUEUE``, so children
never wait behind the parents that wait for them); a child whose row exists but whose workflow was
never started (the crash fell between the two) is started now.

A child holds no concurrent-run slot of its own: it is part of its parent's run, which holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dbos import DBOS, SetWorkflowID

from shopfloor.errors import RunNotFoundError, ToolExecutionError
from shopfloor.runtime._store import RunRecord
from shopfloor.tools import ChildCall, ChildOutcome, Children, ToolContext

if TYPE_CHECKING:
    from shopfloor.runtime._workflow import ExecutionContext

__all__ = ["MAX_CHILDREN", "RunChildren", "child_run_id"]

#: the most child runs one call may start
MAX_CHILDREN = 64
#: the longest task a child is listed with
_MAX_TASK = 500


def child_run_id(parent_run_id: str, step: int, tool: str, index: int, params: dict[str, Any]) -> str:
    """The id of a call's ``index``-th child: the same for the same call run again (32 hex digits, a
    run id like any other)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    key = f"shopfloor-child\0{parent_run_id}\0{step}\0{tool}\0{index}\0{canonical}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RunChildren(Children):
    """The child runs of one run, executed by ``context`` (the runtime that executes the parent)."""

    def __init__(self, context: ExecutionContext, parent: RunRecord) -> None:
        self.context = context
        self.parent = parent
        #: the children this process started, each as the task that ends when its workflow does
        self._running: dict[str, asyncio.Future[Any]] = {}

    async def start(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[str]:
        if len(calls) > MAX_CHILDREN:
            raise ToolExecutionError(f"{tool} asked for {len(calls)} child runs; at most {MAX_CHILDREN}")
        view = ctx.services.workspace
        parent = self.parent
        now = time.time()  # each child a microsecond after the one before: listed in the call's order
        records = []
        for index, call in enumerate(calls):
            params = {
                "tool": tool,
                "params": call.params,
                "step": ctx.step,
                "index": index,
                "workspace": view.workspace.name if view is not None else None,
                "branch_from": view.base if view is not None else None,
            }
            run_id = child_run_id(parent.run_id, ctx.step, tool, index, call.params)
            records.append(
                RunRecord(
                    run_id=run_id,
                    agent=parent.agent,
                    spec_path=parent.spec_path,
                    release_digest=parent.release_digest,
                    release=parent.release,
                    track=parent.track,
                    caller=parent.caller,
                    status="queued",
                    task=call.task[:_MAX_TASK],
                    model=parent.model,
                    parent_run_id=parent.run_id,
                    child_params=params,
                    created_at=now + index * 1e-6,
                )
            )
        store = self.context.store
        created = set(await asyncio.to_thread(store.create_missing, records))
        existing = await asyncio.to_thread(
            store.get_many, [r.run_id for r in records if r.run_id not in created]
        )
        to_start = list(created)
        for run_id, record in existing.items():
            if record.status == "queued" and await self.context.dbos_status(run_id) is None:
                to_start.append(run_id)  # recorded, but the process died before it was started
        await asyncio.gather(*(self._launch(run_id) for run_id in to_start))
        return [record.run_id for record in records]

    async def _launch(self, run_id: str) -> None:
        """Start the child's workflow here, as a run of its own: from an empty context, so it is no DBOS
        child of the step that starts it (DBOS allows none from a step) and its spans begin a trace of
        their own rather than continuing the parent's."""
        from shopfloor.runtime._workflow import run_child_workflow

        async def start() -> Any:
            with SetWorkflowID(run_id):
                handle = await DBOS.start_workflow_async(run_child_workflow, run_id)
            return await handle.get_result()

        task = asyncio.get_running_loop().create_task(start(), context=contextvars.Context())
        task.add_done_callback(_retrieved)
        self._running[run_id] = task

    async def wait(self, run_ids: Sequence[str]) -> list[ChildOutcome]:
        ids = list(run_ids)
        poll = self.context.settings.runtime.poll_interval
        while True:
            records = await asyncio.to_thread(self.context.store.get_many, ids)
            missing = [run_id for run_id in ids if run_id not in records]
            if missing:
                raise RunNotFoundError(f"no child run {missing[0]!r} of run {self.parent.run_id}")
            if all(record.done for record in records.values()):
                return [_outcome(records[run_id]) for run_id in ids]
            # A child executing here wakes the wait as it ends; one executing elsewhere (recovered by
            # another worker) is seen at the next poll.
            here = [
                task
                for run_id in ids
                if (task := self._running.get(run_id)) is not None
                and not task.done()
                and not records[run_id].done
            ]
            if here:
                await asyncio.wait(here, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(poll)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A child's workflow that raised (its process closing, a bug): its run row says how it ended, and
    the parent reads that; the exception itself is only retrieved, never raised into the parent."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()


def _outcome(record: RunRecord) -> ChildOutcome:
    if record.status != "completed":
        return ChildOutcome(
            run_id=record.run_id,
            status="cancelled" if record.status == "cancelled" else "failed",
            error=record.error or record.stop_reason,
        )
    try:
        output = json.loads(record.output or "null")
    except json.JSONDecodeError as exc:
        return ChildOutcome(
            run_id=record.run_id, status="failed", error=f"its output is not JSON ({exc.msg})"
        )
    return ChildOutcome(run_id=record.run_id, status="completed", output=output)
