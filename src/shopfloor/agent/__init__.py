"""The agent loop: structured tool choice, budgets, context management, built-in tools."""

from shopfloor.agent._build import build_agent
from shopfloor.agent._builtin import BuiltinFactory, builtin_tools, calculate, import_source, load_tool
from shopfloor.agent._context import ContextWindow, Turn, WindowFit
from shopfloor.agent._decide import (
    FINAL_ANSWER,
    Action,
    DecisionStrategy,
    Invalid,
    Native,
    OneShot,
    TwoPhase,
    named_choices,
    only_option,
    rank_choices,
    strategy_for,
)
from shopfloor.agent._loop import AgentLoop, EventSink
from shopfloor.agent._records import (
    ApprovalDecision,
    ApprovalRequest,
    RunEvent,
    RunResult,
    RunStatus,
    StepRecord,
    StopReason,
    TokenTotals,
)
from shopfloor.agent._steps import ApprovalPolicy, InMemoryStepRunner, StepRunner, rebuild_error

__all__ = [
    "FINAL_ANSWER",
    "Action",
    "AgentLoop",
    "ApprovalDecision",
    "ApprovalPolicy",
    "ApprovalRequest",
    "BuiltinFactory",
    "ContextWindow",
    "DecisionStrategy",
    "EventSink",
    "InMemoryStepRunner",
    "Invalid",
    "Native",
    "OneShot",
    "RunEvent",
    "RunResult",
    "RunStatus",
    "StepRecord",
    "StepRunner",
    "StopReason",
    "TokenTotals",
    "Turn",
    "TwoPhase",
    "WindowFit",
    "build_agent",
    "builtin_tools",
    "calculate",
    "import_source",
    "load_tool",
    "named_choices",
    "only_option",
    "rank_choices",
    "rebuild_error",
    "strategy_for",
]
