"""Replay of recorded runs: the same agent comes out the same, a changed one diverges, a fork goes live."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tel_helpers import ADD, call, final, run_spans, scripted

from shopfloor.agent import AgentLoop, ApprovalDecision, ApprovalRequest, InMemoryStepRunner
from shopfloor.errors import ReplayDivergence
from shopfloor.models import FunctionModel, ModelRequest, TestModel
from shopfloor.ops.replay import (
    RecordingStepRunner,
    ReplayStepRunner,
    fork_run,
    recorded_from_spans,
    replay_run,
    run_info_from_spans,
)
from shopfloor.runtime import RecordedStep
from shopfloor.spec import Limits
from shopfloor.telemetry import Telemetry
from shopfloor.tools import FunctionTool


class Counter:
    """A tool and a model that count their calls, to prove a replay calls neither."""

    def __init__(self) -> None:
        self.tool_calls = 0
        self.model_calls = 0

    def tool(self) -> FunctionTool:
        def add(a: int, b: int) -> int:
            self.tool_calls += 1
            return a + b

        return FunctionTool(add)

    def model(self, *replies: dict[str, Any]) -> FunctionModel:
        def reply(request: ModelRequest) -> dict[str, Any]:
            self.model_calls += 1
            return replies[sum(1 for m in request.messages if m.role == "assistant")]

        return FunctionModel(reply, name="counted")


async def _record(loop: AgentLoop, task: str = "t", run_id: str = "orig") -> tuple[Any, list[RecordedStep]]:
    recorder = RecordingStepRunner()
    result = await loop.run(task, run_id=run_id, runner=recorder)
    return result, recorder.steps


async def test_replay_of_the_same_agent_comes_out_the_same_and_calls_nothing() -> None:
    live = Counter()
    replies = (call("add", a=1, b=2), call("add", a=3, b=4), final("3 and 7"))
    result, recorded = await _record(AgentLoop(model=live.model(*replies), tools=[live.tool()]))
    assert [r.name for r in recorded] == ["model:1", "tool:1:add", "model:2", "tool:2:add", "model:3"]

    again = Counter()
    report = await replay_run(
        AgentLoop(model=again.model(*replies), tools=[again.tool()]),
        "t",
        recorded,
        run_id="orig",
        expected_output=result.output,
    )
    assert report.same, report.reason
    assert report.divergence is None
    assert report.output == "3 and 7"
    assert [c.actual for c in report.steps] == [r.name for r in recorded]
    assert (again.model_calls, again.tool_calls) == (0, 0)
    assert report.result is not None
    assert [s.output for s in report.result.steps] == [3, 7]


async def test_replay_with_test_model_and_name_output_pairs() -> None:
    result, recorded = await _record(AgentLoop(model=TestModel(), tools=[ADD]))
    pairs = [(r.name, r.output) for r in recorded]
    report = await replay_run(
        AgentLoop(model=TestModel(), tools=[ADD]), "t", pairs, run_id="x", expected_output=result.output
    )
    assert report.same


async def test_changed_agent_diverges_at_the_first_different_step() -> None:
    double = FunctionTool(lambda x: 2 * x, name="double")  # type: ignore[arg-type,return-value]
    _, recorded = await _record(AgentLoop(model=scripted(call("add", a=1, b=2), final("3")), tools=[ADD]))
    # The new version's model picks another tool: the record's output still says "add", so give it no
    # "add" tool: the loop re-asks the model (model:2) where the record has the tool step.
    changed = AgentLoop(model=TestModel(), tools=[double], limits=Limits(max_retries=1))
    report = await replay_run(changed, "t", recorded, run_id="orig", expected_output="3")
    assert not report.same
    assert report.divergence is not None
    assert (report.divergence.index, report.divergence.expected, report.divergence.actual) == (
        2,
        "tool:1:add",
        "model:2",
    )
    assert "step 2" in (report.reason or "")
    assert [c.same for c in report.steps][:2] == [True, False]


async def test_replay_that_ends_early_or_asks_for_more_diverges() -> None:
    _, recorded = await _record(AgentLoop(model=scripted(call("add", a=1, b=2), final("3")), tools=[ADD]))
    short = await replay_run(AgentLoop(model=TestModel(), tools=[ADD]), "t", recorded[:2], run_id="o")
    assert short.divergence is not None
    assert (short.divergence.expected, short.divergence.actual) == (None, "model:2")
    extra = [*recorded, RecordedStep(name="model:3", output=recorded[0].output)]
    longer = await replay_run(AgentLoop(model=TestModel(), tools=[ADD]), "t", extra, run_id="o")
    assert longer.divergence is not None
    assert (longer.divergence.index, longer.divergence.expected, longer.divergence.actual) == (
        4,
        "model:3",
        None,
    )


async def test_same_steps_but_different_answer_is_reported() -> None:
    _, recorded = await _record(AgentLoop(model=scripted(final("42")), tools=[ADD]))
    report = await replay_run(
        AgentLoop(model=TestModel(), tools=[ADD]), "t", recorded, run_id="o", expected_output="41"
    )
    assert report.divergence is None
    assert not report.same
    assert "answer differs" in (report.reason or "")


async def test_fork_replays_up_to_the_step_then_runs_live_with_the_new_agent() -> None:
    old = Counter()
    _, recorded = await _record(
        AgentLoop(
            model=old.model(call("add", a=1, b=2), call("add", a=3, b=4), final("old")), tools=[old.tool()]
        )
    )
    new = Counter()
    new_model = new.model(call("add", a=1, b=2), call("add", a=3, b=4), call("add", a=10, b=10), final("new"))
    report = await fork_run(
        AgentLoop(model=new_model, tools=[new.tool()]), "t", recorded, at="model:2", run_id="fork-1"
    )
    assert report.divergence is None and report.same
    assert report.forked_at == 3
    assert report.output == "new"
    # model:1 and tool:1:add came from the record; everything from model:2 ran live
    assert (new.model_calls, new.tool_calls) == (3, 2)
    assert [(c.actual, c.live) for c in report.steps][:3] == [
        ("model:1", False),
        ("tool:1:add", False),
        ("model:2", True),
    ]
    assert report.result is not None and [s.output for s in report.result.steps] == [3, 7, 20]


async def test_fork_at_an_unknown_step_says_which_steps_exist() -> None:
    _, recorded = await _record(AgentLoop(model=scripted(final("x")), tools=[ADD]))
    with pytest.raises(ValueError, match="its steps are: model:1"):
        await fork_run(AgentLoop(model=TestModel(), tools=[ADD]), "t", recorded, at="tool:9:x", run_id="f")


async def test_recorded_timeouts_and_approvals_replay_the_same() -> None:
    async def slow_then_answer(request: ModelRequest) -> dict[str, Any]:
        if not any(m.role == "assistant" for m in request.messages):
            return call("add", a=1, b=1)
        await asyncio.sleep(5)
        return final("never")

    async def approve(request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(approved=False, by="alice", reason="no")

    guarded = FunctionTool(lambda a, b: a + b, name="add", requires_approval=True)  # type: ignore[arg-type,return-value]

    def make() -> AgentLoop:
        return AgentLoop(
            model=FunctionModel(slow_then_answer), tools=[guarded], limits=Limits(step_timeout=0.05)
        )

    recorder = RecordingStepRunner(InMemoryStepRunner(approval_policy=approve))
    result = await make().run("t", run_id="o", runner=recorder)
    assert result.stop_reason == "step_timeout"
    assert [r.name for r in recorder.steps] == ["model:1", "approval", "model:2"]
    assert recorder.steps[2].raised is not None and recorder.steps[2].raised["type"] == "TimeoutError"
    report = await replay_run(make(), "t", recorder.steps, run_id="o")
    assert report.same and report.status == "failed"
    assert report.result is not None and report.result.steps[0].error_kind == "rejected"


async def test_replay_runner_rejects_a_step_out_of_order() -> None:
    runner = ReplayStepRunner([("model:1", {"x": 1})])

    async def never() -> Any:
        raise AssertionError("a replay calls nothing")

    with pytest.raises(ReplayDivergence, match="'tool:1:add' where the record has 'model:1'"):
        await runner.step("tool:1:add", never)
    assert await ReplayStepRunner([("model:1", {"x": 1})]).step("model:1", never) == {"x": 1}


async def test_replay_from_the_local_trace_store(telemetry: Telemetry) -> None:
    loop = AgentLoop(model=scripted(call("add", a=2, b=2), final("4")), tools=[ADD], name="store-agent")
    await loop.run("two plus two", run_id="stored")
    spans = run_spans(telemetry, "stored")
    info = run_info_from_spans("stored", spans)
    assert info is not None
    assert (info.task, info.output, info.agent, info.status) == (
        "two plus two",
        "4",
        "store-agent",
        "completed",
    )
    recorded = recorded_from_spans(spans)
    assert [r.name for r in recorded] == ["model:1", "tool:1:add", "model:2"]
    report = await replay_run(
        AgentLoop(model=TestModel(), tools=[ADD]),
        info.task or "",
        recorded,
        run_id="stored",
        expected_output=info.output,
    )
    assert report.same, report.reason
