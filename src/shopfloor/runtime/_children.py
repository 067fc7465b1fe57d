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

**Limits.** A child runs within what its parent lent it as it started it (``ctx.services.budget``, its
share of the tokens and time the parent had left: ``agent/_children.py``), recorded in its
``child_params`` (``max_tokens``; ``deadline``, a time) so a recovered child keeps them; its spend comes
back with its outcome. At most ``limits.max_parallel_children`` of a parent's children execute at once:
``start`` starts that many, ``wait`` starts the others, in order, as those end.

**Where a child executes.** In a worker (``shopfloor worker`` or a server: it dequeues runs), a child is
enqueued on ``CHILD_QUEUE``, which every worker dequeues, so any of them runs it; a command line's
executor dequeues nothing, so it starts its children beside their parent in its own process.
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
from shopfloor.spec import Limits
from shopfloor.tools import ChildCall, ChildOutcome, Children, ChildStatus, ToolContext

if TYPE_CHECKING:
    from shopfloor.runtime._workflow import ExecutionContext

__all__ = ["MAX_CHILDREN", "RunChildren", "child_limits", "child_run_id"]

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


def child_limits(limits: Limits, params: dict[str, Any], started: float) -> Limits:
    """A child run's limits: the spec's ``limits`` within what its parent lent it (``params``, its
    ``child_params``: ``max_tokens``, and ``deadline`` as seconds since the epoch, which a child that
    started at ``started`` has the rest of). Nothing left is a limit too: the child stops at once."""
    update: dict[str, Any] = {}
    tokens = params.get("max_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        update["max_tokens"] = min(limits.max_tokens, max(0, tokens))
    deadline = params.get("deadline")
    if isinstance(deadline, int | float) and not isinstance(deadline, bool):
        update["wall_time"] = min(limits.wall_time, max(0.0, deadline - started))
    # model_copy: no validation, so 0 (nothing left) stands
    return limits.model_copy(update=update)


class RunChildren(Children):
    """The child runs of one run, executed by ``context`` (the runtime that executes the parent), at most
    ``parallel`` at once."""

    def __init__(self, context: ExecutionContext, parent: RunRecord, *, parallel: int) -> None:
        self.context = context
        self.parent = parent
        self.parallel = parallel
        #: the children this process started, each as the task that ends when its workflow does
        self._running: dict[str, asyncio.Future[Any]] = {}
        #: children recorded and not started yet, in order: each starts when a place is free
        self._pending: list[str] = []
        #: children started (here, on the queue, or before a crash) and not yet seen ended
        self._going: set[str] = set()

    async def start(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[str]:
        if len(calls) > MAX_CHILDREN:
            raise ToolExecutionError(f"{tool} asked for {len(calls)} child runs; at most {MAX_CHILDREN}")
        view = ctx.services.workspace
        budget = ctx.services.budget
        parent = self.parent
        now = time.time()  # each child a microsecond after the one before: listed in the call's order
        lent: dict[str, Any] = (
            {}
            if budget is None
            else {"max_tokens": budget.tokens_left, "deadline": now + budget.seconds_left}
        )
        records = []
        for index, call in enumerate(calls):
            params = {
                "tool": tool,
                "params": call.params,
                "step": ctx.step,
                "index": index,
                "workspace": view.workspace.name if view is not None else None,
                "branch_from": view.base if view is not None else None,
                **lent,
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
        for record in records:
            run_id = record.run_id
            found = existing.get(run_id)
            if run_id in self._pending or run_id in self._going:
                continue
            if found is None or (
                # recorded, but the process died before it was started
                found.status == "queued" and await self.context.dbos_status(run_id) is None
            ):
                self._pending.append(run_id)
            elif not found.done:
                self._going.add(run_id)  # going on since before a crash, or on another worker
        await self._start_pending({**existing, **{r.run_id: r for r in records if r.run_id in created}})
        return [record.run_id for record in records]

    async def _start_pending(self, records: dict[str, RunRecord]) -> None:
        """Start pending children, in order, while fewer than ``parallel`` are going (``records``: the
        children as last read, so one cancelled meanwhile is not started)."""
        while self._pending and len(self._going) < self.parallel:
            run_id = self._pending.pop(0)
            record = records.get(run_id)
            if record is not None and record.status != "queued":
                if not record.done:
                    self._going.add(run_id)
                continue
            self._going.add(run_id)
            if not await self.context.enqueue_child(run_id):
                self._launch(run_id)

    def _launch(self, run_id: str) -> None:
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
            watched = list(dict.fromkeys([*ids, *self._going, *self._pending]))
            records = await asyncio.to_thread(self.context.store.get_many, watched)
            missing = [run_id for run_id in ids if run_id not in records]
            if missing:
                raise RunNotFoundError(f"no child run {missing[0]!r} of run {self.parent.run_id}")
            self._going -= {run_id for run_id in self._going if run_id in records and records[run_id].done}
            await self._start_pending(records)
            if all(records[run_id].done for run_id in ids):
                return [_outcome(records[run_id]) for run_id in ids]
            # A child executing here wakes the wait as it ends; one executing elsewhere (a worker took
            # it from the queue, or recovered it) is seen at the next poll.
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
    status: ChildStatus = "completed"
    output: Any = None
    error = record.error or record.stop_reason
    if record.status != "completed":
        status = "cancelled" if record.status == "cancelled" else "failed"
    else:
        try:
            output, error = json.loads(record.output or "null"), None
        except json.JSONDecodeError as exc:
            status, error = "failed", f"its output is not JSON ({exc.msg})"
    return ChildOutcome(
        run_id=record.run_id,
        status=status,
        output=output,
        error=error,
        # what it spent, failed or not
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        model_calls=record.model_calls,
    )
