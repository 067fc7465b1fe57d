"""What a run lends a tool beyond its own model: ``ToolServices.budget`` (the tokens and seconds the run has
left as the tool is called) and ``ToolServices.ask_model`` (a named model route, made once per loop,
its tokens the run's)."""

from __future__ import annotations

from typing import Any

from shopfloor.agent import AgentLoop
from shopfloor.errors import ToolError
from shopfloor.models import FunctionModel, Model, ModelRequest
from shopfloor.spec import Limits
from shopfloor.tools import Budget, FunctionTool

SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}


def _main(seen: list[ModelRequest]) -> FunctionModel:
    """The run's model: calls ``probe``, answers a question put to it, then ends the run."""

    def reply(request: ModelRequest) -> dict[str, Any]:
        seen.append(request)
        if request.json_schema is not None and "word" in request.json_schema.get("properties", {}):
            return {"word": "small"}
        decided = sum(1 for r in seen if "word" not in (r.json_schema or {}).get("properties", {}))
        if decided == 1:
            return {"tool": "probe", "args": {}}
        return {"tool": "final_answer", "args": {"answer": "done"}}

    return FunctionModel(reply, name="main")


async def test_a_tool_sees_the_runs_budget_and_asks_a_named_route_made_once() -> None:
    seen: list[ModelRequest] = []
    told: dict[str, Any] = {}
    big = FunctionModel(lambda request: {"word": "big"}, name="big")
    made: list[str] = []

    def models(ref: str) -> Model:
        made.append(ref)
        return big

    async def probe(ctx: Any) -> str:
        services = ctx.services
        told["budget"] = services.budget
        told["big"] = await services.ask_model("function:big", "A word?", schema=SCHEMA)
        told["again"] = await services.ask_model("function:big", "Another?", schema=SCHEMA)
        told["own"] = await services.ask_model("function:main", "Yours?", schema=SCHEMA)
        return "probed"

    limits = Limits(max_tokens=5_000, wall_time=100.0, step_timeout=30.0)  # type: ignore[call-arg]
    loop = AgentLoop(
        model=_main(seen), tools=[FunctionTool(probe)], decision="one_shot", limits=limits, models=models
    )
    result = await loop.run("probe it", run_id="run-routes")
    assert result.status == "completed", result.error
    assert (told["big"], told["again"], told["own"]) == (
        '{"word": "big"}',
        '{"word": "big"}',
        '{"word": "small"}',
    )
    assert made == ["function:big"] and big.calls == 2, "the route's model is made once, asked twice"
    budget = told["budget"]
    assert isinstance(budget, Budget) and budget.step_seconds == 30.0
    assert 0 < budget.tokens_left < 5_000, "the first decision's tokens are spent"
    assert 0 < budget.seconds_left <= 100.0
    assert result.usage.model_calls == 5, "two decisions and three questions, every route's counted"
    await loop.aclose_routes()


async def test_a_route_the_loop_cannot_make_is_a_tool_error_naming_it() -> None:
    errors: list[str] = []

    async def probe(ctx: Any) -> str:
        try:
            await ctx.services.ask_model("function:absent", "A word?", schema=SCHEMA)
        except ToolError as exc:
            errors.append(str(exc))
        return "probed"

    loop = AgentLoop(model=_main([]), tools=[FunctionTool(probe)], decision="one_shot")
    result = await loop.run("probe it", run_id="run-no-routes")
    assert result.status == "completed", result.error
    assert errors == ["no model route 'function:absent' here: this loop asks only 'function:main'"]
