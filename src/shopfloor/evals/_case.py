"""What an item's run recorded, gathered into a ``Case``: its row, its events, and (for the
operational scorer) its spans in the trace store. Nothing is run again."""

from __future__ import annotations

import asyncio
from typing import Any

from shopfloor.evals._dataset import Item
from shopfloor.evals._scorer import Case, ToolCallRecord
from shopfloor.runtime import Runtime
from shopfloor.telemetry import TraceStore, compute_metrics, trace_store_url

__all__ = ["EVENT_PAGE", "build_case", "calls_of"]

#: events read per query; a run with fewer is read in one
EVENT_PAGE = 500


def calls_of(events: list[dict[str, Any]]) -> tuple[ToolCallRecord, ...]:
    """The tool calls of a run's events: each ``tool_result`` with the arguments its ``model_reply`` chose."""
    calls: list[ToolCallRecord] = []
    chosen: dict[str, Any] = {}
    for kind, data in ((e["kind"], e["data"]) for e in events):
        if kind == "model_reply":
            chosen[str(data.get("tool"))] = data.get("arguments")
        elif kind == "tool_result":
            tool = str(data.get("tool"))
            calls.append(
                ToolCallRecord(
                    tool=tool,
                    arguments=chosen.pop(tool, None),
                    output=data.get("output"),
                    error=data.get("error"),
                )
            )
    return tuple(calls)


def _span_facts(runtime: Runtime, run_id: str) -> tuple[float | None, float | None]:
    """(median time to first token of the run's model calls, their cost in USD) from the trace store."""
    settings = runtime.settings
    telemetry = runtime.telemetry
    if telemetry is not None:
        telemetry.force_flush()
    store = TraceStore(trace_store_url(settings))
    try:
        spans = store.run_spans(run_id)
    finally:
        store.close()
    if not spans:
        return None, None
    report = compute_metrics(spans, prices=settings.telemetry.prices or None)
    prices = settings.telemetry.prices
    return report.ttft.p50 if report.ttft.count else None, report.cost_usd if prices else None


async def build_case(runtime: Runtime, item: Item, run_id: str, *, spans: bool = False) -> Case:
    # The harness's per-item cost besides the run itself (issue 18): one thread hop, the cheapest reads.
    record, events = await asyncio.to_thread(runtime.store.recorded, run_id, page=EVENT_PAGE)
    ttft, cost = await asyncio.to_thread(_span_facts, runtime, run_id) if spans else (None, None)
    latency = record.finished_at - record.started_at if record.finished_at and record.started_at else None
    return Case(
        item=item,
        run_id=run_id,
        status=record.status,
        output=record.output,
        stop_reason=record.stop_reason,
        error=record.error,
        calls=calls_of(events),
        steps=record.steps,
        latency=latency,
        ttft=ttft,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cost=cost,
        faults=record.faults,
    )
