"""Replaying a recorded run through the agent loop, and forking it at a step.

Replay feeds the loop the recorded outputs (no model, tool or sandbox is
called): the loop is deterministic given its step results, so the same agent
asks for the same steps in the same order and reaches the same answer. A
changed agent shows where it departs: the first step it asks for that the
record does not have. A fork replays the record up to a step, then runs live,
possibly with another agent version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shopfloor.agent import AgentLoop, InMemoryStepRunner, RunResult, StepRunner
from shopfloor.errors import ReplayDivergence
from shopfloor.ops.replay._runner import ReplayStepRunner, as_recorded
from shopfloor.runtime import RecordedStep

__all__ = ["ReplayReport", "StepCheck", "fork_index", "fork_run", "replay_run"]


@dataclass(frozen=True, kw_only=True)
class StepCheck:
    index: int  # 1-based position in the record
    expected: str | None  # the recorded step (None: past the end of the record)
    actual: str | None  # what the replayed loop asked for (None: it stopped before)
    live: bool = False  # run live (after a fork point), not compared

    @property
    def same(self) -> bool:
        return self.live or self.expected == self.actual


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    run_id: str
    steps: tuple[StepCheck, ...]
    #: the first step that differs, None where every step came out the same
    divergence: StepCheck | None
    reason: str | None
    output: str | None
    expected_output: str | None
    status: str | None
    result: RunResult | None
    forked_at: int | None = None

    @property
    def same(self) -> bool:
        """Every step and the final answer came out as recorded (a fork compares its replayed prefix)."""
        if self.divergence is not None:
            return False
        if self.forked_at is not None or self.expected_output is None:
            return True
        return self.output == self.expected_output

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "same": self.same,
            "forked_at": self.forked_at,
            "divergence": _check_dict(self.divergence) if self.divergence else None,
            "reason": self.reason,
            "output": self.output,
            "expected_output": self.expected_output,
            "status": self.status,
            "steps": [_check_dict(check) for check in self.steps],
        }


def _check_dict(check: StepCheck) -> dict[str, Any]:
    return {
        "index": check.index,
        "expected": check.expected,
        "actual": check.actual,
        "same": check.same,
        "live": check.live,
    }


def _checks(
    recorded: Sequence[RecordedStep], asked: Sequence[str], *, live_from: int | None
) -> list[StepCheck]:
    checks = []
    for i in range(max(len(recorded), len(asked))):
        live = live_from is not None and i + 1 >= live_from
        expected = recorded[i].name if i < len(recorded) and not live else None
        checks.append(
            StepCheck(index=i + 1, expected=expected, actual=asked[i] if i < len(asked) else None, live=live)
        )
    return checks


async def _run(
    loop: AgentLoop, task: str, runner: ReplayStepRunner, *, run_id: str, live_from: int | None
) -> tuple[RunResult | None, StepCheck | None, str | None]:
    try:
        result = await loop.run(task, run_id=run_id, runner=runner)
    except ReplayDivergence as exc:
        return None, StepCheck(index=exc.index, expected=exc.expected, actual=exc.actual), str(exc)
    if live_from is None and runner.remaining:
        unused = runner.remaining[0]
        ended = ReplayDivergence(index=runner.position + 1, expected=unused.name, actual=None)
        return result, StepCheck(index=runner.position + 1, expected=unused.name, actual=None), str(ended)
    return result, None, None


async def replay_run(
    loop: AgentLoop,
    task: str,
    recorded: Iterable[RecordedStep | tuple[str, Any]],
    *,
    run_id: str,
    expected_output: str | None = None,
) -> ReplayReport:
    """Run ``loop`` on ``task`` with every step's output taken from ``recorded``."""
    record = as_recorded(recorded)
    runner = ReplayStepRunner(record)
    result, divergence, reason = await _run(loop, task, runner, run_id=run_id, live_from=None)
    output = result.output if result is not None else None
    if divergence is None and expected_output is not None and output != expected_output:
        reason = f"every step came out the same but the answer differs: {output!r} != {expected_output!r}"
    return ReplayReport(
        run_id=run_id,
        steps=tuple(_checks(record, runner.asked, live_from=None)),
        divergence=divergence,
        reason=reason,
        output=output,
        expected_output=expected_output,
        status=result.status if result is not None else None,
        result=result,
    )


def fork_index(recorded: Sequence[RecordedStep], at: str | int) -> int:
    """The 1-based position of step ``at`` (a position or a step name) in the record."""
    if isinstance(at, int) or at.isdigit():
        index = int(at)
        if not 1 <= index <= len(recorded) + 1:
            raise ValueError(f"step {index} is outside the record (1..{len(recorded) + 1})")
        return index
    for position, step in enumerate(recorded, start=1):
        if step.name == at:
            return position
    names = ", ".join(step.name for step in recorded)
    raise ValueError(f"no step named {at!r} in the record; its steps are: {names}")


async def fork_run(
    loop: AgentLoop,
    task: str,
    recorded: Iterable[RecordedStep | tuple[str, Any]],
    *,
    at: str | int,
    run_id: str,
    runner: StepRunner | None = None,
) -> ReplayReport:
    """Replay ``recorded`` before step ``at``, then run ``loop`` live from it (through ``runner``)."""
    record = as_recorded(recorded)
    index = fork_index(record, at)
    replay = ReplayStepRunner(record[: index - 1], live=runner or InMemoryStepRunner())
    result, divergence, reason = await _run(loop, task, replay, run_id=run_id, live_from=index)
    return ReplayReport(
        run_id=run_id,
        steps=tuple(_checks(record[: index - 1], replay.asked, live_from=index)),
        divergence=divergence,
        reason=reason,
        output=result.output if result is not None else None,
        expected_output=None,
        status=result.status if result is not None else None,
        result=result,
        forked_at=index,
    )
