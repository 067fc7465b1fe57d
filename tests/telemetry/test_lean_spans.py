"""Shopfloor's lean spans: OpenTelemetry context, parents, values, errors, and every processor."""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags, TraceState, use_span

from shopfloor.telemetry import Telemetry, open_span, run_scope
from shopfloor.telemetry._lean import SPAN_KEY, LeanSpan


@pytest.fixture
def exported(telemetry: Telemetry) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(memory))  # added late: still sees every span
    return memory


def test_lean_and_sdk_spans_nest_in_one_trace(telemetry: Telemetry, exported: InMemorySpanExporter) -> None:
    with (
        run_scope("run-7"),
        open_span("outer", {"a": 1}) as outer,
        telemetry.tracer.start_as_current_span("library span"),
        open_span("inner", {}) as inner,
    ):
        pass
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert isinstance(outer, LeanSpan) and isinstance(inner, LeanSpan)
    root, library, leaf = spans["outer"], spans["library span"], spans["inner"]
    assert root.parent is None
    assert library.parent is not None and library.parent.span_id == root.context.span_id
    assert leaf.parent is not None and leaf.parent.span_id == library.context.span_id
    assert {root.context.trace_id, library.context.trace_id, leaf.context.trace_id} == {root.context.trace_id}
    # the run id reaches every span opened in the run, the library's too
    assert all(s.attributes["shopfloor.run.id"] == "run-7" for s in spans.values())
    assert root.start_time is not None and root.end_time is not None and root.end_time >= root.start_time
    assert root.resource.attributes["service.name"] == "shopfloor"


def test_values_are_plain_and_frozen_at_the_end(telemetry: Telemetry, exported: InMemorySpanExporter) -> None:
    with open_span("values", {"n": 3, "skip": None, "seq": ["x", 2]}) as current:
        assert current is not None and current.is_recording()
        current.set_attributes({"obj": object, "f": 0.5, "none": None})
        current.update_name("renamed")
    current.set_attribute("late", 1)
    current.end()  # a second end does nothing
    (span,) = exported.get_finished_spans()
    assert span.name == "renamed" and not current.is_recording()
    assert dict(span.attributes or {}) == {"n": 3, "seq": ("x", 2), "obj": str(object), "f": 0.5}


def test_an_exception_marks_the_span(telemetry: Telemetry, exported: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), open_span("failing", {}):
        raise ValueError("bad input")
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: bad input" in str(span.status.description)
    assert (span.attributes or {})["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception" and (event.attributes or {})["exception.message"] == "bad input"
    assert "Traceback" in str((event.attributes or {})["exception.stacktrace"])


def test_spans_reach_the_local_store(telemetry: Telemetry) -> None:
    with run_scope("run-8"), open_span("stored", {"k": "v"}):
        pass
    telemetry.force_flush()
    (record,) = telemetry.store.run_spans("run-8")
    assert record.name == "stored" and record.attributes["k"] == "v"


def test_a_span_context_is_what_the_api_would_build(
    telemetry: Telemetry, exported: InMemorySpanExporter
) -> None:
    """Built as a tuple, a lean span's context is the ``SpanContext`` its constructor would make: valid,
    sampled, local, its trace's state (a child: its parent's)."""
    state = TraceState([("vendor", "x")])
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    with (
        use_span(NonRecordingSpan(parent)),
        open_span("child", {}) as child,
    ):
        pass
    with open_span("root", {}) as root:
        pass
    assert child is not None and root is not None
    for current, trace_id, trace_state in (
        (child.get_span_context(), 0xABC, state),
        (root.get_span_context(), root.get_span_context().trace_id, TraceState()),
    ):
        built = SpanContext(
            trace_id, current.span_id, is_remote=False, trace_flags=TraceFlags(1), trace_state=trace_state
        )
        assert tuple(current) == tuple(built) and type(current) is SpanContext
        assert current.is_valid and current.trace_flags.sampled and not current.is_remote
    assert child.parent is not None and child.parent.span_id == 0xDEF
    assert root.parent is None


def test_a_span_ended_in_another_context_is_logged_as_detach_logs_it(
    telemetry: Telemetry, exported: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """The current context set and reset directly (``CURRENT_CONTEXT``) fails as ``attach``/``detach``
    fail: a reset from another context is logged by OpenTelemetry, not raised, and the span still ends."""
    scope = open_span("moved", {})
    opened = scope.__enter__()
    assert opened is not None and trace.get_current_span() is opened
    contextvars.copy_context().run(scope.__exit__, None, None, None)
    assert "Failed to detach context" in caplog.text
    assert [span.name for span in exported.get_finished_spans()] == ["moved"]
    context_api.detach(scope._token)  # type: ignore[arg-type]  # this context's: taken out here
    assert trace.get_current_span() is not opened


def test_the_span_key_is_the_one_opentelemetry_reads_the_current_span_by() -> None:
    """``SPAN_KEY`` is found through the public API, not imported: a span stored under it is the one
    ``get_current_span`` returns, and the key ``set_span_in_context`` writes."""
    span = NonRecordingSpan(SpanContext(trace_id=1, span_id=2, is_remote=False))
    assert trace.get_current_span(context_api.set_value(SPAN_KEY, span)) is span
    assert list(trace.set_span_in_context(span, context_api.Context())) == [SPAN_KEY]
