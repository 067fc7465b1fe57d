"""A run's recorded steps: the one type for them, and how they are read back from DBOS.

``RecordedStep`` is what ``shopfloor replay`` feeds into the loop, whether the record came
from DBOS, from the local trace store or from a ``RecordingStepRunner``. Each model or tool step
is recorded in DBOS as ``{"result": <the step's JSON>, "elapsed": s}`` (or ``{"raise": {...}}``
when it failed in a way the loop reacts to); an approval is DBOS's record of the received message
(``None`` after a timeout), or, in a fork before its fork step, a step ``approval`` recording
``{"result": <the parent's message>}``. This module is the one place that knows that shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["APPROVAL", "RecordedStep", "StepKind", "recorded_steps_from", "step_kind"]

StepKind = Literal["model", "tool", "schema", "approval"]
#: the name of an approval decision in a record
APPROVAL = "approval"


def step_kind(name: str) -> StepKind:
    """The kind of step a durable step name (``model:3``, ``tool:2:search``, ``approval``) names."""
    if name == APPROVAL:
        return "approval"
    prefix = name.partition(":")[0]
    return "model" if prefix == "model" else "schema" if prefix == "schema" else "tool"


@dataclass(frozen=True, kw_only=True)
class RecordedStep:
    #: ``model:N``, ``tool:STEP:NAME`` or ``approval``
    name: str
    #: the JSON the step returned to the loop (an approval: the decision message, None on timeout)
    output: Any = None
    #: set when the step ended in an exception the loop handles: {"type": ..., "message": ...}
    raised: dict[str, str] | None = None
    #: the run's active seconds when the step ended (the clock the wall-time limit reads)
    elapsed: float | None = None
    #: position among the run's recorded operations (DBOS function id); None outside DBOS
    index: int | None = None
    started_at: float | None = None
    completed_at: float | None = None

    @property
    def kind(self) -> StepKind:
        return step_kind(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            **{
                name: getattr(self, name)
                for name in self.__dataclass_fields__
                if name not in ("index", "name")
            },
        }


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
                    output=recorded.get("result"),
                    raised=recorded.get("raise"),
                    elapsed=recorded.get("elapsed"),
                    **times,
                )
            )
        elif name == APPROVAL:  # a fork's approval taken from its parent's record (``_runner``)
            steps.append(
                RecordedStep(
                    index=info["function_id"],
                    name=APPROVAL,
                    output=(info["output"] or {}).get("result"),
                    **times,
                )
            )
        elif name == "DBOS.recv":
            steps.append(
                RecordedStep(
                    index=info["function_id"],
                    name=APPROVAL,
                    output=info["output"],
                    **times,
                )
            )
    return steps
