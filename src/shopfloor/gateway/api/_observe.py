"""A run's trace (as `shopfloor trace --json` prints it) and the metrics of `shopfloor metrics`."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from shopfloor.errors import RunNotFoundError
from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.security import Principal
from shopfloor.telemetry import compute_metrics, tree_json

__all__ = ["observe_router"]


def observe_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(tags=["traces and metrics"], responses=ERRORS)
    runtime, traces, prices = plane.runtime, plane.traces, plane.services.settings.telemetry.prices
    Caller = Annotated[Principal, Depends(plane.principal)]

    @router.get("/v1/runs/{run_id}/trace", summary="The run's spans as a tree (as `shopfloor trace --json`)")
    async def trace(run_id: str, caller: Caller) -> dict[str, Any]:
        record = await runtime.get_run(run_id)
        await plane.authorize_on(caller, "traces:read", name=record.run_id, spec_path=record.spec_path)
        spans = await asyncio.to_thread(traces.run_spans, record.run_id)
        if not spans:
            raise RunNotFoundError(f"no spans for run {record.run_id!r} in the trace store")
        return {
            "run_id": record.run_id,
            "trace_ids": sorted({s.trace_id for s in spans}),
            "spans": tree_json(spans, prices=prices),
        }

    @router.get(
        "/v1/metrics/agents", summary="Agent metrics from the trace store (as `shopfloor metrics --json`)"
    )
    async def agent_metrics(
        caller: Caller,
        since_seconds: Annotated[float | None, Query(gt=0, le=10 * 365 * 86400)] = None,
        agent: Annotated[str | None, Query(max_length=128)] = None,
    ) -> dict[str, Any]:
        since_ns = None if since_seconds is None else int((time.time() - since_seconds) * 1e9)
        spans = await asyncio.to_thread(traces.spans, since_ns=since_ns, agent=agent)
        return compute_metrics(spans, prices=prices).to_dict()

    return router
