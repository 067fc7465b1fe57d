"""The console's home page, tailored by what the signed-in role may see: the calls waiting for the
person, and (with ``runs:read``) the recent runs by status as a bar chart (drawn by the
browser with uPlot, the counts in a table beside it), per agent (runs, completion,
tokens, failures), the latest failures, and the person's own runs."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

from collections import Counter
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._charts import BarChart
from shopfloor.gateway.console._runs import STATUSES, waiting_for
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.runtime import RunRecord

__all__ = ["home_routes", "summarise"]

#: the home page summarises this many of the newest runs (one indexed query)
RECENT = 500


def summarise(records: list[RunRecord], principal_id: str) -> dict[str, Any]:
    """What the home page shows of ``records`` (newest first)."""
    counts: Counter[str] = Counter(r.status for r in records)
    by_status = BarChart.of("Runs by status", "status", {s: {"runs": float(counts[s])} for s in STATUSES})
    agents: dict[str, dict[str, int]] = {}
    for r in records:
        row = agents.setdefault(r.agent, {"runs": 0, "completed": 0, "failed": 0, "tokens": 0})
        row["runs"] += 1
        row["completed"] += r.status == "completed"
        row["failed"] += r.status == "failed"
        row["tokens"] += r.total_tokens
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

    @app.get("/console/")
    async def home(request: Request, session: Session) -> Response:
        principal = session.principal
        summary = None
        if console.can(principal, "runs:read"):
            recent = await plane.runtime.list_runs(limit=RECENT)
            shown = await plane.visible(principal, "runs:read", [r.spec_path for r in recent])
            summary = summarise([r for r, ok in zip(recent, shown, strict=True) if ok], principal.id)
        waiting = await waiting_for(console, principal)
        return console.render(request, "home.html", summary=summary, waiting=waiting, recent=RECENT)
