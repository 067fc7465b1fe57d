"""Shopfloor's own spans: OpenTelemetry spans without the SDK's per-span machinery.

Every agent step opens a span or two. The SDK's ``Span`` costs ~60 us each on this
project's VMs (a lock and a value check per attribute, a sampler, a chain of processors
on start and end), and beside a durable step that was three times what the tracing
target allows. A ``LeanSpan`` is an SDK ``ReadableSpan`` (what every exporter reads)
that is also an API ``Span`` (what code between start and end writes to): attributes
in a plain dict, ids from the SDK's generator, made current through the OpenTelemetry
context (so a library's span opened inside nests under it), and handed at its end to
the same span processors an SDK span reaches, which batch it to the local store and
the OTLP collectors as before. Spans other libraries open still go through the SDK.

Values are ours and checked cheaply: str, bool, int and float as they are, sequences
as tuples, anything else as its ``str``; None drops the attribute. Nothing changes a
span after ``end`` (the export thread reads it then).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from random import getrandbits
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    INVALID_SPAN_CONTEXT,
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from shopfloor.telemetry._context import RUN
from shopfloor.telemetry._conventions import RUN_ID

__all__ = ["CURRENT_CONTEXT", "SPAN_KEY", "LeanSpan", "LeanTracer"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
#: the key of the current span in an OpenTelemetry ``Context`` (what ``get_current_span`` reads), found
#: through the public API (the one key ``set_span_in_context`` writes into an empty context), not imported
SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
_runtime_context = getattr(context_api, "_RUNTIME_CONTEXT", None)
#: the ``ContextVar`` holding OpenTelemetry's current context, where its runtime context is the default
#: one (contextvars); None where another is configured (``OTEL_PYTHON_CONTEXT``): then the API is used.
#: ``get_current``, ``attach``, ``detach``, ``get_value`` and ``set_value`` each reach it through two
#: Python calls, ~10 a span, on every span a step opens (``SpanScope`` sets and resets it directly).
CURRENT_CONTEXT: ContextVar[Context] | None = (
    _runtime_context._current_context if type(_runtime_context) is ContextVarsRuntimeContext else None
)
_PLAIN = (str, bool, int, float)
#: values kept without a call to ``_value`` (their subclasses go through it, and are kept too)
_PLAIN_TYPES = frozenset(_PLAIN)


def _value(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if type(value) is tuple or (isinstance(value, Sequence) and not isinstance(value, bytes | bytearray)):
        return tuple(v if isinstance(v, _PLAIN) else str(v) for v in value)
    return str(value)


class LeanSpan(ReadableSpan, trace.Span):
    def __init__(
        self,
        name: str,
        *,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        tracer: LeanTracer,
    ) -> None:
        super().__init__(
            name,
            context=context,
            parent=parent,
            resource=tracer.resource,
            attributes=attributes,
            events=[],
            kind=kind,
            start_time=time.time_ns(),
            instrumentation_scope=tracer.scope,
        )
        self._processors = tracer.processors

    # -- the API Span: what the code inside the span calls ---------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set for a LeanSpan

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is None and value is not None:
            self._attributes[key] = value if type(value) in _PLAIN_TYPES else _value(value)  # type: ignore[index]

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._end_time is not None:
            return
        values = self._attributes
        for key, value in attributes.items():
            if value is not None:
                values[key] = value if type(value) in _PLAIN_TYPES else _value(value)  # type: ignore[index]

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end_time is None:
            self._events.append(Event(name, attributes, timestamp or time.time_ns()))  # type: ignore[attr-defined]

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is None:
            self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        details = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **dict(attributes or {}),
        }
        self.add_event("exception", details, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time or time.time_ns()
        for processor in self._processors:
            processor.on_end(self)


class LeanTracer:
    """Starts ``LeanSpan``s that the given processors receive when they end."""

    def __init__(self, *, resource: Resource, processors: list[SpanProcessor]) -> None:
        self.resource = resource
        #: the telemetry's own list: a processor added to it later receives the spans too
        self.processors = processors
        self.scope = InstrumentationScope("shopfloor")

    def start_span(
        self,
        name: str,
        attributes: Mapping[str, Any],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        context: Context | None = None,
    ) -> LeanSpan:
        """A span, child of the span current in ``context`` (the current context by default) where
        that one is valid; not made current."""
        # ``trace.get_current_span(context)``: the span in the context, where it is one
        parent_span = (context if context is not None else context_api.get_current()).get(SPAN_KEY)
        if type(parent_span) is LeanSpan or isinstance(parent_span, trace.Span):
            current = parent_span.get_span_context()
        else:
            current = INVALID_SPAN_CONTEXT
        # A ``SpanContext`` is a tuple (trace id, span id, is remote, flags, state, is valid), which its
        # properties index: read here by index, a Python call less each (three a span).
        parent = current if current[5] else None
        # What the SDK's ``RandomIdGenerator`` does, without its two calls a span.
        span_id = getrandbits(64)
        while span_id == INVALID_SPAN_ID:
            span_id = getrandbits(64)
        if parent is not None:
            trace_id, trace_state = current[0], current[4]
        else:
            trace_id, trace_state = getrandbits(128), DEFAULT_TRACE_STATE
            while trace_id == INVALID_TRACE_ID:
                trace_id = getrandbits(128)
        # ``SpanContext(trace_id, span_id, is_remote=False, ...)`` without its ``__new__`` in Python: the
        # ids are in range and not invalid (drawn so above, or the valid parent's), so it is valid.
        span_context = tuple.__new__(SpanContext, (trace_id, span_id, False, _SAMPLED, trace_state, True))
        values = {
            key: value if type(value) in _PLAIN_TYPES else _value(value)
            for key, value in attributes.items()
            if value is not None
        }
        if RUN_ID not in values and (run_id := RUN.get()) is not None:
            values[RUN_ID] = run_id
        return LeanSpan(name, context=span_context, parent=parent, kind=kind, attributes=values, tracer=self)
