"""A run's recorded steps, read back from DBOS: what ``shopfloor replay`` feeds into the loop.

Each model or tool step is recorded as ``{"result": <the step's JSON>, "elapsed": s}``
(or ``{"raise": {...}}`` when it failed in a way the loop reacts to); an approval
is DBOS's record of the received message (``None`` after a timeout). This module
is the one place that knows that shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RecordedStep", "StepKind", "recorded_steps_from"]

StepKind = Literal["model", "tool", "schema", "approval"]


@dataclass(frozen=True, kw_only=True)
class RecordedStep:
    #: position among the run's recorded operations (DBOS function id)
    index: int
    #: ``model:N``, ``tool:STEP:NAME`` or ``approval``
    name: str
    kind: StepKind
    #: the JSON the step returned to the loop (an approval: the decision message, None on timeout)
    output: Any
    #: set when the step ended in an exception the loop handles: {"type": ..., "message": ...}
    raised: dict[str, str] | None = None
    #: the run's active seconds when the step ended (the clock the wall-time limit reads)
    elapsed: float | None = None
    started_at: float | None = None
    completed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _kind(name: str) -> StepKind:
    prefix = name.partition(":")[0]
    return "model" if prefix == "model" else "schema" if prefix == "schema" else "tool"


def recorded_steps_from(infos: Iterable[Any]) -> list[RecordedStep]:
    """Our steps out of DBOS's ``StepInfo`` list, in order (DBOS's bookkeeping sleeps left out)."""
    steps = []
    for info in infos:
        name = info["function_name"]
        started = info.get("started_at_epoch_ms")
        completed = info.get("completed_at_epoch_ms")
        times = {
            "started_at": started / 1000 if started else None,
            "completed_at": completed / 1000 if completed else None,
        }
        if name.startswith(("model:", "tool:", "schema:")):
            recorded = info["output"] or {}
            steps.append(
                RecordedStep(
                    index=info["function_id"],
                    name=name,
                    kind=_kind(name),
                    output=recorded.get("result"),
                    raised=recorded.get("raise"),
                    elapsed=recorded.get("elapsed"),
                    **times,
                )
            )
        elif name == "DBOS.recv":
            steps.append(
                RecordedStep(
                    index=info["function_id"],
                    name="approval",
                    kind="approval",
                    output=info["output"],
                    **times,
                )
            )
    return steps
