"""Results of an evaluation: per metric the mean with a bootstrap confidence interval, pass@k and
pass^k over repeats, the same per tag, the broken items, the judge's agreement; then the gates.

Every resampling uses a fixed seed, so the same rows always give the same summary.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shopfloor.evals._store import EvalItemRow

__all__ = ["bootstrap_ci", "evaluate_gates", "item_values", "pass_at_k", "pass_hat_k", "summarise"]

RESAMPLES = 1000
SEED = 0


def bootstrap_ci(
    values: Sequence[float], *, level: float = 0.95, resamples: int = RESAMPLES
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (None for no values)."""
    if not values:
        return None
    if len(values) == 1:
        return (values[0], values[0])
    rng = random.Random(SEED)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return (means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))])


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k of the n attempts passes (c passed), unbiased (Chen et al.)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that all of k attempts pass (tau-bench's reliability measure)."""
    return math.comb(c, k) / math.comb(n, k) if k <= n else 0.0


def item_values(rows: Iterable[EvalItemRow]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """metric -> item id -> that item's metric records over its repeats."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for metric in row.metrics:
            out[metric["name"]][row.item_id].append(metric)
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _metric_stats(per_item: Mapping[str, list[dict[str, Any]]], repeat: int) -> dict[str, Any]:
    means: list[float] = []
    missing = 0
    passes: list[tuple[int, int]] = []
    for records in per_item.values():
        values = [float(m["value"]) for m in records if m["value"] is not None]
        missing += len(records) - len(values)
        if values:
            means.append(sum(values) / len(values))
        judged = [m["passed"] for m in records if m["passed"] is not None]
        if judged:
            passes.append((len(records), sum(1 for p in judged if p)))
    stats: dict[str, Any] = {
        "mean": _mean(means),
        "ci95": bootstrap_ci(means),
        "items": len(means),
        "missing": missing,
    }
    if passes:
        k = max(1, min(repeat, min(n for n, _ in passes)))
        stats["pass_rate"] = sum(c for _, c in passes) / sum(n for n, _ in passes)
        stats["pass@k"] = _mean([pass_at_k(n, c, k) for n, c in passes])
        stats["pass^k"] = _mean([pass_hat_k(n, c, k) for n, c in passes])
        stats["k"] = k
    return stats


def _agreement(rows: Sequence[EvalItemRow]) -> dict[str, Any]:
    """For each judged metric that names ``agree_with``: the share of items where both pass or both fail."""
    pairs: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in rows:
        by_name = {m["name"]: m for m in row.metrics}
        for metric in row.metrics:
            other = (metric.get("detail") or {}).get("agree_with")
            if (
                other
                and metric["passed"] is not None
                and other in by_name
                and by_name[other]["passed"] is not None
            ):
                pairs[(metric["name"], other)].append(metric["passed"] == by_name[other]["passed"])
    return {
        judge: {"with": other, "agreement": sum(v) / len(v), "items": len(v)}
        for (judge, other), v in pairs.items()
    }


def summarise(
    rows: Sequence[EvalItemRow], gates: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    repeat = max((row.repeat for row in rows), default=0) + 1
    metrics = {name: _metric_stats(per_item, repeat) for name, per_item in sorted(item_values(rows).items())}
    tags = sorted({tag for row in rows for tag in row.item.get("tags") or []})
    per_tag = {
        tag: {
            name: _metric_stats(per_item, repeat)
            for name, per_item in sorted(
                item_values(r for r in rows if tag in (r.item.get("tags") or [])).items()
            )
        }
        for tag in tags
    }
    latencies = [row.case["latency"] for row in rows if row.case and row.case.get("latency") is not None]
    summary: dict[str, Any] = {
        "rows": len(rows),
        "items": len({row.item_id for row in rows}),
        "repeat": repeat,
        "finished": sum(1 for row in rows if row.finished),
        "broken": [
            {"item": row.item_id, "repeat": row.repeat, "run_id": row.run_id, "reason": row.reason}
            for row in rows
            if row.status == "broken"
        ],
        "metrics": metrics,
        "tags": per_tag,
        "latencies": latencies,
        "judge_agreement": _agreement(rows),
    }
    summary["gates"] = evaluate_gates(summary, gates, baseline)
    summary["gates_passed"] = all(g["passed"] or g["level"] == "warn" for g in summary["gates"])
    return summary


def _stat(summary: Mapping[str, Any], metric: str, stat: str, tag: str | None) -> tuple[float | None, int]:
    table = summary["metrics"] if tag is None else summary.get("tags", {}).get(tag, {})
    found = table.get(metric)
    if found is None:
        return None, 0
    return found.get(stat), int(found.get("missing") or 0)


def evaluate_gates(
    summary: Mapping[str, Any], gates: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each gate with its value, the baseline's, whether it passed and why not."""
    results = []
    for gate in gates:
        metric, stat, tag, level = (
            gate["metric"],
            gate.get("stat", "mean"),
            gate.get("tag"),
            gate.get("level", "error"),
        )
        value, missing = _stat(summary, metric, stat, tag)
        problems = []
        if value is None:
            problems.append(
                f"no {stat} of metric {metric!r}"
                + (f" for tag {tag!r}" if tag else "")
                + " (a missing metric fails)"
            )
        else:
            if gate.get("min") is not None and value < gate["min"]:
                problems.append(f"{value:.4g} < min {gate['min']}")
            if gate.get("max") is not None and value > gate["max"]:
                problems.append(f"{value:.4g} > max {gate['max']}")
        if level == "critical" and missing:
            problems.append(f"{missing} items have no value (critical metrics fail closed)")
        base_value = None
        if gate.get("max_regression") is not None:
            base_value = _stat(baseline, metric, stat, tag)[0] if baseline is not None else None
            if base_value is None:
                if level == "critical" or baseline is not None:
                    problems.append("no baseline value to compare with (pass --baseline EVAL)")
            elif value is not None and base_value - value > gate["max_regression"]:
                problems.append(
                    f"dropped {base_value - value:.4g} from the baseline's {base_value:.4g} "
                    f"(max {gate['max_regression']})"
                )
        results.append(
            {
                **gate,
                "stat": stat,
                "level": level,
                "value": value,
                "baseline": base_value,
                "passed": not problems,
                "problems": problems,
            }
        )
    return results
