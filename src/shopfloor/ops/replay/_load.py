"""Where a run's record for replay comes from: the runtime (DBOS) if it knows the run, else the
trace store."""

from __future__ import annotations

import asyncio

from shopfloor.errors import RunNotFoundError
from shopfloor.ops.replay._spans import RunInfo, recorded_from_spans, run_info_from_spans
from shopfloor.runtime import RecordedStep, Runtime, Services
from shopfloor.telemetry import TraceStore, trace_store_url

__all__ = ["load_record"]


async def load_record(
    services: Services, run_id: str, *, runtime: Runtime | None = None
) -> tuple[RunInfo, list[RecordedStep]]:
    """The run (``run_id`` or a prefix of it) and its recorded steps, read through ``runtime`` (a
    server's) or a runtime opened for it; RunNotFoundError where neither the run store nor the trace
    store has it, or the trace store lacks its step outputs."""
    try:
        if runtime is not None:
            record = await runtime.get_run(run_id)
            steps = await runtime.recorded_steps(record.run_id)
        else:
            async with Runtime(services) as opened:
                record = await opened.get_run(run_id)
                steps = await opened.recorded_steps(record.run_id)
        info = RunInfo(
            run_id=record.run_id,
            agent=record.agent,
            task=record.task,
            spec_path=record.spec_path,
            output=record.output,
            status=record.status,
            workspace_commit=record.workspace_commit,
            digest=record.release_digest,
            model=record.model,
        )
        return info, steps
    except RunNotFoundError:
        pass
    store = TraceStore(trace_store_url(services.settings), engines=services.engines)
    try:
        spans = await asyncio.to_thread(store.run_spans, run_id)
    finally:
        store.close()
    found = run_info_from_spans(run_id, spans)
    if found is None:
        raise RunNotFoundError(f"no run {run_id!r} in the run store or the trace store")
    try:
        return found, recorded_from_spans(spans)
    except ValueError as exc:
        raise RunNotFoundError(f"run {run_id}: {exc}") from exc
