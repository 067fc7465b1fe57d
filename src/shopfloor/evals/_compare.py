"""Two evaluations of the same items, compared item by item: per metric the paired differences,
a paired bootstrap interval of the mean difference, a sign test, the items that flipped, a verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shopfloor.errors import EvalError
from shopfloor.evals._stats import bootstrap_ci, item_values
from shopfloor.evals._store import EvalItemRow

__all__ = ["compare", "sign_test"]


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / float(1 << n)
    return min(1.0, 2 * tail)


def _per_item(rows: Sequence[EvalItemRow]) -> dict[str, dict[str, tuple[float | None, bool | None]]]:
    """metric -> item -> (mean value over repeats, passed in most repeats)."""
    out: dict[str, dict[str, tuple[float | None, bool | None]]] = {}
    for name, items in item_values(rows).items():
        out[name] = {}
        for item, records in items.items():
            values = [float(m["value"]) for m in records if m["value"] is not None]
            passes = [bool(m["passed"]) for m in records if m["passed"] is not None]
            mean = sum(values) / len(values) if values else None
            out[name][item] = (mean, sum(passes) * 2 > len(passes) if passes else None)
    return out


def compare(a: Sequence[EvalItemRow], b: Sequence[EvalItemRow], *, alpha: float = 0.05) -> dict[str, Any]:
    """B against A on every metric both have, over the items both scored."""
    left, right = _per_item(a), _per_item(b)
    common = sorted(set(left) & set(right))
    if not common:
        raise EvalError("the two evaluations share no metric: compare evaluations of the same suite")
    metrics: dict[str, Any] = {}
    for name in common:
        items = sorted(
            i
            for i in set(left[name]) & set(right[name])
            if left[name][i][0] is not None and right[name][i][0] is not None
        )
        diffs = [right[name][i][0] - left[name][i][0] for i in items]  # type: ignore[operator]
        wins = sum(1 for d in diffs if d > 0)
        losses = sum(1 for d in diffs if d < 0)
        p = sign_test(wins, losses)
        ci = bootstrap_ci(diffs)
        mean = sum(diffs) / len(diffs) if diffs else None
        flipped = [
            {"item": i, "from": left[name][i][1], "to": right[name][i][1]}
            for i in items
            if left[name][i][1] is not None
            and right[name][i][1] is not None
            and left[name][i][1] != right[name][i][1]
        ]
        if ci is not None and ci[0] > 0 and p < alpha:
            verdict = "better"
        elif ci is not None and ci[1] < 0 and p < alpha:
            verdict = "worse"
        else:
            verdict = "no significant difference"
        metrics[name] = {
            "items": len(items),
            "mean_a": _mean([left[name][i][0] for i in items]),
            "mean_b": _mean([right[name][i][0] for i in items]),
            "mean_difference": mean,
            "ci95": ci,
            "wins": wins,
            "losses": losses,
            "ties": len(diffs) - wins - losses,
            "sign_test_p": p,
            "flipped": flipped,
            "verdict": verdict,
        }
    verdicts = {m["verdict"] for m in metrics.values()}
    overall = (
        "worse" if "worse" in verdicts else "better" if "better" in verdicts else "no significant difference"
    )
    return {"metrics": metrics, "verdict": overall}


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
