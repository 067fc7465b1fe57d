"""The console's evaluations: the evaluations of the harness (suites, agents, status), one evaluation's
metrics (means with their 95% intervals, pass rates) charted (bars drawn by the browser with
uPlot, ``BarChart``) and its items linked to their runs, and two
evaluations compared item by item (the harness's ``compare``: sign test, bootstrap interval, verdicts)."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response

from shopfloor.evals import EvalItemRow, EvalRecord, compare
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._charts import BarChart
from shopfloor.gateway.console._sessions import ConsoleSession

__all__ = ["eval_routes"]

EvalId = Annotated[str, Query(min_length=1, max_length=128)]


def _means(record: EvalRecord) -> dict[str, float | None]:
    metrics = (record.summary or {}).get("metrics") or {}
    return {name: stats.get("mean") for name, stats in metrics.items()}


def eval_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    store = console.evals

    @app.get("/console/evals")
    async def evals(
        request: Request, session: Session, suite: Annotated[str | None, Query(max_length=256)] = None
    ) -> Response:
        records = await asyncio.to_thread(store.list_evals, limit=100, suite=suite or None)
        return console.render(request, "evals.html", evals=records, suite=suite or "")

    @app.get("/console/evals/compare")
    async def compared(request: Request, session: Session, a: EvalId, b: EvalId) -> Response:
        def load() -> tuple[EvalRecord, EvalRecord, list[EvalItemRow], list[EvalItemRow]]:
            left, right = store.find(a), store.find(b)
            return left, right, store.items(left.eval_id), store.items(right.eval_id)

        left, right, left_items, right_items = await asyncio.to_thread(load)
        result = compare(left_items, right_items)
        means = {name: {"A": m["mean_a"], "B": m["mean_b"]} for name, m in sorted(result["metrics"].items())}
        chart = BarChart.of("Mean of each metric, A and B", "metric", means)
        return console.render(request, "eval_compare.html", a=left, b=right, result=result, chart=chart)

    @app.get("/console/evals/{eval_id}")
    async def evaluation(request: Request, session: Session, eval_id: str) -> Response:
        def load() -> tuple[EvalRecord, list[EvalItemRow]]:
            record = store.find(eval_id)
            return record, store.items(record.eval_id)

        record, items = await asyncio.to_thread(load)
        chart = BarChart.of(
            "Mean of each metric", "metric", {name: {"mean": v} for name, v in _means(record).items()}
        )
        return console.render(request, "eval.html", evaluation=record, items=items[:1000], chart=chart)
