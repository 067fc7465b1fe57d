"""Connector tools in the agent loop: chosen by every decision strategy, each call a step whose
output a durable runner records once (a replay does not call the server again), traced as
``execute_tool``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from connector_support import connector
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shopfloor.agent import AgentLoop, InMemoryStepRunner
from shopfloor.config import Settings
from shopfloor.connectors import Connectors
from shopfloor.models import FunctionModel, ModelRequest
from shopfloor.telemetry import configure_telemetry


class RecordingRunner(InMemoryStepRunner):
    """Records each step's output by name and returns the record when the step comes again, as the
    durable runner does when a run resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[str, Any] = {}

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], *, effects: bool = False) -> Any:
        if name not in self.recorded:
            self.recorded[name] = await fn()
        return self.recorded[name]


def two_phase(request: ModelRequest) -> dict[str, Any]:
    props = request.json_schema["properties"] if request.json_schema else {}
    turn = sum(1 for m in request.messages if m.role == "assistant")
    if "tool" in props:
        return {"tool": "shop__tick" if turn == 0 else "final_answer"}
    if "note" in props:
        return {"note": "two-phase"}
    return {"answer": "done"}


@pytest.mark.parametrize("decision", ["one_shot", "two_phase"])
async def test_a_connector_tool_is_a_recorded_traced_step(
    pool: Connectors, fastmcp_script: Path, tmp_path: Path, settings: Settings, decision: str
) -> None:
    telemetry = configure_telemetry(settings)
    memory = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(memory))
    ticks = tmp_path / "ticks.txt"
    spec = connector(
        name="shop",
        mcp={"command": [sys.executable, str(fastmcp_script), "stdio"], "env": {"TICK_FILE": str(ticks)}},
        tools=["tick", "add"],
    )
    tools = await pool.tools([spec])
    runner = RecordingRunner()

    def model() -> FunctionModel:
        if decision == "one_shot":
            return FunctionModel(
                outputs=[
                    {"tool": "shop__tick", "args": {"note": "one-shot"}},
                    {"tool": "final_answer", "args": {"answer": "done"}},
                ]
            )
        return FunctionModel(two_phase)

    try:
        first = await AgentLoop(model=model(), tools=tools, decision=decision).run(
            "tick", run_id="r1", runner=runner
        )
        again = await AgentLoop(model=model(), tools=tools, decision=decision).run(
            "tick", run_id="r1", runner=runner
        )
    finally:
        telemetry.shutdown()
    assert first.status == "completed", first.error
    assert [step.tool for step in first.steps] == ["shop__tick"]
    output = first.steps[0].output
    assert {k: output[k] for k in ("ticks", "answer")} == {
        "ticks": 1,
        "answer": f"ticked {decision.replace('_', '-')}",
    }
    # the resumed run got the recorded output: the server was called once
    assert [s.output for s in again.steps] == [s.output for s in first.steps]
    assert ticks.read_text().splitlines() == [decision.replace("_", "-")]
    spans = [s for s in memory.get_finished_spans() if s.name == "execute_tool shop__tick"]
    assert len(spans) == 1
    assert spans[0].attributes is not None and spans[0].attributes["gen_ai.tool.name"] == "shop__tick"
    # the MCP client span sits under it, and the server got its trace context in _meta.traceparent
    (mcp_span,) = [s for s in memory.get_finished_spans() if s.name == "tools/call tick"]
    assert mcp_span.parent is not None and mcp_span.parent.span_id == spans[0].context.span_id
    trace_id, span_id = f"{mcp_span.context.trace_id:032x}", f"{mcp_span.context.span_id:016x}"
    assert output["traceparent"] == f"00-{trace_id}-{span_id}-01"


async def test_a_failing_connector_call_goes_back_to_the_model_and_the_run_goes_on(
    pool: Connectors, fastmcp_script: Path
) -> None:
    spec = connector(
        name="shop", mcp={"command": [sys.executable, str(fastmcp_script), "stdio"]}, tools=["crash"]
    )
    tools = await pool.tools([spec])
    model = FunctionModel(
        outputs=[
            {"tool": "shop__crash", "args": {}},
            {"tool": "final_answer", "args": {"answer": "the server crashed"}},
        ]
    )
    result = await AgentLoop(model=model, tools=tools, decision="one_shot").run("crash it", run_id="r2")
    assert result.status == "completed"
    assert result.steps[0].error_kind == "execution"
    assert "shop: tool crash: failed, the server exited with code 3" in (result.steps[0].error or "")
