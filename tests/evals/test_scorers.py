"""Each scorer on recorded cases: deterministic ones, trajectory, retrieval, operational, custom, judged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.evals import Case, Item, Metric, ScorerEnv, ToolCallRecord, build_scorers, score_case
from shopfloor.models import FunctionModel, ModelRequest, model_providers


def _case(output: str | None, expected: Any = None, **values: Any) -> Case:
    reference = values.pop("reference", None)
    return Case(
        item=Item(id="i", input="q", expected=expected, reference=reference),
        run_id="r",
        status=values.pop("status", "completed"),
        output=output,
        **values,
    )


async def _score(
    settings: Settings, config: dict[str, Any], case: Case, tmp_path: Path = Path(".")
) -> list[Metric]:
    [scorer] = build_scorers([config], ScorerEnv(base_dir=tmp_path, settings=settings))
    return await scorer.score(case)


@pytest.mark.parametrize(
    ("config", "output", "expected", "value"),
    [
        ({"type": "exact"}, " Paris ", "Paris", 1.0),
        ({"type": "exact"}, "paris", "Paris", 0.0),
        ({"type": "normalised"}, "The  PARIS!", "paris", 1.0),
        ({"type": "numeric", "tolerance": 0.01}, "It was 284.51 mm", 284.5, 1.0),
        ({"type": "numeric", "tolerance": 0.01}, "It was 284.6 mm", 284.5, 0.0),
        ({"type": "numeric", "relative": 0.01}, "about 1,010", 1000, 1.0),
        ({"type": "numeric", "field": "value"}, "12", {"value": 12, "group": "x"}, 1.0),
        ({"type": "contains"}, "Rain peaked in NOVEMBER", ["november", "rain"], 1.0),
        ({"type": "contains"}, "Rain peaked", ["november"], 0.0),
        ({"type": "regex", "pattern": r"\d{3}\.\d"}, "total 284.5", None, 1.0),
        ({"type": "regex"}, "abc", "^a.c$", 1.0),
        ({"type": "json"}, 'result: {"a": 1, "b": 2} done', {"a": 1, "b": 3}, 0.5),
        ({"type": "f1"}, "the cat sat", "cat sat down", 0.8),
        ({"type": "entity", "aliases": {"11": ["November"]}}, "It was November.", 11, 1.0),
        ({"type": "entity"}, "It was Novembers.", "November", 0.0),
    ],
)
async def test_deterministic_scorers(
    settings: Settings, config: dict[str, Any], output: str, expected: Any, value: float
) -> None:
    [metric] = await _score(settings, config, _case(output, expected))
    assert metric.value == pytest.approx(value)
    assert metric.name == config["type"]


async def test_a_scorer_that_raises_marks_the_item_not_the_evaluation(settings: Settings) -> None:
    scorers = build_scorers(
        [{"type": "numeric"}, {"type": "contains"}], ScorerEnv(base_dir=Path("."), settings=settings)
    )
    metrics, problems = await score_case(_case("it is 3", "three"), scorers)
    assert metrics[0].value is None and "is not a number" in metrics[0].detail["error"]
    assert metrics[1].value == 0.0
    assert problems == [metrics[0].detail["error"]]


CALLS = (
    ToolCallRecord(tool="search", arguments={"q": "rain", "k": 3}, output={"ids": ["d2", "d1", "d9"]}),
    ToolCallRecord(tool="analyse", arguments={"op": {"kind": "sum", "col": "p"}}, output={"answer": "1"}),
)


@pytest.mark.parametrize(
    ("options", "passed"),
    [
        ({"tools": ["search", "analyse"], "order": "sequence"}, True),
        ({"tools": ["analyse", "search"], "order": "sequence"}, False),
        ({"tools": ["analyse", "search"], "order": "set"}, True),
        ({"tools": ["search"], "order": "exact"}, False),
        ({"calls": [{"tool": "analyse", "args": {"op": {"kind": "sum"}}}]}, True),
        ({"calls": [{"tool": "analyse", "args": {"op": {"kind": "mean"}}}]}, False),
        ({"max_steps": 2}, True),
        ({"max_steps": 1}, False),
        ({"stop_reason": "final_answer"}, True),
        ({"forbidden": ["search"]}, False),
    ],
)
async def test_trajectory_from_the_recorded_calls(
    settings: Settings, options: dict[str, Any], passed: bool
) -> None:
    case = _case("x", calls=CALLS, steps=2, stop_reason="final_answer")
    [metric] = await _score(settings, {"type": "trajectory", **options}, case)
    assert metric.passed is passed, metric.detail


async def test_trajectory_fails_a_run_that_did_not_complete(settings: Settings) -> None:
    [metric] = await _score(settings, {"type": "trajectory"}, _case(None, status="failed", calls=CALLS))
    assert metric.passed is False and metric.detail["failed"] == ["status failed"]


async def test_retrieval_precision_recall_mrr(settings: Settings) -> None:
    case = _case("x", reference=["d1", "d4"], calls=CALLS)
    metrics = {
        m.name: m.value for m in await _score(settings, {"type": "retrieval", "tools": ["search"]}, case)
    }
    assert metrics == {
        "retrieval.precision": pytest.approx(1 / 3),
        "retrieval.recall": 0.5,
        "retrieval.mrr": 0.5,
    }
    # Passages of one document in one call (a research tool's results) count as that document once.
    passages = ToolCallRecord(tool="search", output={"results": [{"id": "d4"}, {"id": "d4"}, {"id": "d1"}]})
    repeated = _case("x", reference=["d1", "d4"], calls=(passages,))
    metrics = {
        m.name: m.value for m in await _score(settings, {"type": "retrieval", "tools": ["search"]}, repeated)
    }
    assert metrics == {"retrieval.precision": 1.0, "retrieval.recall": 1.0, "retrieval.mrr": 1.0}
    # No gold documents (a question answered without any): nothing is measured, so no mean counts a 0.
    nothing = _case("x", reference=[], calls=CALLS)
    metrics = {
        m.name: m.value for m in await _score(settings, {"type": "retrieval", "tools": ["search"]}, nothing)
    }
    assert metrics == {"retrieval.precision": None, "retrieval.recall": None, "retrieval.mrr": None}


async def test_operational_metrics_and_limits(settings: Settings) -> None:
    case = _case(
        "x", latency=2.5, ttft=0.1, input_tokens=10, output_tokens=5, faults={"model": {"timeout": 1}}
    )
    metrics = {
        m.name: m
        for m in await _score(settings, {"type": "operational", "max": {"latency": 2.0, "tokens": 20}}, case)
    }
    assert metrics["operational.latency"].value == 2.5 and metrics["operational.latency"].passed is False
    assert metrics["operational.tokens"].value == 15 and metrics["operational.tokens"].passed is True
    assert metrics["operational.faults"].value == 1 and metrics["operational.ttft"].value == 0.1
    assert "operational.cost" not in metrics, "no price: no cost metric (a gate on it fails as missing)"


async def test_custom_scorer_by_file_reference(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text(
        "async def grade(case, bonus=0.0):\n"
        "    return {'len': min(1.0, len(case.output) / 10 + bonus), 'has_x': 'x' in case.output,\n"
        "            'unmeasured': None}\n"
    )
    metrics = await _score(
        settings,
        {"type": "custom", "name": "mine", "function": "score.py:grade", "args": {"bonus": 0.1}},
        _case("xxxx"),
        tmp_path,
    )
    assert [(m.name, m.value, m.passed) for m in metrics] == [
        ("mine.len", pytest.approx(0.5), None),
        ("mine.has_x", 1.0, True),
        ("mine.unmeasured", None, None),
    ]


async def test_judged_records_prompt_reply_score_and_rescoring_reuses_the_reply(settings: Settings) -> None:
    seen: list[str] = []

    def judge(request: ModelRequest) -> str:
        seen.append(request.messages[0].content)
        return "The answer is fine.\nSCORE: 4"

    models = Registry("model provider", {"judge": lambda name, s: FunctionModel(judge, name=name)})
    env = ScorerEnv(base_dir=Path("."), settings=settings, models=models)
    config = {"type": "judged", "model": "judge:strict", "rubric": "Is it correct?", "agree_with": "contains"}
    [scorer] = build_scorers([config], env)
    [metric] = await scorer.score(_case("Paris", "Paris"))
    assert metric.value == 0.75 and metric.passed is True
    assert metric.detail["score"] == 4 and "SCORE: 4" in metric.detail["reply"]
    assert "Is it correct?" in metric.detail["prompt"] and "Paris" in metric.detail["prompt"]
    again = await scorer.score(_case("Paris", "Paris", recorded={"judged": metric.detail}))
    assert again[0].value == 0.75 and len(seen) == 1, "the recorded reply to the same prompt is reused"


async def test_a_secret_in_the_judges_reply_is_never_kept(settings: Settings) -> None:
    key = "sk-" + "A1b2C3d4E5f6G7h8J9k0"

    def judge(request: ModelRequest) -> str:
        return f"Fine, and here is a key: {key}\nSCORE: 5"

    models = Registry("model provider", {"judge": lambda name, s: FunctionModel(judge, name=name)})
    env = ScorerEnv(base_dir=Path("."), settings=settings, models=models)
    [scorer] = build_scorers([{"type": "judged", "model": "judge:leaky", "rubric": "Is it correct?"}], env)
    [metric] = await scorer.score(_case("Paris", "Paris"))
    assert metric.value == 1.0
    assert key not in metric.detail["reply"] and "[REDACTED]" in metric.detail["reply"]


async def test_hostile_answers_are_scored_in_bounded_time(settings: Settings) -> None:
    import time

    braces = "{" * 150_000 + '"a": 1}'
    started = time.perf_counter()
    for config in (
        {"type": "json"},
        {"type": "regex", "pattern": "(a+)+$"},
        {"type": "f1"},
        {"type": "entity"},
    ):
        await _score(settings, config, _case(braces + "a" * 50_000 + "!", {"a": 1}))
    assert time.perf_counter() - started < 5.0


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_the_embedded_model_judges(settings: Settings, embedded_model: Callable[[str], Path]) -> None:
    model = f"local:{embedded_model('qwen2.5-coder-0.5b')}"
    config = {
        "type": "judged",
        "model": model,
        "rubric": "5 if the answer names the capital of France, else 1.",
    }
    env = ScorerEnv(base_dir=Path("."), settings=settings, models=model_providers())
    [scorer] = build_scorers([config], env)
    metrics, problems = await score_case(_case("The capital of France is Paris.", "Paris"), [scorer])
    [metric] = metrics
    if problems:  # a small model may not follow the reply format: recorded as the item's reason
        assert "no 'SCORE: N'" in problems[0]
    else:
        assert metric.value is not None and 0.0 <= metric.value <= 1.0
        assert metric.detail["reply"] and metric.detail["judge"] == model
