"""Agent-loop overhead per step, in memory, with the FunctionModel (target: under 1 ms a step).

One step = one instant model reply (a calculator call) + the calculator tool + context fitting,
validation and events. Baseline, measured in the same run: the same model and tool called
directly in a plain Python loop (what the step costs without the loop around it).
Run: ``.venv/bin/python -m benchmarks.bench_agent``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from shopfloor.agent import AgentLoop, calculate
from shopfloor.models import FunctionModel, Message, ModelRequest
from shopfloor.spec import Limits
from shopfloor.tools import FunctionTool, ToolContext

STEPS = 50
REPEATS = 7


def reply(request: ModelRequest) -> dict[str, Any]:
    turn = sum(1 for m in request.messages if m.role == "assistant")
    if turn >= STEPS:
        return {"tool": "final_answer", "args": {"answer": "done"}}
    return {"tool": "calculator", "args": {"expression": f"{turn}*2+1"}}


async def loop_per_step() -> float:
    tool = FunctionTool(calculate, name="calculator")
    loop = AgentLoop(
        model=FunctionModel(reply, context_length=1_000_000),
        tools=[tool],
        limits=Limits(max_steps=STEPS + 1, max_tokens=10_000_000, max_output_tokens=64),
        decision="one_shot",
    )
    start = time.perf_counter()
    result = await loop.run("add", run_id="bench")
    elapsed = time.perf_counter() - start
    assert result.stop_reason == "final_answer" and len(result.steps) == STEPS
    return elapsed / (STEPS + 1)


async def baseline_per_step() -> float:
    tool = FunctionTool(calculate, name="calculator")
    model = FunctionModel(reply)
    ctx = ToolContext(run_id="bench", step=0, call_id="c", idempotency_key="bench:0")
    messages: list[Message] = [Message(role="user", content="add")]
    start = time.perf_counter()
    for _ in range(STEPS):
        response = await model.request(ModelRequest(messages=tuple(messages)))
        await tool.call({"expression": "1*2+1"}, ctx)
        messages.append(Message(role="assistant", content=response.text))
    return (time.perf_counter() - start) / STEPS


async def main() -> None:
    loop = statistics.median([await loop_per_step() for _ in range(REPEATS)])
    base = statistics.median([await baseline_per_step() for _ in range(REPEATS)])
    print(f"agent loop, per step (in memory, {STEPS} steps): {loop * 1000:.3f} ms  (target < 1 ms)")
    print(f"baseline (model + tool called directly):        {base * 1000:.3f} ms")
    print(f"loop overhead per step: {(loop - base) * 1000:.3f} ms; ratio {loop / base:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
