"""Summaries, gates and comparisons computed from item rows."""

from __future__ import annotations

from typing import Any

import pytest

from shopfloor.errors import EvalError
from shopfloor.evals import (
    EvalItemRow,
    bootstrap_ci,
    compare,
    evaluate_gates,
    pass_at_k,
    pass_hat_k,
    sign_test,
    summarise,
)


def _row(
    item: str, repeat: int, value: float | None, *, tags: tuple[str, ...] = (), status: str = "done"
) -> EvalItemRow:
    metric = {"name": "acc", "value": value, "passed": None if value is None else value >= 0.5, "detail": {}}
    return EvalItemRow(
        eval_id="e",
        item_id=item,
        repeat=repeat,
        position=0,
        item={"id": item, "tags": list(tags)},
        status=status,
        metrics=[metric],
        case={"latency": 1.0},  # type: ignore[arg-type]
    )


def test_pass_at_k_and_pass_hat_k() -> None:
    assert pass_at_k(3, 1, 3) == 1.0 and pass_at_k(3, 0, 1) == 0.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(3, 2, 3) == 0.0
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    ci = bootstrap_ci(values)
    assert ci == bootstrap_ci(values)
    assert ci is not None and ci[0] < sum(values) / len(values) < ci[1]
    assert bootstrap_ci([]) is None


def test_summary_over_repeats_tags_and_broken_items() -> None:
    rows = [
        _row("a", 0, 1.0, tags=("x",)),
        _row("a", 1, 1.0, tags=("x",)),
        _row("b", 0, 1.0, tags=("y",)),
        _row("b", 1, 0.0, tags=("y",)),
        _row("c", 0, None, status="broken"),
        _row("c", 1, 0.0),
    ]
    summary = summarise(rows, [])
    acc = summary["metrics"]["acc"]
    assert acc["mean"] == pytest.approx((1.0 + 0.5 + 0.0) / 3) and acc["missing"] == 1
    assert acc["pass@k"] == pytest.approx(2 / 3) and acc["pass^k"] == pytest.approx(1 / 3) and acc["k"] == 2
    assert summary["tags"]["x"]["acc"]["mean"] == 1.0 and summary["tags"]["y"]["acc"]["mean"] == 0.5
    assert [b["item"] for b in summary["broken"]] == ["c"]


def _summary(mean: float | None, missing: int = 0) -> dict[str, Any]:
    return {"metrics": {} if mean is None else {"acc": {"mean": mean, "missing": missing}}, "tags": {}}


@pytest.mark.parametrize(
    ("gate", "summary", "baseline", "passed"),
    [
        ({"metric": "acc", "min": 0.8}, _summary(0.9), None, True),
        ({"metric": "acc", "min": 0.8}, _summary(0.7), None, False),
        ({"metric": "acc", "max": 0.1}, _summary(0.2), None, False),
        ({"metric": "other", "min": 0.1}, _summary(0.9), None, False),
        ({"metric": "acc", "min": 0.5, "level": "critical"}, _summary(0.9, missing=1), None, False),
        ({"metric": "acc", "min": 0.5}, _summary(0.9, missing=1), None, True),
        ({"metric": "acc", "max_regression": 0.05}, _summary(0.8), _summary(0.9), False),
        ({"metric": "acc", "max_regression": 0.15}, _summary(0.8), _summary(0.9), True),
        ({"metric": "acc", "max_regression": 0.15, "level": "critical"}, _summary(0.8), None, False),
    ],
)
def test_gates(
    gate: dict[str, Any], summary: dict[str, Any], baseline: dict[str, Any] | None, passed: bool
) -> None:
    [result] = evaluate_gates(summary, [gate], baseline)
    assert result["passed"] is passed, result["problems"]


def test_a_warn_gate_does_not_fail_the_evaluation() -> None:
    summary = summarise([_row("a", 0, 0.0)], [{"metric": "acc", "min": 0.9, "level": "warn"}])
    assert summary["gates"][0]["passed"] is False and summary["gates_passed"] is True


def test_sign_test() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0


def test_compare_finds_flips_and_gives_a_verdict() -> None:
    before = [_row(f"i{n}", 0, 1.0 if n < 3 else 0.0) for n in range(12)]
    after = [_row(f"i{n}", 0, 1.0 if n != 0 else 0.0) for n in range(12)]
    result = compare(before, after)
    acc = result["metrics"]["acc"]
    assert (acc["wins"], acc["losses"], acc["ties"]) == (9, 1, 2)
    assert {(f["item"], f["to"]) for f in acc["flipped"]} == {("i0", False)} | {
        (f"i{n}", True) for n in range(3, 12)
    }
    assert acc["verdict"] == "better" and result["verdict"] == "better"
    assert compare(after, before)["verdict"] == "worse"
    assert compare(before, before)["verdict"] == "no significant difference"
    with pytest.raises(EvalError, match="share no metric"):
        compare(before, [])


def test_the_judges_agreement_with_a_deterministic_label() -> None:
    def row(item: str, judged: bool, exact: bool) -> EvalItemRow:
        metrics = [
            {"name": "judged", "value": float(judged), "passed": judged, "detail": {"agree_with": "exact"}},
            {"name": "exact", "value": float(exact), "passed": exact, "detail": {}},
        ]
        return EvalItemRow(
            eval_id="e", item_id=item, repeat=0, position=0, item={}, status="done", metrics=metrics
        )

    summary = summarise([row("a", True, True), row("b", True, False), row("c", False, False)], [])
    assert summary["judge_agreement"] == {"judged": {"with": "exact", "agreement": 2 / 3, "items": 3}}
