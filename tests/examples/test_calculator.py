"""The calculator example: with the test model (no model at all) and, slow, the real embedded model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shopfloor.agent import build_agent, calculate
from shopfloor.config import load_settings
from shopfloor.spec import load_spec, spec_resolvers

CALCULATOR = Path(__file__).resolve().parents[2] / "examples" / "calculator"


async def test_calculator_runs_on_the_test_model() -> None:
    loop = build_agent(load_spec(CALCULATOR, resolvers=spec_resolvers()), load_settings(), model="test")
    result = await loop.run("How many km is 26.2 miles?", run_id="calc-test")
    assert result.stop_reason == "final_answer"
    assert [step.tool for step in result.steps] == ["calculator", "convert_units"]
    assert result.steps[0].output == 391


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_embedded_model_uses_the_calculator_and_answers_391(
    embedded_model: Callable[[str], Path],
) -> None:
    path = embedded_model("qwen2.5-coder-0.5b")
    loop = build_agent(
        load_spec(CALCULATOR, resolvers=spec_resolvers()), load_settings(), model=f"local:{path}"
    )
    result = await loop.run("What is 17*23? Use the calculator.", run_id="calc-real")
    calls = [step for step in result.steps if step.tool == "calculator"]
    assert calls, result.steps
    assert calculate(calls[0].arguments["expression"]) == 391
    assert result.stop_reason == "final_answer"
    assert "391" in (result.output or "")
