"""The Tool ABC, shared by everything an agent can call: skills, workspace file tools,
MCP tools, sub-agents. It sits below ``agent/`` so that ``skills/``, ``workspace/`` and
``connectors/`` can implement it without importing the agent loop. ``Children`` is what a run lends a
tool that hands parts of its work to child runs."""

from shopfloor.tools._calculate import calculate
from shopfloor.tools._children import ChildCall, ChildOutcome, Children, ChildStatus
from shopfloor.tools._edits import check_edit
from shopfloor.tools._tool import (
    Ask,
    AskModel,
    Budget,
    FunctionTool,
    Proposal,
    Tool,
    ToolContext,
    ToolKind,
    ToolServices,
)

__all__ = [
    "Ask",
    "AskModel",
    "Budget",
    "ChildCall",
    "ChildOutcome",
    "ChildStatus",
    "Children",
    "FunctionTool",
    "Proposal",
    "Tool",
    "ToolContext",
    "ToolKind",
    "ToolServices",
    "calculate",
    "check_edit",
]
