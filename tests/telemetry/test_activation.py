"""Telemetry is active where its owner activates it: per context, never process-wide."""

from __future__ import annotations

import asyncio
import threading

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shopfloor.config import Settings
from shopfloor.telemetry import Telemetry, build_telemetry, current_telemetry, span


def _recording(settings: Settings) -> tuple[Telemetry, InMemorySpanExporter]:
    telemetry = build_telemetry(settings)
    exported = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exported))
    return telemetry, exported


def _names(exported: InMemorySpanExporter) -> list[str]:
    return sorted(s.name for s in exported.get_finished_spans())


async def test_spans_go_to_the_telemetry_active_in_their_context(settings: Settings) -> None:
    first, seen_first = _recording(settings)
    second, seen_second = _recording(settings)
    try:
        assert current_telemetry() is None  # built is not active
        with span("nowhere"):
            pass

        def in_thread(name: str) -> None:
            with span(name):
                pass

        async def run(telemetry: Telemetry, name: str) -> None:
            with telemetry.activate():
                await asyncio.sleep(0)  # the two runs interleave on one loop
                with span(name):
                    await asyncio.to_thread(in_thread, f"{name}.thread")

        await asyncio.gather(run(first, "a"), run(second, "b"))
        with first.activate():
            other: list[Telemetry | None] = []
            thread = threading.Thread(target=lambda: other.append(current_telemetry()))
            thread.start()
            thread.join()
        assert other == [None]  # a thread started elsewhere does not inherit it
        assert current_telemetry() is None
    finally:
        first.shutdown()
        second.shutdown()
    assert _names(seen_first) == ["a", "a.thread"]
    assert _names(seen_second) == ["b", "b.thread"]
