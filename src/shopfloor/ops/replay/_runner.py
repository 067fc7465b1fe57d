"""Step runners for replay: one records a live run's steps, one feeds a record back.

A record is the run's steps in order, each a ``RecordedStep`` (the runtime's type, the
shape it reads out of DBOS): a name (``model:3``, ``tool:2:search``, ``approval``) and
its JSON output; a step that failed in a way the loop reacts to carries ``raised``
(``{"type": "TimeoutError", "message": ...}``) instead of an output, and the run's
active seconds at the step's end (``elapsed``) so the wall-time limit sees the clock
the original saw.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from shopfloor import errors
from shopfloor.agent import ApprovalDecision, ApprovalRequest, InMemoryStepRunner, StepRunner, rebuild_error
from shopfloor.errors import ReplayDivergence
from shopfloor.runtime import APPROVAL, RecordedStep

__all__ = ["RecordingStepRunner", "ReplayStepRunner", "as_recorded"]

JSON = Any


def as_recorded(steps: Iterable[RecordedStep | tuple[str, JSON]]) -> list[RecordedStep]:
    """A record from recorded steps or ``(name, output)`` pairs."""
    return [
        item if isinstance(item, RecordedStep) else RecordedStep(name=item[0], output=item[1])
        for item in steps
    ]


def _decision(message: Any) -> ApprovalDecision:
    if not isinstance(message, dict):
        return ApprovalDecision(approved=False, by="shopfloor", reason="timeout")
    return ApprovalDecision.from_message(message)


class RecordingStepRunner(StepRunner):
    """Runs every step through ``inner`` and keeps the record a replay needs (``steps``)."""

    def __init__(self, inner: StepRunner | None = None) -> None:
        self.inner = inner or InMemoryStepRunner()
        self.steps: list[RecordedStep] = []

    async def step(self, name: str, fn: Callable[[], Awaitable[JSON]], *, effects: bool = False) -> JSON:
        try:
            output = await self.inner.step(name, fn, effects=effects)
        except (TimeoutError, errors.ShopfloorError) as exc:
            raised = {"type": type(exc).__name__, "message": str(exc)}
            self.steps.append(RecordedStep(name=name, raised=raised, elapsed=self.inner.elapsed()))
            raise
        self.steps.append(RecordedStep(name=name, output=copy.deepcopy(output), elapsed=self.inner.elapsed()))
        return output

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        decision = await self.inner.wait_for_approval(request)
        self.steps.append(
            RecordedStep(name=APPROVAL, output=decision.message(), elapsed=self.inner.elapsed())
        )
        return decision

    def elapsed(self) -> float:
        return self.inner.elapsed()

    async def check_cancelled(self) -> bool:
        return await self.inner.check_cancelled()


class ReplayStepRunner(StepRunner):
    """Returns the recorded outputs in order and calls nothing.

    A step whose name differs from the record's next one raises ``ReplayDivergence``.
    With ``live``, the steps after the record run live through it (a fork);
    without, asking for more steps than were recorded is a divergence too.
    """

    def __init__(
        self, recorded: Iterable[RecordedStep | tuple[str, JSON]], *, live: StepRunner | None = None
    ) -> None:
        self.recorded: Sequence[RecordedStep] = as_recorded(recorded)
        self.live = live
        #: names the loop asked for, in order
        self.asked: list[str] = []
        self.position = 0
        self.cancelled = False
        self._clock = 0.0
        self._live_since: float | None = None

    @property
    def remaining(self) -> Sequence[RecordedStep]:
        return self.recorded[self.position :]

    def _next(self, name: str) -> RecordedStep | None:
        self.asked.append(name)
        if self.position >= len(self.recorded):
            if self.live is None:
                raise ReplayDivergence(index=self.position + 1, expected=None, actual=name)
            if self._live_since is None:
                self._live_since = time.monotonic()
            return None
        record = self.recorded[self.position]
        if record.name != name:
            raise ReplayDivergence(index=self.position + 1, expected=record.name, actual=name)
        self.position += 1
        if record.elapsed is not None:
            self._clock = record.elapsed
        return record

    async def step(self, name: str, fn: Callable[[], Awaitable[JSON]], *, effects: bool = False) -> JSON:
        record = self._next(name)
        if record is None:
            assert self.live is not None  # _next returns None only when live
            return await self.live.step(name, fn, effects=effects)
        if record.raised is not None:
            raise rebuild_error(record.raised)
        return copy.deepcopy(record.output)

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        record = self._next(APPROVAL)
        if record is None:
            assert self.live is not None
            return await self.live.wait_for_approval(request)
        if isinstance(record.output, dict) and record.output.get("cancel"):
            self.cancelled = True
            return ApprovalDecision(approved=False, by=str(record.output.get("by", "")), reason="cancelled")
        return _decision(record.output)

    def elapsed(self) -> float:
        if self._live_since is None:
            return self._clock
        return self._clock + (time.monotonic() - self._live_since)

    async def check_cancelled(self) -> bool:
        if self.cancelled:
            return True
        return self._live_since is not None and self.live is not None and await self.live.check_cancelled()
