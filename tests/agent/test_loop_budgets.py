"""Each model call of a run is admitted against the budgets as the run's agent (its team, the model's
route), inside its step: a refusal ends the run with ``stop_reason="budget"`` naming the limit, the
refused call never reaches the model, and what a call used replaces its estimate."""

from __future__ import annotations

from typing import Any

from shopfloor.agent import AgentLoop
from shopfloor.agent._builtin import calculate
from shopfloor.models import FunctionModel
from shopfloor.security import Budgets, Limit, MemoryCounters, Principal
from shopfloor.tools import FunctionTool

CALC = FunctionTool(calculate, name="calculator")


def _model() -> FunctionModel:
    turns: list[Any] = [{"tool": "calculator", "args": {"expression": f"{n}+1"}} for n in range(5)]
    return FunctionModel(outputs=[*turns, {"tool": "final_answer", "args": {"answer": "done"}}])


def _loop(budgets: Budgets, model: FunctionModel, team: str | None = "research") -> AgentLoop:
    agent = Principal(id="agent:calc", kind="agent", name="calc", team=team, method="run")
    return AgentLoop(model=model, tools=[CALC], name="calc", admission=budgets, principal=agent)


async def test_the_call_over_the_budget_ends_the_run_and_never_reaches_the_model() -> None:
    counters = MemoryCounters()
    budgets = Budgets([Limit(scope="team:research", metric="requests", window="minute", maximum=3)], counters)
    model = _model()
    result = await _loop(budgets, model).run("count", run_id="r1")
    assert (result.status, result.stop_reason) == ("failed", "budget")
    assert "team:research requests/minute = 3" in (result.error or "")
    assert model.calls == 3  # the fourth was refused before the model
    assert result.usage.model_calls == 3


async def test_tokens_settle_to_what_was_used_and_key_limits_bind_keys_not_agents() -> None:
    counters = MemoryCounters()
    limits = [
        Limit(scope="agent:calc", metric="tokens", window="day", maximum=1_000_000),
        Limit(scope="key:*", metric="requests", window="minute", maximum=0),  # would refuse every call
    ]
    budgets = Budgets(limits, counters)
    result = await _loop(budgets, _model()).run("count", run_id="r2")
    assert result.status == "completed", result.error
    (key,) = [k for k in counters._values if k.startswith("agent:calc|tokens")]
    assert counters.value(key) == result.usage.input_tokens + result.usage.output_tokens


async def test_another_agents_or_teams_limit_does_not_apply() -> None:
    limits = [
        Limit(scope="agent:other", metric="requests", window="minute", maximum=0),
        Limit(scope="team:ops", metric="requests", window="minute", maximum=0),
    ]
    result = await _loop(Budgets(limits, MemoryCounters()), _model()).run("count", run_id="r3")
    assert result.status == "completed", result.error
