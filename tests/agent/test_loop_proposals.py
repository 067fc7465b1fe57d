"""A tool that proposes what it will do (``Tool.propose``): the proposal is a step of its own, approved by
a person before the call runs with it; rejected, the run ends; one that needs no approval runs at once."""

from __future__ import annotations

from typing import Any

import pytest

from shopfloor.agent import AgentLoop, ApprovalDecision, ApprovalRequest, InMemoryStepRunner, RunEvent
from shopfloor.errors import ToolExecutionError
from shopfloor.models import FunctionModel
from shopfloor.ops.replay import RecordingStepRunner
from shopfloor.tools import Proposal, Tool, ToolContext

EDITABLE = {"plan": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 40}}}


class Planner(Tool):
    """Plans the searches of a question (deep when it says "and"), then searches what was approved."""

    name = "search"
    description = "Search for a question"
    input_schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
        "additionalProperties": False,
    }
    proposes = True

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.called: list[dict[str, Any] | None] = []

    async def propose(self, args: dict[str, Any], ctx: ToolContext) -> Proposal | None:
        if self.fail:
            raise ToolExecutionError("the planner failed")
        parts = str(args["question"]).split(" and ")
        return Proposal(data={"plan": parts}, needs_approval=len(parts) > 1, editable=EDITABLE)

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.called.append(ctx.proposal)
        return {"searched": (ctx.proposal or {}).get("plan", [])}


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


class Person:
    def __init__(self, *, approve: bool, edit: dict[str, Any] | None = None) -> None:
        self.approve = approve
        self.edit = edit
        self.asked: list[ApprovalRequest] = []

    async def __call__(self, request: ApprovalRequest) -> ApprovalDecision:
        self.asked.append(request)
        return ApprovalDecision(
            approved=self.approve, by="ann", reason="" if self.approve else "too broad", proposal=self.edit
        )


async def test_an_approved_proposal_is_what_the_call_runs_with() -> None:
    tool, person = Planner(), Person(approve=True)
    model = FunctionModel(
        outputs=[call("search", question="venv and pip"), call("final_answer", answer="ok")]
    )
    events: list[RunEvent] = []
    runner = RecordingStepRunner(InMemoryStepRunner(person))
    result = await AgentLoop(model=model, tools=[tool], approvers=("ann",)).run(
        "q", run_id="r", runner=runner, on_event=events.append
    )
    assert result.status == "completed"
    assert [(r.tool, r.arguments) for r in person.asked] == [
        ("search", {"question": "venv and pip", "proposal": {"plan": ["venv", "pip"]}})
    ]
    assert tool.called == [{"plan": ["venv", "pip"]}]
    assert result.steps[0].output == {"searched": ["venv", "pip"]}
    names = [s.name for s in runner.steps]
    assert names[1:4] == ["tool:1:search:propose", "approval", "tool:1:search"], names
    requested = next(e for e in events if e.kind == "approval_requested")
    assert requested.data["arguments"]["proposal"] == {"plan": ["venv", "pip"]}


async def test_a_rejected_proposal_ends_the_run_without_calling_the_tool() -> None:
    tool, person = Planner(), Person(approve=False)
    model = FunctionModel(outputs=[call("search", question="venv and pip"), call("final_answer", answer="x")])
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person)
    )
    assert (result.status, result.stop_reason) == ("failed", "rejected")
    assert result.error == "the proposal was rejected by ann: too broad"
    assert result.steps[0].error_kind == "proposal_rejected" and tool.called == []
    assert result.usage.model_calls == 1, "the model is not asked again"


async def test_a_proposal_that_needs_no_approval_runs_at_once() -> None:
    tool, person = Planner(), Person(approve=False)
    model = FunctionModel(outputs=[call("search", question="venv"), call("final_answer", answer="ok")])
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person)
    )
    assert result.status == "completed" and person.asked == []
    assert tool.called == [{"plan": ["venv"]}]


@pytest.mark.parametrize("approve", [True, False])
async def test_a_failed_proposal_is_a_tool_error_for_the_model(approve: bool) -> None:
    tool, person = Planner(fail=True), Person(approve=approve)
    model = FunctionModel(
        outputs=[call("search", question="a and b"), call("final_answer", answer="gave up")]
    )
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person)
    )
    assert result.status == "completed" and result.output == "gave up"
    assert (result.steps[0].error, result.steps[0].error_kind) == ("the planner failed", "execution")
    assert person.asked == [] and tool.called == []


async def test_an_edited_proposal_is_what_the_call_runs_with_and_the_edit_is_recorded() -> None:
    tool, person = Planner(), Person(approve=True, edit={"plan": ["venv module", "pip install", "wheels"]})
    model = FunctionModel(
        outputs=[call("search", question="venv and pip"), call("final_answer", answer="ok")]
    )
    events: list[RunEvent] = []
    runner = RecordingStepRunner(InMemoryStepRunner(person))
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=runner, on_event=events.append
    )
    assert result.status == "completed"
    assert (person.asked[0].proposal, person.asked[0].editable) == ({"plan": ["venv", "pip"]}, EDITABLE)
    assert tool.called == [{"plan": ["venv module", "pip install", "wheels"]}]
    decided = next(e for e in events if e.kind == "approval_decided")
    assert decided.data["edit"] == {
        "before": {"plan": ["venv", "pip"]},
        "after": {"plan": ["venv module", "pip install", "wheels"]},
    }
    requested = next(e for e in events if e.kind == "approval_requested")
    assert requested.data["editable"] == ["plan"]
    recorded = next(s for s in runner.steps if s.name == "approval")
    assert recorded.output["proposal"] == {"plan": ["venv module", "pip install", "wheels"]}, "replayable"


async def test_an_edit_sent_unchanged_is_no_edit() -> None:
    tool, person = Planner(), Person(approve=True, edit={"plan": ["venv", "pip"]})
    model = FunctionModel(
        outputs=[call("search", question="venv and pip"), call("final_answer", answer="ok")]
    )
    events: list[RunEvent] = []
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person), on_event=events.append
    )
    assert result.status == "completed" and tool.called == [{"plan": ["venv", "pip"]}]
    assert "edit" not in next(e for e in events if e.kind == "approval_decided").data


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"plan": ["x" * 41]}, "proposal.plan.0: at most 40 characters, got 41"),
        ({"plan": ["a"], "extra": 1}, "proposal.extra: no such field"),
    ],
)
async def test_an_edit_the_tool_does_not_allow_ends_the_run_without_calling_it(
    edit: dict[str, Any], why: str
) -> None:
    """The runtime refuses such an edit when it is given; a decision that reaches the run with one anyway
    (a message sent past the runtime) is refused again, never run."""
    tool, person = Planner(), Person(approve=True, edit=edit)
    model = FunctionModel(outputs=[call("search", question="venv and pip"), call("final_answer", answer="x")])
    events: list[RunEvent] = []
    result = await AgentLoop(model=model, tools=[tool]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person), on_event=events.append
    )
    assert (result.status, result.stop_reason) == ("failed", "rejected")
    assert result.error is not None and why in result.error and tool.called == []
    assert next(e for e in events if e.kind == "approval_decided").data["approved"] is False


async def test_an_edit_of_a_call_that_proposed_nothing_is_refused() -> None:
    class Transfer(Tool):
        name = "transfer"
        description = "Move money"
        input_schema = {"type": "object", "properties": {}, "additionalProperties": False}
        requires_approval = True

        async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
            raise AssertionError("never called")

    person = Person(approve=True, edit={"amount": 1})
    model = FunctionModel(outputs=[call("transfer"), call("final_answer", answer="x")])
    result = await AgentLoop(model=model, tools=[Transfer()]).run(
        "q", run_id="r", runner=InMemoryStepRunner(person)
    )
    assert result.steps[0].error == "ann sent an edited proposal for a call that proposed nothing"
