"""Plain records of a run: the events it emits as it goes, its steps, and its result.

All are frozen dataclasses of JSON-able values, with a ``kind`` discriminator on
events, so they can be stored, streamed (CLI follow mode, SSE) and replayed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "ApprovalDecision",
    "ApprovalRequest",
    "RunEvent",
    "RunResult",
    "RunStatus",
    "StepRecord",
    "StopReason",
    "TokenTotals",
]

StopReason = Literal[
    "final_answer",
    "max_steps",
    "max_tokens",
    "wall_time",
    "step_timeout",
    "invalid_output",
    "model_error",
    "cancelled",
    "guardrail",
    "budget",
    #: a person rejected what a tool proposed to do (a research plan)
    "rejected",
    #: a child run's one call (``Tool.call_child``) failed
    "tool_error",
]
RunStatus = Literal["completed", "failed", "cancelled"]

EventKind = Literal[
    "run_started",
    "model_reply",
    "invalid_reply",
    "tool_call",
    "tool_result",
    "approval_requested",
    "approval_decided",
    "context_trimmed",
    "guardrail",
    "run_finished",
]


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    kind: EventKind
    run_id: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)
    #: ``data`` as ``COMPACT`` writes it, where whoever made the event had the text already (the loop's
    #: redaction screen reads it): a store writes it as it is rather than encoding ``data`` again
    data_json: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        del values["data_json"]
        return values


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One turn of the loop: the model's chosen action and what the tool returned."""

    step: int
    tool: str
    arguments: dict[str, Any]
    output: Any = None
    error: str | None = None
    #: "rejected": a person rejected the call; "proposal_rejected": what the tool proposed (its plan)
    error_kind: (
        Literal["arguments", "execution", "timeout", "rejected", "proposal_rejected", "guardrail"] | None
    ) = None
    duration: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TokenTotals:
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {**vars(self), "total_tokens": self.total}

    def add(self, input_tokens: int, output_tokens: int) -> TokenTotals:
        return TokenTotals(
            input_tokens=self.input_tokens + input_tokens,
            output_tokens=self.output_tokens + output_tokens,
            model_calls=self.model_calls + 1,
        )

    def plus(self, other: TokenTotals) -> TokenTotals:
        return TokenTotals(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            model_calls=self.model_calls + other.model_calls,
        )

    def since(self, earlier: TokenTotals) -> TokenTotals:
        """What was spent between ``earlier`` and these totals."""
        return TokenTotals(
            input_tokens=self.input_tokens - earlier.input_tokens,
            output_tokens=self.output_tokens - earlier.output_tokens,
            model_calls=self.model_calls - earlier.model_calls,
        )

    @classmethod
    def from_dict(cls, data: Any) -> TokenTotals:
        """Totals as ``to_dict`` wrote them (a recorded step's ``usage``); what is not a count is 0."""
        if not isinstance(data, dict):
            return cls()
        counts = {
            name: value
            for name in ("input_tokens", "output_tokens", "model_calls")
            if isinstance(value := data.get(name), int) and not isinstance(value, bool)
        }
        return cls(**counts)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    run_id: str
    status: RunStatus
    stop_reason: StopReason
    output: str | None
    steps: tuple[StepRecord, ...]
    usage: TokenTotals
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = self.usage.to_dict()
        return data


@dataclass(frozen=True, kw_only=True)
class ApprovalRequest:
    run_id: str
    step: int
    tool: str
    arguments: dict[str, Any]
    approvers: tuple[str, ...]
    timeout: float | None
    #: what the tool proposed (``Tool.propose``), None for a call that only needs approval
    proposal: dict[str, Any] | None = None
    #: the proposal's fields an approver may change, each with the JSON schema it allows
    editable: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ApprovalDecision:
    approved: bool
    by: str = ""
    reason: str = ""
    #: the proposal as the approver edited it (checked against the tool's ``editable``); None: as proposed
    proposal: dict[str, Any] | None = None

    def message(self) -> dict[str, Any]:
        """The decision as the message a run receives and records."""
        sent = {"approved": self.approved, "by": self.by, "reason": self.reason}
        return sent if self.proposal is None else {**sent, "proposal": self.proposal}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> ApprovalDecision:
        """A decision from the message a run received (``message``'s inverse)."""
        edited = message.get("proposal")
        return cls(
            approved=bool(message.get("approved")),
            by=str(message.get("by", "")),
            reason=str(message.get("reason", "")),
            proposal=edited if isinstance(edited, dict) else None,
        )
