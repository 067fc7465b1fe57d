"""Helpers shared by the telemetry tests: scripted models, a tool, reading spans back."""

from __future__ import annotations

from typing import Any

from shopfloor.models import FunctionModel, ModelRequest
from shopfloor.telemetry import SpanRecord, Telemetry
from shopfloor.tools import FunctionTool


def run_spans(telemetry: Telemetry, run_id: str) -> list[SpanRecord]:
    telemetry.force_flush()
    return telemetry.store.run_spans(run_id)


def by_name(spans: list[SpanRecord], prefix: str) -> list[SpanRecord]:
    return [s for s in spans if s.name.startswith(prefix)]


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def final(answer: str) -> dict[str, Any]:
    return call("final_answer", answer=answer)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


ADD = FunctionTool(add)


def scripted(*replies: dict[str, Any]) -> FunctionModel:
    """A model that gives ``replies`` in turn, whatever it is asked."""
    remaining = list(replies)

    def reply(request: ModelRequest) -> dict[str, Any]:
        return remaining.pop(0)

    return FunctionModel(reply, name="scripted")
