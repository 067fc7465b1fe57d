"""SpanRecord: a finished span as plain data, the unit of the trace store.

Converted once from the SDK's ``ReadableSpan`` in the exporter thread; the trace
view, the metrics, replay and the OTLP JSON export all read this one shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from shopfloor.telemetry._conventions import AGENT_NAME, COMPONENT, CONVERSATION_ID, RUN_ID

__all__ = ["STATUS_NAMES", "SpanRecord", "otlp_json"]

Status = Literal["unset", "ok", "error"]
STATUS_NAMES: dict[StatusCode, Status] = {
    StatusCode.UNSET: "unset",
    StatusCode.OK: "ok",
    StatusCode.ERROR: "error",
}
_KINDS = {kind.name.lower(): kind.value + 1 for kind in SpanKind}  # OTLP numbers kinds from 1


@dataclass(frozen=True, kw_only=True)
class SpanRecord:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None
    name: str
    kind: str = "internal"
    start_ns: int
    end_ns: int
    status: Status = "unset"
    status_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    service: str = "shopfloor"

    @property
    def duration(self) -> float:
        """Seconds."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def run_id(self) -> str | None:
        value = self.attributes.get(RUN_ID, self.attributes.get(CONVERSATION_ID))
        return str(value) if value is not None else None

    @property
    def agent(self) -> str | None:
        value = self.attributes.get(AGENT_NAME)
        return str(value) if value is not None else None

    @property
    def component(self) -> str | None:
        value = self.attributes.get(COMPONENT)
        return str(value) if value is not None else None

    @classmethod
    def from_span(cls, span: ReadableSpan) -> SpanRecord:
        ctx = span.context
        parent = span.parent
        attributes = {k: _plain(v) for k, v in (span.attributes or {}).items()}
        events = [
            {
                "name": e.name,
                "time_ns": e.timestamp,
                "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ]
        return cls(
            trace_id=format(ctx.trace_id, "032x") if ctx else "0" * 32,
            span_id=format(ctx.span_id, "016x") if ctx else "0" * 16,
            parent_span_id=format(parent.span_id, "016x") if parent else None,
            name=span.name,
            kind=span.kind.name.lower(),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            status=STATUS_NAMES[span.status.status_code],
            status_message=span.status.description,
            attributes=attributes,
            events=events,
            service=str(span.resource.attributes.get("service.name", "shopfloor")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration": self.duration,
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": self.events,
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP JSON carries 64-bit integers as strings
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _key_values(value)}}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value, default=str)}


def _key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _any_value(value)} for key, value in attributes.items()]


def otlp_json(spans: Iterable[SpanRecord]) -> dict[str, Any]:
    """The spans as an OTLP/JSON ``ExportTraceServiceRequest`` (what ``/v1/traces`` accepts)."""
    by_service: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_service.setdefault(span.service, []).append(span)
    codes = {"unset": 0, "ok": 1, "error": 2}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _key_values({"service.name": service})},
                "scopeSpans": [
                    {
                        "scope": {"name": "shopfloor"},
                        "spans": [
                            {
                                "traceId": s.trace_id,
                                "spanId": s.span_id,
                                **({"parentSpanId": s.parent_span_id} if s.parent_span_id else {}),
                                "name": s.name,
                                "kind": _KINDS.get(s.kind, 1),
                                "startTimeUnixNano": str(s.start_ns),
                                "endTimeUnixNano": str(s.end_ns),
                                "attributes": _key_values(s.attributes),
                                "events": [
                                    {
                                        "timeUnixNano": str(e["time_ns"]),
                                        "name": e["name"],
                                        "attributes": _key_values(e.get("attributes", {})),
                                    }
                                    for e in s.events
                                ],
                                "status": {
                                    "code": codes[s.status],
                                    **({"message": s.status_message} if s.status_message else {}),
                                },
                            }
                            for s in group
                        ],
                    }
                ],
            }
            for service, group in by_service.items()
        ]
    }
