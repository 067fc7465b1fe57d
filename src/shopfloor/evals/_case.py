"""What an item's run recorded, gathered into a ``Case``: its row, its events, and (for the
operational scorer) its spans in the trace store. Nothing is run again."""

from __future__ import annotations

import asyncio
from typing import Any

from shopfloor.evals._dataset import Item
from shopfloor.evals._scorer import Case, ToolCallRecord
from shopfloor.runtime import RunRecord, Runtime
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


def _recorded(runtime: Runtime, run_id: str) -> tuple[RunRecord, list[dict[str, Any]]]:
    """The run's row and all its events, in one trip to a worker thread: this is the harness's
    per-item cost besides the run itself (issue 18), so no query or thread hop more than needed,
    and the row by its whole id (the primary key), not by prefix (``find`` scans every run)."""
    record = runtime.store.get(run_id)
    events: list[dict[str, Any]] = []
    while True:
        after = events[-1]["seq"] if events else -1
        batch = runtime.store.read_events(run_id, after=after, limit=EVENT_PAGE)
        events += batch
        if len(batch) < EVENT_PAGE:  # a short page is the last: no empty read to learn that
            return record, events


async def build_case(runtime: Runtime, item: Item, run_id: str, *, spans: bool = False) -> Case:
    record, events = await asyncio.to_thread(_recorded, runtime, run_id)
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
