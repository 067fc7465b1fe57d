"""The small API every package uses to add its spans.

    from shopfloor.telemetry import span, SANDBOX_CPU

    with span("sandbox.exec", component="sandbox", attributes={"shopfloor.sandbox.backend": "bwrap"}) as s:
        result = await run_it()
        s.set_attribute(SANDBOX_CPU, result.cpu_seconds)

A span opened inside a run is a child of the run's current span and carries the
run id. An exception leaving the block marks the span as an error with
``error.type`` (``timeout`` for timeouts). Without configured telemetry every
span is a no-op costing a few microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from shopfloor._json import COMPACT
from shopfloor.telemetry._context import ACTIVE, RUN
from shopfloor.telemetry._conventions import COMPONENT, ERROR_TYPE, Component
from shopfloor.telemetry._lean import CURRENT_CONTEXT, SPAN_KEY, LeanSpan
from shopfloor.telemetry._redact import redact

__all__ = [
    "MAX_CONTENT",
    "content_enabled",
    "current_run_id",
    "error_type",
    "mark_error",
    "open_span",
    "record_content",
    "run_scope",
    "span",
    "tracer",
]

_NOOP = trace.NoOpTracer()
#: ``json.dumps(value, default=str, separators=(",", ":"))`` without building an encoder per call
_json = COMPACT.encode
#: longest content attribute, in characters, recorded under ``record_content``
MAX_CONTENT = 32_000


def tracer() -> Tracer:
    """The active tracer (a no-op one where telemetry is not configured)."""
    active = ACTIVE.get()
    return active.tracer if active is not None else _NOOP


def current_run_id() -> str | None:
    return RUN.get()


def content_enabled(*, full: bool = True) -> bool:
    """Whether content goes on spans: ``full`` (messages, tool arguments) or just what replay needs."""
    active = ACTIVE.get()
    if active is None:
        return False
    return active.record_content if full else active.store_content


def error_type(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__


def mark_error(target: Span, kind: str, message: str | None = None) -> None:
    """Mark a span as failed without an exception (a tool that reported an error)."""
    target.set_attribute(ERROR_TYPE, kind)
    target.set_status(Status(StatusCode.ERROR, message))


def record_content(target: Span, key: str, value: Any, *, full: bool = True, text: str | None = None) -> None:
    """Put redacted ``value`` (JSON unless a string) on the span, where content recording allows.
    ``text``: ``value``'s JSON as ``redact_json`` gave it (redacted already), where the caller has it."""
    if not target.is_recording() or not content_enabled(full=full):
        return
    if text is None:
        text = value if isinstance(value, str) else _json(value)
        # Redacted before the cut, which could leave a secret too short for its pattern (the exporters
        # redact every span again, ``_outbound.py``).
        text = redact(text)
    if full and len(text) > MAX_CONTENT:
        # Input messages repeat the whole context at every call: cap them. Step outputs are
        # never cut, since replay from the trace store needs them whole.
        text = text[:MAX_CONTENT] + f"... [{len(text) - MAX_CONTENT} more characters]"
    target.set_attribute(key, text)


@contextmanager
def run_scope(run_id: str) -> Iterator[None]:
    """Spans opened in this block (and tasks started from it) carry ``run_id``."""
    token = RUN.set(run_id)
    try:
        yield
    finally:
        RUN.reset(token)


class SpanScope:
    """``open_span``'s block: the span started and made current on entry, ended on exit.

    A class rather than a generator-based context manager: every step opens one or two, and a
    generator's layer (its frame, ``next`` and ``throw`` on each edge) costs as much as the span.
    """

    __slots__ = ("_attributes", "_kind", "_name", "_span", "_token")

    def __init__(self, name: str, attributes: Mapping[str, Any], kind: SpanKind) -> None:
        self._name = name
        self._attributes = attributes
        self._kind = kind
        self._span: LeanSpan | None = None
        self._token: object = None

    def __enter__(self) -> LeanSpan | None:
        active = ACTIVE.get()
        if active is None:
            return None
        # One look-up of the current context, for the parent and for the context the span is made current in.
        variable = CURRENT_CONTEXT
        context = variable.get() if variable is not None else context_api.get_current()
        current = self._span = active.lean.start_span(
            self._name, self._attributes, kind=self._kind, context=context
        )
        if variable is None:
            self._token = context_api.attach(trace.set_span_in_context(current, context))
            return current
        # ``attach(set_span_in_context(current, context))``, as those functions do it
        values = context.copy()
        values[SPAN_KEY] = current
        self._token = variable.set(Context(values))
        return current

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        current = self._span
        if current is None:
            return
        if exc is not None:
            current.set_attribute(ERROR_TYPE, error_type(exc))
            if isinstance(exc, Exception):
                current.record_exception(exc)
                current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        token: Token[Context] = self._token  # type: ignore[assignment]  # ``__enter__``'s
        if CURRENT_CONTEXT is None:
            context_api.detach(token)
        else:
            try:
                CURRENT_CONTEXT.reset(token)
            except Exception:  # as ``detach`` does: logged (by ``detach``, failing again), not raised
                context_api.detach(token)
        current.end()


def open_span(name: str, attributes: Mapping[str, Any], *, kind: SpanKind = SpanKind.INTERNAL) -> SpanScope:
    """The current span for the block with exactly ``attributes``, or None where telemetry is off.

    What ``start_as_current_span`` does, with a lean span (``_lean.py``) and without its two
    context-manager layers: it runs for every step, and the tracing benchmark shows each layer.
    """
    return SpanScope(name, attributes, kind)


@contextmanager
def span(
    name: str,
    *,
    component: Component | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """Open ``name`` as the current span for the block; see the module docstring."""
    attrs = dict(attributes or {})
    if component is not None:
        attrs[COMPONENT] = component
    # The run's id is stamped where the span starts (``LeanTracer.start_span``).
    with open_span(name, attrs, kind=kind) as current:
        yield current if current is not None else INVALID_SPAN
