"""Public benchmarks' own tables in an evaluation's report: BFCL's accuracy per category beside the
figures the BFCL leaderboard publishes for comparable small models (``data/bfcl_published.json``,
its source named in it), and AgentDojo's utility and attack success rate per suite.

Each table is computed from the items' recorded metrics, item by item (broken items and missing
values are counted, never averaged in), so it is the same whenever the evaluation is reported.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from shopfloor.evals._bfcl import BFCL_CATEGORIES
from shopfloor.evals._store import EvalItemRow

__all__ = ["benchmark_tables", "published_bfcl"]


@cache
def published_bfcl() -> dict[str, Any]:
    """The BFCL leaderboard's figures shipped with Shopfloor: its source and, per model, accuracy per
    category (a fraction)."""
    text = resources.files("shopfloor.evals").joinpath("data", "bfcl_published.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _scorer_name(config: Mapping[str, Any], kind: str) -> str | None:
    for scorer in config.get("scorers") or []:
        if scorer.get("type") == kind:
            return str(scorer.get("name") or kind)
    return None


def _value(row: EvalItemRow, metric: str) -> float | None:
    for recorded in row.metrics:
        if recorded.get("name") == metric and recorded.get("value") is not None:
            return float(recorded["value"])
    return None


def _share(values: Sequence[float | None]) -> dict[str, Any]:
    scored = [v for v in values if v is not None]
    return {
        "mean": sum(scored) / len(scored) if scored else None,
        "items": len(scored),
        "missing": len(values) - len(scored),
    }


def _bfcl(config: Mapping[str, Any], rows: Sequence[EvalItemRow]) -> dict[str, Any] | None:
    metric = _scorer_name(config, "bfcl")
    by_category: dict[str, list[float | None]] = defaultdict(list)
    for row in rows:
        meta = row.item.get("metadata") or {}
        if meta.get("benchmark") == "bfcl" and isinstance(meta.get("category"), str):
            by_category[meta["category"]].append(_value(row, metric) if metric else None)
    if not by_category:
        return None
    categories = sorted(by_category, key=lambda c: (*BFCL_CATEGORIES, c).index(c))
    published = published_bfcl()
    return {
        "metric": metric,
        "categories": {category: _share(by_category[category]) for category in categories},
        "published": {
            "source": published["source"],
            "models": [
                {
                    "model": model["model"],
                    "accuracy": {c: model["accuracy"].get(c) for c in categories},
                }
                for model in published["models"]
            ],
        },
    }


def _agentdojo(config: Mapping[str, Any], rows: Sequence[EvalItemRow]) -> dict[str, Any] | None:
    metric = _scorer_name(config, "agentdojo")
    values: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        meta = row.item.get("metadata") or {}
        if meta.get("benchmark") != "agentdojo":
            continue
        suite = str(meta.get("suite"))
        attacked = meta.get("injection_task") is not None
        utility = _value(row, f"{metric}.utility") if metric else None
        values[suite]["utility_under_attack" if attacked else "utility"].append(utility)
        if attacked:
            success = _value(row, f"{metric}.attack_success") if metric else None
            values[suite]["attack_success"].append(success)
    if not values:
        return None
    return {
        "metric": metric,
        "suites": {
            suite: {
                part: _share(parts[part]) for part in ("utility", "utility_under_attack", "attack_success")
            }
            for suite, parts in sorted(values.items())
        },
    }


def benchmark_tables(config: Mapping[str, Any], rows: Sequence[EvalItemRow]) -> dict[str, Any]:
    """The benchmarks' tables of an evaluation (its ``config``, for the scorers' metric names):
    ``bfcl`` and ``agentdojo`` where its items come from them."""
    tables = {"bfcl": _bfcl(config, rows), "agentdojo": _agentdojo(config, rows)}
    return {name: table for name, table in tables.items() if table is not None}
