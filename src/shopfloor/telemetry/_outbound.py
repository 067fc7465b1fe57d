"""What every span looks like once it leaves the run: redacted, and without content where asked.

Each exporter (the local trace store, OTLP over HTTP and gRPC, any added one) sits behind
``Outbound``, so no stored or exported span carries a secret that ``redact`` recognises: not in
an attribute, not in an event (an exception's message and stack trace), not in the status
description (a tool's error). This runs in the export thread, not on the run's path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from shopfloor.telemetry._conventions import CONTENT_KEYS
from shopfloor.telemetry._redact import may_hold_secret, redact

__all__ = ["Outbound", "outbound_span"]


class Outbound(SpanExporter):
    """Redacts every span (and, with ``strip_content``, drops message and tool content) for ``inner``."""

    def __init__(self, inner: SpanExporter, *, strip_content: bool = False) -> None:
        self.inner = inner
        self.strip_content = strip_content

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([outbound_span(span, strip_content=self.strip_content) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _attributes(attributes: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any] | None:
    """The attributes redacted, or None where nothing changes (the span is passed on as it is)."""
    changed = False
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in drop:
            changed = True
            continue
        if isinstance(value, str):
            new: Any = redact(value)
        elif isinstance(value, tuple | list) and any(isinstance(item, str) for item in value):
            new = tuple(redact(item) if isinstance(item, str) else item for item in value)
        else:
            new = value
        changed = changed or new != value
        cleaned[key] = new
    return cleaned if changed else None


def _texts(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    if span.status.description:
        yield span.status.description
    for attributes in (span.attributes or {}, *(event.attributes or {} for event in span.events)):
        for value in attributes.values():
            if isinstance(value, str):
                yield value
            elif isinstance(value, tuple | list):
                yield from (item for item in value if isinstance(item, str))


def outbound_span(span: ReadableSpan, *, strip_content: bool = False) -> ReadableSpan:
    """``span`` as it may be stored or exported (the same object where nothing needed changing)."""
    drop = CONTENT_KEYS if strip_content else frozenset()
    stripping = bool(drop.intersection(span.attributes or {}))
    if not stripping and not may_hold_secret("\n".join(_texts(span))):
        return span  # the common case: one screen of all the span's text
    attributes = _attributes(span.attributes or {}, drop)
    events: list[Event] | None = None
    for index, event in enumerate(span.events):
        cleaned = _attributes(event.attributes or {}, frozenset())
        if cleaned is not None:
            events = events or list(span.events)
            events[index] = Event(event.name, cleaned, event.timestamp)
    status = span.status
    if status.description:
        description = redact(status.description)
        if description != status.description:
            status = Status(status.status_code, description)
    name = redact(span.name)
    if attributes is None and events is None and status is span.status and name == span.name:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events if events is not None else span.events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
