"""The durable StepRunner: each step of the agent loop is a DBOS step.

A step's result is recorded once, in DBOS's own commit; on recovery DBOS returns
the recorded value instead of calling the step again. What is recorded is the
step's JSON result wrapped with the run's active time at the end of the step
(``{"result": ..., "elapsed": s}``), so the wall-time limit sees the same clock
when a recovered run replays its steps (it would otherwise count the downtime
and could stop at a step where the original went on). Failures the loop reacts
to (a timeout, a model error) are recorded as data too and raised again after
the step, so a replay raises the same exception type the original saw.

Approvals wait with ``DBOS.recv_async`` on a topic per step: durable across
restarts, with an optional durable timeout, and no thread held while waiting.

A fork's runner is given its parent's recorded steps before the fork step (``prefix``): each is
a DBOS step of the fork too, whose body hands back the parent's recorded output (or raises what
it raised) instead of calling anything, and an approval in it is the parent's decision recorded
as a step named ``approval``. So the fork's own record is complete (it can be replayed and forked
in turn) and a recovered fork replays its prefix like any step. A loop that asks for another step
than the parent's record has there (the agent changed since) raises ``ReplayDivergence``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dbos import DBOS

from shopfloor import errors
from shopfloor.agent import ApprovalDecision, ApprovalRequest, StepRunner, rebuild_error
from shopfloor.errors import ReplayDivergence
from shopfloor.runtime._steps import APPROVAL, RecordedStep
from shopfloor.telemetry import redact, redact_exception

__all__ = ["DBOSStepRunner", "approval_topic"]

JSON = Any
#: An approval without a timeout waits this long (DBOS's recv needs a finite deadline).
FOREVER = 10 * 365 * 24 * 3600.0


def approval_topic(step: int) -> str:
    return f"approval:{step}"


def _recorded_output(record: RecordedStep) -> Callable[[], Awaitable[JSON]]:
    """A step body that gives back what ``record`` recorded, calling nothing."""

    async def recorded() -> JSON:
        if record.raised is not None:
            raise rebuild_error(record.raised)
        return copy.deepcopy(record.output)

    return recorded


def component_of(step_name: str) -> str:
    """``model:3`` -> ``model``; ``tool:2:calculator`` -> ``tool:calculator``."""
    kind, _, rest = step_name.partition(":")
    return kind if kind == "model" else f"{kind}:{rest.partition(':')[2]}"


class DBOSStepRunner(StepRunner):
    def __init__(
        self,
        run_id: str,
        *,
        on_wait: Callable[[ApprovalRequest], Awaitable[None]] | None = None,
        on_resume: Callable[[ApprovalRequest], Awaitable[None]] | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
        confirm: Callable[[], Awaitable[None]] | None = None,
        prefix: Sequence[RecordedStep] = (),
        records_yield: bool = False,
    ) -> None:
        self.run_id = run_id
        #: a fork's first steps: its parent's recorded steps before the fork step, taken in order
        self.prefix = prefix
        self._taken = 0
        #: commits deferred step records (``durability = "batched"``) and waits for every commit
        self._flush = flush
        #: waits until every recorded step is committed (a step may be given back before its commit)
        self._confirm = confirm
        #: a step that runs gives the loop back in its record (the SQLite recorder's group commit
        #: with ``durability = "sync"``): only a replayed one needs a turn of its own (``step``)
        self._records_yield = records_yield
        #: the last step that ran may have acted outside the run: the next one waits for its record
        self._after_effects = False
        self.cancelled = False
        #: timeouts and faults per component, counted from the (recorded) step results
        self.faults: dict[str, dict[str, int]] = {}
        self.replayed_steps = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.model_calls = 0
        self.executed_steps = 0
        self._on_wait = on_wait
        self._on_resume = on_resume
        self._base = 0.0
        self._mark = time.monotonic()
        self._live = True

    def elapsed(self) -> float:
        # After a replayed step the clock stands at what was recorded: deterministic replay.
        return self._base + (time.monotonic() - self._mark) if self._live else self._base

    async def check_cancelled(self) -> bool:
        return self.cancelled

    def _from_prefix(self, name: str) -> RecordedStep | None:
        """The parent's recorded step ``name`` where the fork is still before its fork step."""
        if self._taken >= len(self.prefix):
            return None
        record = self.prefix[self._taken]
        if record.name != name:
            raise ReplayDivergence(index=self._taken + 1, expected=record.name, actual=name)
        self._taken += 1
        return record

    async def step(self, name: str, fn: Callable[[], Awaitable[JSON]], *, effects: bool = False) -> JSON:
        executed = False
        record = self._from_prefix(name) if self.prefix else None  # a fork's; most runs have none
        if record is not None:
            fn = _recorded_output(record)

        async def body() -> dict[str, Any]:
            nonlocal executed
            executed = True
            try:
                result: dict[str, Any] = {"result": await fn()}
            except TimeoutError as exc:
                result = {"raise": {"type": "TimeoutError", "message": redact(str(exc))}}
            except errors.ShopfloorError as exc:
                result = {"raise": {"type": type(exc).__name__, "message": redact(str(exc))}}
            except Exception as exc:  # DBOS records what a step raises: redacted like its output
                redact_exception(exc)
                raise
            result["elapsed"] = self._base + (time.monotonic() - self._mark)
            if record is not None and record.elapsed is not None:
                result["elapsed"] = record.elapsed  # the clock the parent's limit saw
            return result

        if effects or self._after_effects:
            # A step that may act outside the run starts once the steps before it (the model call
            # that chose it) are durable, and the step after it once its own record is: so what it
            # did is never done again because a record was lost, whatever ``durability`` defers.
            await self.flush()
        elif self._confirm is not None:
            # No step starts before the steps before it are durable (``confirm_steps``; with
            # ``durability = "batched"`` it waits for nothing: those records are committed behind).
            await self._confirm()
        recorded = await DBOS.run_step_async({"name": name}, body)
        self._after_effects = effects and executed
        # With DBOS's bookkeeping in place (SQLite, ``_dbos_internals.py``) a step whose body never
        # waits, replayed or committed behind the run (``batched``), would not give the loop back:
        # it yields here, so the other runs of this worker, the event flusher and the runtime's own
        # tasks take turns. A step recorded in a group commit waited for its insert already.
        if not (executed and self._records_yield):
            await asyncio.sleep(0)
        self._base, self._mark, self._live = float(recorded["elapsed"]), time.monotonic(), executed
        if executed:
            self.executed_steps += 1
        else:
            self.replayed_steps += 1
        self._count_faults(name, recorded)
        if name.startswith("model:") and isinstance(recorded.get("result"), dict):
            usage = recorded["result"].get("usage") or {}
            self.input_tokens += int(usage.get("input_tokens", 0))
            self.output_tokens += int(usage.get("output_tokens", 0))
            self.model_calls += 1
        if "raise" in recorded:
            raise rebuild_error(recorded["raise"])
        return recorded["result"]

    async def flush(self) -> None:
        if self._flush is not None:
            await self._flush()

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        await self.flush()
        record = self._from_prefix(APPROVAL)
        if record is not None:
            decided = record.output

            async def body() -> dict[str, Any]:
                return {"result": copy.deepcopy(decided)}

            message = (await DBOS.run_step_async({"name": APPROVAL}, body))["result"]
        else:
            message = await self._wait(request)
        if not isinstance(message, dict):
            self._count("approval", "timeout")
            return ApprovalDecision(approved=False, by="shopfloor", reason="timeout")
        if message.get("cancel"):
            self.cancelled = True
            return ApprovalDecision(
                approved=False, by=str(message.get("by", "")), reason="the run was cancelled"
            )
        return ApprovalDecision.from_message(message)

    async def _wait(self, request: ApprovalRequest) -> Any:
        if self._on_wait is not None:
            await self._on_wait(request)
        message = await DBOS.recv_async(
            approval_topic(request.step), timeout_seconds=request.timeout or FOREVER
        )
        # Time spent waiting for a person is not the agent's: it does not count against wall time.
        self._mark = time.monotonic()
        if self._on_resume is not None:
            await self._on_resume(request)
        return message

    async def sleep(self, seconds: float) -> None:
        """A durable sleep: a recovered run sleeps only for what was left."""
        await self.flush()
        await DBOS.sleep_async(seconds)

    def _count_faults(self, name: str, recorded: dict[str, Any]) -> None:
        if "raise" in recorded:
            kind = "timeout" if recorded["raise"]["type"] == "TimeoutError" else "error"
            self._count(component_of(name), kind)
            return
        result = recorded["result"]
        if isinstance(result, dict) and result.get("error_kind") in ("timeout", "execution"):
            self._count(component_of(name), "timeout" if result["error_kind"] == "timeout" else "error")

    def _count(self, component: str, kind: str) -> None:
        counts = self.faults.setdefault(component, {})
        counts[kind] = counts.get(kind, 0) + 1
