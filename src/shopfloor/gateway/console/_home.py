"""The console's home page, tailored by what the signed-in role may see and do: the calls waiting for the
person; for operations (``dashboards:read``) the health of the last hour (each component's calls, fault
and timeout rates, the cost) and (``routes:read``) the budgets; for developers (``evals:read``) the
latest evaluations; and with ``runs:read`` (the business view too) the recent runs by status as a bar
chart (drawn by the browser with uPlot, the counts in a table beside it), per agent (runs, completion,
tokens, failures, the people's feedback on them), the latest failures, and the person's own runs."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
import time
from collections import Counter
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._charts import BarChart
from shopfloor.gateway.console._runs import STATUSES, waiting_for
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.ops.releases import Feedback
from shopfloor.runtime import RunRecord
from shopfloor.telemetry import MetricsReport, compute_metrics

__all__ = ["home_routes", "summarise"]

#: the home page summarises this many of the newest runs (one indexed query)
RECENT = 500
#: the operations view's health covers this many seconds
HEALTH_SECONDS = 3600
#: the developer view lists this many of the newest evaluations
LATEST_EVALS = 5


def summarise(records: list[RunRecord], principal_id: str, feedback: list[Feedback]) -> dict[str, Any]:
    """What the home page shows of ``records`` (newest first) and of the ``feedback`` given on them (any
    other feedback is left out: it may be on runs the person may not see)."""
    counts: Counter[str] = Counter(r.status for r in records)
    by_status = BarChart.of("Runs by status", "status", {s: {"runs": float(counts[s])} for s in STATUSES})
    agents: dict[str, dict[str, int]] = {}
    for r in records:
        row = agents.setdefault(
            r.agent, {"runs": 0, "completed": 0, "failed": 0, "tokens": 0, "good": 0, "bad": 0}
        )
        row["runs"] += 1
        row["completed"] += r.status == "completed"
        row["failed"] += r.status == "failed"
        row["tokens"] += r.total_tokens
    shown = {r.run_id: r.agent for r in records}
    for item in feedback:
        if item.run_id in shown:
            agents[shown[item.run_id]]["good" if item.rating > 0 else "bad"] += 1
    return {
        "total": len(records),
        "by_status": by_status,
        "tokens": sum(r.total_tokens for r in records),
        "agents": sorted(agents.items(), key=lambda item: -item[1]["runs"])[:20],
        "failed": [r for r in records if r.status == "failed"][:5],
        "mine": [r for r in records if r.caller == principal_id][:10],
    }


def home_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane
    settings = plane.services.settings

    @app.get("/console/")
    async def home(request: Request, session: Session) -> Response:
        principal = session.principal
        summary = None
        if console.can(principal, "runs:read"):
            recent = await plane.runtime.list_runs(limit=RECENT)
            shown = await plane.visible(principal, "runs:read", [r.spec_path for r in recent])
            records = [r for r, ok in zip(recent, shown, strict=True) if ok]
            since = min((r.created_at for r in records), default=time.time())
            feedback = await asyncio.to_thread(console.deployments.store.feedback, since=since)
            summary = summarise(records, principal.id, feedback)
        health: MetricsReport | None = None
        if console.can(principal, "dashboards:read"):
            since_ns = time.time_ns() - HEALTH_SECONDS * 10**9
            spans = await asyncio.to_thread(plane.traces.spans, since_ns=since_ns)
            health = compute_metrics(spans, prices=settings.telemetry.prices)
        evals = None
        if console.can(principal, "evals:read"):
            evals = await asyncio.to_thread(console.evals.list_evals, limit=LATEST_EVALS)
        limits = settings.security.limits if console.can(principal, "routes:read") else None
        waiting = await waiting_for(console, principal)
        return console.render(
            request,
            "home.html",
            summary=summary,
            waiting=waiting,
            recent=RECENT,
            health=health,
            health_hours=HEALTH_SECONDS / 3600,
            evals=evals,
            limits=limits,
        )
