"""A run's child runs spend what the run has left (``agent/_children.py``): children started together share
the tokens it has left, each may run until the run's time or the calling step's runs out, and what they
spent is the run's, recorded with the call's step so a replay counts it once; a child run stopped by its
share ends as a run stopped by its limits does (``max_tokens``, ``wall_time``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shopfloor.agent import AgentLoop, ApprovalDecision, ApprovalRequest, StepRunner
from shopfloor.models import FunctionModel, ModelRequest
from shopfloor.spec import Limits
from shopfloor.tools import (
    Budget,
    ChildCall,
    ChildOutcome,
    Children,
    FunctionTool,
    Tool,
    ToolContext,
    ToolServices,
)

SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
#: what each fake child says it spent
SPENT = {"input_tokens": 300, "output_tokens": 50, "model_calls": 2}


class FakeChildren(Children):
    """Children that end at once, each having spent ``SPENT``; records the budget each batch was lent."""

    def __init__(self) -> None:
        self.lent: list[tuple[int, Budget | None]] = []
        self.waited = 0

    async def start(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[str]:
        self.lent.append((len(calls), ctx.services.budget))
        return [f"{ctx.step}-{len(self.lent)}-{i}" for i in range(len(calls))]

    async def wait(self, run_ids: Sequence[str]) -> list[ChildOutcome]:
        self.waited += len(run_ids)
        return [ChildOutcome(run_id=r, status="completed", output=r, **SPENT) for r in run_ids]


class Recording(StepRunner):
    """Runs each step and keeps its result; given ``recorded``, returns those instead (a replay)."""

    def __init__(self, recorded: dict[str, Any] | None = None) -> None:
        self.replaying = recorded is not None
        self.recorded: dict[str, Any] = dict(recorded or {})

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], *, effects: bool = False) -> Any:
        if not self.replaying:
            self.recorded[name] = await fn()
        return self.recorded[name]

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(approved=False)

    def elapsed(self) -> float:
        return 0.0


def _model() -> FunctionModel:
    """Calls ``fan`` twice (2 children, then 3), then answers."""
    outputs: list[Any] = [
        {"tool": "fan", "args": {"n": 2}},
        {"tool": "fan", "args": {"n": 3}},
        {"tool": "final_answer", "args": {"answer": "done"}},
    ]
    return FunctionModel(outputs=outputs)


def _loop(children: Children, seen: list[Budget]) -> AgentLoop:
    async def fan(n: int, ctx: Any) -> list[Any]:
        seen.append(ctx.services.budget)
        ended = await ctx.services.children.run(ctx, "fan", [ChildCall(task=str(i)) for i in range(n)])
        return [o.output for o in ended]

    limits = Limits(max_tokens=10_000, wall_time=600.0, step_timeout=60.0)  # type: ignore[call-arg]
    return AgentLoop(
        model=_model(),
        tools=[FunctionTool(fan)],
        decision="one_shot",
        limits=limits,
        services=ToolServices(children=children),
    )


async def test_children_share_what_the_run_has_left_and_their_spend_is_the_runs() -> None:
    children, seen = FakeChildren(), []
    runner = Recording()
    result = await _loop(children, seen).run("fan out", run_id="parent", runner=runner)
    assert result.status == "completed", result.error

    (first, lent_first), (second, lent_second) = children.lent
    assert (first, second) == (2, 3)
    assert lent_first is not None and lent_second is not None
    # each of a batch gets an equal part of what the run had left as it started them
    assert lent_first.tokens_left == seen[0].tokens_left // 2
    assert lent_second.tokens_left == seen[1].tokens_left // 3
    assert 0 < lent_first.seconds_left <= 60.0, "no child outlives the step waiting for it"
    # the second call's budget saw what the first call's children spent
    spent = SPENT["input_tokens"] + SPENT["output_tokens"]
    model_step = seen[0].tokens_left - seen[1].tokens_left - 2 * spent
    assert 0 < model_step < 1_000, "between the calls: the children's spend and one model reply"
    assert result.usage.model_calls == 3 + 5 * SPENT["model_calls"]
    assert result.usage.input_tokens >= 5 * SPENT["input_tokens"]
    # the call's step records what its children spent
    assert runner.recorded["tool:1:fan"]["usage"] == {
        "input_tokens": 600,
        "output_tokens": 100,
        "model_calls": 4,
        "total_tokens": 700,
    }

    # A replay of the record counts the children's spend once, and starts no child.
    replayed_children = FakeChildren()
    replay = await _loop(replayed_children, []).run(
        "fan out", run_id="parent", runner=Recording(runner.recorded)
    )
    assert replay.usage == result.usage
    assert replayed_children.lent == [] and replayed_children.waited == 0


async def test_a_batch_started_while_another_may_still_spend_gets_what_is_left_besides() -> None:
    children, seen = FakeChildren(), []

    async def twice(ctx: Any) -> str:
        seen.append(ctx.services.budget)
        await ctx.services.children.start(ctx, "twice", [ChildCall(task="a"), ChildCall(task="b")])
        await ctx.services.children.start(ctx, "twice", [ChildCall(task="c")])
        return "started"

    limits = Limits(max_tokens=10_000)  # type: ignore[call-arg]
    outputs: list[Any] = [{"tool": "twice", "args": {}}, {"tool": "final_answer", "args": {"answer": "ok"}}]
    loop = AgentLoop(
        model=FunctionModel(outputs=outputs),
        tools=[FunctionTool(twice)],
        decision="one_shot",
        limits=limits,
        services=ToolServices(children=children),
    )
    assert (await loop.run("go", run_id="r")).status == "completed"
    (_, first), (_, second) = children.lent
    assert first is not None and second is not None
    assert first.tokens_left == seen[0].tokens_left // 2
    # the first batch, not waited for yet, may still spend its share: the second gets the rest
    assert second.tokens_left == seen[0].tokens_left - 2 * first.tokens_left


class _Asker(Tool):
    """A child's call: asks the run's model ``asks`` times (each reply ~10 tokens), or sleeps."""

    name = "asker"
    description = "ask"
    input_schema = {"type": "object", "properties": {"asks": {"type": "integer"}}}

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.call_child(args, ctx)

    async def call_child(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        assert ctx.services.ask is not None
        if params.get("sleep"):
            await asyncio.sleep(params["sleep"])
        for _ in range(params.get("asks", 0)):
            await ctx.services.ask("Say a word, any word at all, please.", schema=SCHEMA)
        return {"asked": params.get("asks", 0)}


def _child_loop(**limits: Any) -> AgentLoop:
    def reply(request: ModelRequest) -> dict[str, Any]:
        return {"word": "a rather long word for a reply"}

    return AgentLoop(
        model=FunctionModel(reply),
        tools=[_Asker()],
        limits=Limits().model_copy(update=limits),  # type: ignore[call-arg]
    )


async def test_a_child_over_its_share_stops_with_the_runs_token_budget_error() -> None:
    result = await _child_loop(max_tokens=60).run_call("asker", {"asks": 20}, task="ask", run_id="child")
    assert (result.status, result.stop_reason) == ("failed", "max_tokens")
    assert result.error == "token budget of 60 used up"
    assert 60 <= result.usage.total < 200, "it stops at the first question over its share"

    within = await _child_loop(max_tokens=10_000).run_call("asker", {"asks": 2}, task="ask", run_id="c2")
    assert (within.status, within.usage.model_calls) == ("completed", 2)


async def test_a_child_with_nothing_left_stops_before_its_call_and_one_past_its_deadline_is_stopped() -> None:
    spent = await _child_loop(max_tokens=0).run_call("asker", {"asks": 1}, task="ask", run_id="c0")
    assert (spent.stop_reason, spent.usage.model_calls, spent.steps) == ("max_tokens", 0, ())

    late = await _child_loop(wall_time=0.0).run_call("asker", {"asks": 1}, task="ask", run_id="c1")
    assert (late.stop_reason, late.error) == ("wall_time", "wall time of 0 s used up")

    slow = await _child_loop(wall_time=0.3, step_timeout=30.0).run_call(
        "asker", {"sleep": 5.0}, task="ask", run_id="c2"
    )
    assert (slow.status, slow.stop_reason) == ("failed", "wall_time"), slow.error
    # a slow call within its deadline but over the step's timeout is the call's error, as before
    stepped = await _child_loop(wall_time=600.0, step_timeout=0.3).run_call(
        "asker", {"sleep": 5.0}, task="ask", run_id="c3"
    )
    assert stepped.stop_reason == "tool_error" and "took longer than 0.3 s" in (stepped.error or "")
