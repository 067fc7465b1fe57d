"""The scorer extension point: what a scorer sees of an item's run (``Case``), what it gives back
(``Metric``), the ``Scorer`` ABC and the registry of scorer types by name.

A scorer reads only what was recorded (the answer, the tool calls, the run's row, its spans), so a
finished evaluation can be scored again without running or calling anything (``judged`` reuses the
reply it recorded).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.evals._dataset import Item

__all__ = [
    "Case",
    "Metric",
    "ScoreOptions",
    "Scorer",
    "ScorerEnv",
    "ToolCallRecord",
    "eval_scorers",
    "expected_value",
]


class ScoreOptions(BaseModel):
    """The options every scorer takes; each scorer's own model adds to them (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    #: the metric's name (default: the scorer's type)
    name: str | None = None
    #: a key of the item's ``expected`` mapping to compare with (default: the whole value)
    field: str | None = None


@dataclass(frozen=True, kw_only=True)
class ToolCallRecord:
    tool: str
    arguments: Any = None
    output: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments, "output": self.output, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCallRecord:
        return cls(
            tool=str(data["tool"]),
            arguments=data.get("arguments"),
            output=data.get("output"),
            error=data.get("error"),
        )


@dataclass(frozen=True, kw_only=True)
class Case:
    """An item with what its run recorded: everything a scorer may look at (plain, serialisable data)."""

    item: Item
    run_id: str | None
    status: str
    output: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    calls: tuple[ToolCallRecord, ...] = ()
    steps: int = 0
    #: seconds from the run's start to its end
    latency: float | None = None
    #: median time to first token of the run's model calls, from the trace store
    ttft: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    #: timeouts and faults per component, from the run's row
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    #: what earlier scoring recorded (a judge's reply), reused when an evaluation is scored again
    recorded: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "output": self.output,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "calls": [call.to_dict() for call in self.calls],
            "steps": self.steps,
            "latency": self.latency,
            "ttft": self.ttft,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "faults": self.faults,
        }

    @classmethod
    def from_dict(cls, item: Item, data: Mapping[str, Any], recorded: dict[str, Any] | None = None) -> Case:
        values = {
            key: data[key] for key in data if key in cls.__dataclass_fields__ and key not in ("calls", "item")
        }
        calls = tuple(ToolCallRecord.from_dict(call) for call in data.get("calls") or [])
        return cls(item=item, calls=calls, recorded=recorded or {}, **values)


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One measured value of one item: ``value`` is a score in [0, 1] for quality metrics or a raw
    quantity (seconds, tokens) for operational ones; ``passed`` says whether it counts as a pass."""

    name: str
    value: float | None
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True, kw_only=True)
class ScorerEnv:
    """What a scorer may need besides its options: where the suite is, settings, model providers."""

    base_dir: Path
    settings: Settings
    models: Registry[Any] | None = None


class Scorer(ABC):
    """A kind of score, configured by its ``Options`` (pydantic, ``extra="forbid"``)."""

    #: its options; subclasses extend ``ScoreOptions``
    Options: ClassVar[type[ScoreOptions]] = ScoreOptions

    def __init__(self, type_name: str, options: ScoreOptions, env: ScorerEnv) -> None:
        self.type = type_name
        self.options = options
        self.env = env
        self.name = options.name or type_name

    @abstractmethod
    async def score(self, case: Case) -> list[Metric]:
        """The metrics of one item; raising marks the item's score as broken, with the reason."""

    def metric(self, value: float | None, passed: bool | None = None, sub: str = "", **detail: Any) -> Metric:
        return Metric(
            name=f"{self.name}.{sub}" if sub else self.name, value=value, passed=passed, detail=detail
        )

    def expected(self, case: Case) -> Any:
        return expected_value(case.item, self.options.field)


def expected_value(item: Item, key: str | None) -> Any:
    expected = item.expected if item.expected is not None else item.reference
    if key is None:
        return expected
    if not isinstance(expected, dict) or key not in expected:
        raise ValueError(f"item {item.id}: expected has no field {key!r} (it is {json.dumps(expected)[:80]})")
    return expected[key]


def eval_scorers() -> Registry[type[Scorer]]:
    """The scorer types by name, imported at first use."""
    deterministic = "shopfloor.evals._deterministic"
    trajectory = "shopfloor.evals._trajectory"
    return Registry(
        "scorer",
        {
            "exact": f"{deterministic}:ExactScorer",
            "normalised": f"{deterministic}:NormalisedScorer",
            "numeric": f"{deterministic}:NumericScorer",
            "contains": f"{deterministic}:ContainsScorer",
            "regex": f"{deterministic}:RegexScorer",
            "json": f"{deterministic}:JsonFieldsScorer",
            "f1": f"{deterministic}:TokenF1Scorer",
            "entity": f"{deterministic}:EntityScorer",
            "trajectory": f"{trajectory}:TrajectoryScorer",
            "retrieval": f"{trajectory}:RetrievalScorer",
            "operational": f"{trajectory}:OperationalScorer",
            "custom": "shopfloor.evals._custom:CustomScorer",
            "bfcl": "shopfloor.evals._bfcl_scorer:BfclScorer",
            "agentdojo": "shopfloor.evals._agentdojo_scorer:AgentDojoScorer",
            "judged": "shopfloor.evals._custom:JudgedScorer",
        },
    )
