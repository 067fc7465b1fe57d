"""Span shapes of agent runs: names, parent/child structure, GenAI attributes, error status."""

from __future__ import annotations

import asyncio
import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tel_helpers import ADD, by_name, call, final, run_spans, scripted

from shopfloor.agent import AgentLoop
from shopfloor.config import Settings
from shopfloor.errors import ToolExecutionError
from shopfloor.models import FunctionModel, ModelRequest, TestModel
from shopfloor.spec import Limits
from shopfloor.telemetry import (
    CONTENT_KEYS,
    MAX_CONTENT,
    REDACTED,
    Telemetry,
    configure_telemetry,
    current_run_id,
    run_scope,
    span,
    tracer,
)
from shopfloor.tools import FunctionTool


async def test_run_has_agent_plan_chat_and_tool_spans(telemetry: Telemetry) -> None:
    loop = AgentLoop(model=scripted(call("add", a=2, b=3), final("5")), tools=[ADD], name="adder")
    result = await loop.run("add 2 and 3", run_id="run-a")
    assert result.output == "5"
    spans = run_spans(telemetry, "run-a")
    assert [s.name for s in spans] == [
        "invoke_agent adder",
        "plan",
        "chat scripted",
        "execute_tool add",
        "plan",
        "chat scripted",
    ]
    root = spans[0]
    assert root.parent_span_id is None
    assert {s.trace_id for s in spans} == {root.trace_id}
    ids = {s.span_id: s for s in spans}
    for plan in by_name(spans, "plan"):
        assert plan.parent_span_id == root.span_id
    for chat in by_name(spans, "chat"):
        assert ids[chat.parent_span_id or ""].name == "plan"
        assert chat.kind == "client"
    assert by_name(spans, "execute_tool")[0].parent_span_id == root.span_id
    assert all(s.run_id == "run-a" for s in spans)

    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.agent.name"] == "adder"
    assert attrs["gen_ai.conversation.id"] == "run-a"
    assert attrs["shopfloor.run.status"] == "completed"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert root.status == "unset"

    chat = by_name(spans, "chat")[0].attributes
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "function"
    assert chat["gen_ai.request.model"] == "scripted"
    assert chat["gen_ai.response.model"] == "scripted"
    assert chat["gen_ai.response.finish_reasons"] == ["stop"]
    assert chat["gen_ai.usage.input_tokens"] > 0
    assert chat["gen_ai.usage.output_tokens"] > 0
    assert chat["gen_ai.response.time_to_first_chunk"] >= 0
    assert chat["shopfloor.step.name"] == "model:1"

    tool = by_name(spans, "execute_tool")[0].attributes
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert tool["gen_ai.tool.name"] == "add"
    assert tool["gen_ai.tool.call.id"] == "call_1"
    assert tool["gen_ai.tool.type"] == "function"
    assert tool["shopfloor.step.name"] == "tool:1:add"
    assert json.loads(tool["shopfloor.step.output"])["output"] == 5


async def test_test_model_run_and_span_durations_nest(telemetry: Telemetry) -> None:
    await AgentLoop(model=TestModel(), tools=[ADD], name="t").run("x", run_id="run-t")
    spans = run_spans(telemetry, "run-t")
    root = spans[0]
    assert root.name == "invoke_agent t"
    for child in spans[1:]:
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns
    assert by_name(spans, "chat test")


async def test_tool_failure_marks_the_tool_span_as_error(telemetry: Telemetry) -> None:
    def broken(x: int) -> int:
        raise ToolExecutionError("disk on fire")

    loop = AgentLoop(model=scripted(call("broken", x=1), final("gave up")), tools=[FunctionTool(broken)])
    await loop.run("t", run_id="run-f")
    tool = by_name(run_spans(telemetry, "run-f"), "execute_tool")[0]
    assert tool.status == "error"
    assert tool.status_message == "disk on fire"
    assert tool.attributes["error.type"] == "execution"


async def test_tool_timeout_is_an_error_of_type_timeout(telemetry: Telemetry) -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    loop = AgentLoop(
        model=scripted(call("slow", x=1), final("late")),
        tools=[FunctionTool(slow)],
        limits=Limits(step_timeout=0.05),
    )
    await loop.run("t", run_id="run-tt")
    tool = by_name(run_spans(telemetry, "run-tt"), "execute_tool")[0]
    assert tool.status == "error"
    assert tool.attributes["error.type"] == "timeout"


async def test_model_step_timeout_fails_chat_plan_and_run(telemetry: Telemetry) -> None:
    async def stuck(request: ModelRequest) -> str:
        await asyncio.sleep(5)
        return "never"

    loop = AgentLoop(model=FunctionModel(stuck), tools=[ADD], limits=Limits(step_timeout=0.05), name="s")
    result = await loop.run("t", run_id="run-st")
    assert result.stop_reason == "step_timeout"
    spans = run_spans(telemetry, "run-st")
    chat, plan, root = by_name(spans, "chat")[0], by_name(spans, "plan")[0], spans[0]
    assert (chat.status, chat.attributes["error.type"]) == ("error", "timeout")
    assert plan.status == "error"
    assert (root.status, root.attributes["error.type"]) == ("error", "timeout")
    assert root.attributes["shopfloor.run.stop_reason"] == "step_timeout"


async def test_content_is_stored_locally_but_stripped_from_exporters(settings: Settings) -> None:
    exported = InMemorySpanExporter()
    with configure_telemetry(settings, extra_exporters=[exported]) as telemetry:
        loop = AgentLoop(model=scripted(call("add", a=1, b=1), final("2")), tools=[ADD])
        await loop.run("task with password=hunter2", run_id="run-c")
        stored = run_spans(telemetry, "run-c")
    assert stored[0].attributes["shopfloor.run.task"] == f"task with password={REDACTED}"
    assert "shopfloor.step.output" in by_name(stored, "chat")[0].attributes
    assert "gen_ai.input.messages" not in by_name(stored, "chat")[0].attributes  # full content is opt-in
    assert len(exported.get_finished_spans()) == len(stored)
    for sent in exported.get_finished_spans():
        assert not CONTENT_KEYS.intersection(sent.attributes or {})


async def test_record_content_sends_redacted_messages_everywhere(settings: Settings) -> None:
    exported = InMemorySpanExporter()
    with configure_telemetry(settings, extra_exporters=[exported], record_content=True):
        loop = AgentLoop(model=scripted(call("add", a=1, b=1), final("2")), tools=[ADD])
        await loop.run("use key sk-abcdefghijklmnopqrstuvwxyz", run_id="run-rc")
    finished = exported.get_finished_spans()
    sent = {s.name: dict(s.attributes or {}) for s in finished}
    first_chat = next(dict(s.attributes or {}) for s in finished if s.name == "chat scripted")
    messages = json.loads(first_chat["gen_ai.input.messages"])
    assert messages[-1] == {"role": "user", "content": f"use key {REDACTED}"}
    assert json.loads(sent["execute_tool add"]["gen_ai.tool.call.arguments"]) == {"a": 1, "b": 1}
    assert sent["execute_tool add"]["gen_ai.tool.call.result"] == "2"
    assert "sk-abc" not in json.dumps(sent)


async def test_store_content_off_keeps_no_content(settings: Settings) -> None:
    with configure_telemetry(settings, store_content=False) as telemetry:
        await AgentLoop(model=scripted(call("add", a=1, b=1), final("2")), tools=[ADD]).run("t", run_id="r")
        stored = run_spans(telemetry, "r")
    assert stored
    assert not any(CONTENT_KEYS.intersection(s.attributes) for s in stored)


async def test_without_telemetry_the_loop_runs_and_spans_are_noops() -> None:
    with span("sandbox.exec", component="sandbox") as current:
        assert not current.is_recording()
    result = await AgentLoop(model=scripted(call("add", a=1, b=1), final("2")), tools=[ADD]).run(
        "t", run_id="r"
    )
    assert result.output == "2"


async def test_span_helper_carries_run_id_component_and_error_type(telemetry: Telemetry) -> None:
    async def in_run() -> None:
        with span("sandbox.exec", component="sandbox", attributes={"shopfloor.sandbox.cpu_seconds": 0.5}):
            assert current_run_id() == "run-h"
        try:
            with span("workspace.commit", component="workspace"):
                raise TimeoutError("slow disk")
        except TimeoutError:
            pass

    with run_scope("run-h"), span("outer", component="run", attributes={"gen_ai.conversation.id": "run-h"}):
        await asyncio.create_task(in_run())  # a task started in the run carries its id too
        with tracer().start_as_current_span("GET /search"):  # another library's span, made with the API
            pass
    assert current_run_id() is None
    spans = {s.name: s for s in run_spans(telemetry, "run-h")}
    assert spans["sandbox.exec"].attributes["shopfloor.run.id"] == "run-h"
    assert spans["sandbox.exec"].parent_span_id == spans["outer"].span_id
    commit = spans["workspace.commit"]
    assert (commit.status, commit.attributes["error.type"]) == ("error", "timeout")
    assert commit.events[0]["name"] == "exception"
    assert spans["GET /search"].run_id == "run-h"


async def test_full_content_is_capped_but_step_outputs_are_not(settings: Settings) -> None:
    exported = InMemorySpanExporter()
    big = "x" * (MAX_CONTENT + 500)
    with configure_telemetry(settings, extra_exporters=[exported], record_content=True) as telemetry:
        model = FunctionModel(outputs=[final(big)], name="scripted", context_length=100_000)
        await AgentLoop(model=model, tools=[ADD]).run(big, run_id="run-big")
        stored = run_spans(telemetry, "run-big")
    chat = next(dict(s.attributes or {}) for s in exported.get_finished_spans() if s.name == "chat scripted")
    assert chat["gen_ai.input.messages"].endswith("more characters]")
    assert len(chat["gen_ai.input.messages"]) < MAX_CONTENT + 100
    assert stored[0].attributes["shopfloor.run.task"] == big  # what replay needs is kept whole
    assert stored[0].attributes["shopfloor.run.output"] == big
