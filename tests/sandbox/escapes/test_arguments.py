"""CPU-bound arguments: a model's tool arguments must not stall the worker's event loop.

A prompt injection only needs to make the model pass a costly argument: a calculator
expression with huge intermediate integers, a backtracking regex, a glob that backtracks
once translated. Each attack runs through the real agent loop under ``step_timeout: 1``
while a ticker task measures how late the event loop wakes it (the loop's lag).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from shopfloor.agent import AgentLoop, RunResult, calculate
from shopfloor.models import FunctionModel
from shopfloor.spec import Limits
from shopfloor.tools import FunctionTool, Tool
from shopfloor.workspace import Workspaces, open_store, workspace_tools


@asynccontextmanager
async def loop_lag() -> AsyncIterator[Callable[[], float]]:
    """The longest the event loop kept a 10 ms ticker waiting beyond its sleep, in seconds."""
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - started - 0.01)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        yield lambda: worst
    finally:
        task.cancel()


async def attack(tools: list[Tool], tool: str, **arguments: Any) -> tuple[RunResult, float, float]:
    """Run one call of ``tool`` with ``arguments`` and a final answer; the result, seconds and loop lag."""
    model = FunctionModel(
        outputs=[{"tool": tool, "args": arguments}, {"tool": "final_answer", "args": {"answer": "done"}}]
    )
    loop = AgentLoop(model=model, tools=tools, limits=Limits(step_timeout=1))  # type: ignore[call-arg]
    async with loop_lag() as lag:
        started = time.perf_counter()
        result = await loop.run("task", run_id="cpu-bound")
        elapsed = time.perf_counter() - started
    return result, elapsed, lag()


async def test_calculator_refuses_huge_intermediate_integers() -> None:
    # Took 21 s of blocked event loop under step_timeout 1 before the bound.
    tools: list[Tool] = [FunctionTool(calculate, name="calculator")]
    result, elapsed, lag = await attack(tools, "calculator", expression="((9**999)**999)**20")
    step = result.steps[0]
    assert step.error_kind == "execution", step
    assert "result too large" in (step.error or "") and "bits" in (step.error or "")
    assert elapsed < 2 and lag < 0.5, (elapsed, lag)
    assert calculate("2**1000 * 3**500") == 2**1000 * 3**500  # big but bounded results still work


async def test_a_cpu_bound_sync_tool_times_out_and_the_loop_stays_responsive() -> None:
    def spin(seconds: float) -> str:
        """Pure-Python CPU work that no timeout can interrupt (bounded here so the test ends)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return "finished"

    result, elapsed, lag = await attack([FunctionTool(spin)], "spin", seconds=3.0)
    step = result.steps[0]
    assert step.error_kind == "timeout" and "longer than 1 s" in (step.error or ""), step
    assert result.output == "done"
    # On the event loop the call would have held it for the whole 3 s and the timeout never fired.
    assert elapsed < 2.5 and lag < 0.5, (elapsed, lag)


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[Workspaces]:
    repo = Workspaces(open_store(f"file://{tmp_path / 'store'}"), cache_dir=tmp_path / "cache")
    yield repo
    repo.close()


async def test_backtracking_grep_pattern_and_glob_finish_fast(workspaces: Workspaces) -> None:
    view = await workspaces.workspace("attack").open()
    # Python's re needs minutes for (a+)+$ on this line, and seconds for the glob on this name.
    await view.write("evil.txt", b"a" * 40_000 + b"!\n")
    await view.write("a" * 200, b"x\n")
    tools = workspace_tools(view)
    result, elapsed, lag = await attack(tools, "grep_files", pattern="(a+)+$")
    assert result.steps[0].error is None and result.steps[0].output["matches"] == [], result.steps[0]
    assert elapsed < 1 and lag < 0.3, (elapsed, lag)

    result, elapsed, lag = await attack(tools, "list_files", pattern="*a*a*a*a*a*a*a*a*a*a*b")
    assert result.steps[0].error is None and result.steps[0].output["files"] == [], result.steps[0]
    assert elapsed < 1 and lag < 0.3, (elapsed, lag)
    # Backreferences cannot be matched in linear time: refused, saying why.
    result, _, _ = await attack(tools, "grep_files", pattern=r"(a)\1")
    assert "RE2" in (result.steps[0].error or "") and "backreferences" in (result.steps[0].error or "")
