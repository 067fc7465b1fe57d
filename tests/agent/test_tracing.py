"""The agent loop's span helpers as blocks: what they open, what an exception leaves on them, and
what the current span is after them (``agent/_tracing.py``)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, StatusCode

from shopfloor.agent._tracing import chat_span, plan_span, tool_span
from shopfloor.config import Settings
from shopfloor.models import FunctionModel, Message, ModelRequest
from shopfloor.telemetry import Telemetry, configure_telemetry
from shopfloor.tools import FunctionTool


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


MODEL = FunctionModel(lambda request: "ok")
REQUEST = ModelRequest(messages=(Message(role="user", content="what is 1+1?"),))
TOOL = FunctionTool(add)


def _telemetry(settings: Settings, **options: bool) -> tuple[Telemetry, InMemorySpanExporter]:
    telemetry = configure_telemetry(settings, **options)
    memory = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(memory))
    return telemetry, memory


def test_without_telemetry_the_helpers_open_nothing() -> None:
    with plan_span(run_id="r", step=1, attempt=1, strategy="s") as plan:
        assert plan is None
    with chat_span(run_id="r", model=MODEL, step_name="model:1", request=REQUEST) as chat:
        assert chat.span is None
    with tool_span(run_id="r", tool=TOOL, call_id="c", step=1, step_name="t", arguments={"a": 1}) as tool:
        assert tool.span is None
        assert tool.outcome({"output": 2}) == {"output": 2}


def test_nested_blocks_parent_record_and_restore_the_current_span(settings: Settings) -> None:
    telemetry, memory = _telemetry(settings, record_content=True)
    try:
        with plan_span(run_id="r", step=1, attempt=1, strategy="s") as plan:
            assert plan is not None and trace.get_current_span() is plan
            with chat_span(run_id="r", model=MODEL, step_name="model:1", request=REQUEST) as chat:
                assert chat.span is not None and trace.get_current_span() is chat.span
            assert trace.get_current_span() is plan
        with tool_span(run_id="r", tool=TOOL, call_id="c", step=1, step_name="t", arguments={"a": 1}):
            pass
        assert trace.get_current_span() is INVALID_SPAN
    finally:
        telemetry.shutdown()
    spans = {s.name.split()[0]: s for s in memory.get_finished_spans()}
    chat_done, plan_done, tool_done = spans["chat"], spans["plan"], spans["execute_tool"]
    assert chat_done.parent is not None and chat_done.parent.span_id == plan_done.context.span_id
    assert tool_done.parent is None
    assert "what is 1+1?" in str((chat_done.attributes or {})["gen_ai.input.messages"])
    assert (tool_done.attributes or {})["gen_ai.tool.call.arguments"] == '{"a":1}'


@pytest.mark.parametrize("helper", ["chat", "tool"])
def test_an_exception_in_the_block_ends_the_span_as_an_error(settings: Settings, helper: str) -> None:
    telemetry, memory = _telemetry(settings)
    block = (
        chat_span(run_id="r", model=MODEL, step_name="model:1", request=REQUEST)
        if helper == "chat"
        else tool_span(run_id="r", tool=TOOL, call_id="c", step=1, step_name="t", arguments={})
    )
    try:
        with pytest.raises(TimeoutError), block:
            raise TimeoutError("slow")
        assert trace.get_current_span() is INVALID_SPAN
    finally:
        telemetry.shutdown()
    (done,) = memory.get_finished_spans()
    assert done.end_time is not None and done.status.status_code is StatusCode.ERROR
    assert (done.attributes or {})["error.type"] == "timeout"


def test_arguments_that_cannot_be_recorded_end_the_span_they_failed_on(settings: Settings) -> None:
    telemetry, memory = _telemetry(settings, record_content=True)
    circular: dict[str, object] = {}
    circular["self"] = circular
    try:
        with (
            pytest.raises(ValueError, match="Circular"),
            tool_span(run_id="r", tool=TOOL, call_id="c", step=1, step_name="t", arguments=circular),
        ):
            pass
        assert trace.get_current_span() is INVALID_SPAN
    finally:
        telemetry.shutdown()
    (done,) = memory.get_finished_spans()
    assert done.end_time is not None and (done.attributes or {})["error.type"] == "ValueError"
