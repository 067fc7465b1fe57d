"""The agent loop's spans, after the OpenTelemetry GenAI semantic conventions.

``invoke_agent {agent}`` wraps a run; under it one ``plan`` span per decision
(with its ``chat {model}`` calls) and one ``execute_tool {tool}`` span per tool
call. Model and tool spans open inside the durable step, so they stand for real
executions: a step whose recorded output is reused on recovery or replay makes
no span. Without configured telemetry each helper costs one lookup.

The per-step helpers return context-manager objects (``open_span``'s, ``ChatTrace``, ``ToolTrace``)
rather than generator-based ones: a step opens two or three, and each generator layer cost
about as much as the span it wrapped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any, Self

from opentelemetry.trace import Span, SpanKind

from shopfloor.agent._records import RunResult
from shopfloor.models import Model, ModelRequest, ModelResponse
from shopfloor.telemetry import (
    AGENT_NAME,
    CACHED_INPUT_TOKENS,
    COMPONENT,
    CONVERSATION_ID,
    INPUT_MESSAGES,
    INPUT_TOKENS,
    OPERATION_NAME,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROCESS_CPU,
    PROCESS_MEMORY,
    PROCESS_PID,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_FINISH_REASONS,
    RESPONSE_MODEL,
    RUN_ID,
    RUN_OUTPUT,
    RUN_STATUS,
    RUN_STOP_REASON,
    RUN_TASK,
    STEP,
    STEP_NAME,
    STEP_OUTPUT,
    TIME_TO_FIRST_CHUNK,
    TOKENS_PER_SECOND,
    TOOL_ARGUMENTS,
    TOOL_CALL_ID,
    TOOL_NAME,
    TOOL_RESULT,
    TOOL_TYPE,
    content_enabled,
    current_telemetry,
    mark_error,
    open_span,
    process_usage,
    record_content,
    run_scope,
)
from shopfloor.tools import Tool

__all__ = ["chat_span", "plan_span", "run_span", "tool_span"]

_TIMEOUT_STOPS = frozenset({"step_timeout", "wall_time"})
#: what a span helper returns where telemetry is off (entering it gives None; it holds no state)
_OFF: AbstractContextManager[None] = nullcontext()


class RunTrace:
    def __init__(self, span: Span | None) -> None:
        self.span = span

    def finish(self, result: RunResult) -> None:
        span = self.span
        if span is None:
            return
        usage = process_usage()
        span.set_attributes(
            {
                RUN_STATUS: result.status,
                RUN_STOP_REASON: result.stop_reason,
                INPUT_TOKENS: result.usage.input_tokens,
                OUTPUT_TOKENS: result.usage.output_tokens,
                PROCESS_CPU: usage[0],
                PROCESS_MEMORY: usage[1],
            }
        )
        if result.output is not None:
            record_content(span, RUN_OUTPUT, result.output, full=False)
        if result.status == "failed":
            kind = "timeout" if result.stop_reason in _TIMEOUT_STOPS else result.stop_reason
            mark_error(span, kind, result.error)


@contextmanager
def run_span(
    *, agent: str, run_id: str, model: Model, task: str, attributes: Mapping[str, Any]
) -> Iterator[RunTrace]:
    with run_scope(run_id):
        active = current_telemetry()
        if active is None:
            yield RunTrace(None)
            return
        attrs = {
            OPERATION_NAME: "invoke_agent",
            AGENT_NAME: agent,
            CONVERSATION_ID: run_id,
            RUN_ID: run_id,
            COMPONENT: "run",
            REQUEST_MODEL: model.name or model.provider,
            PROVIDER_NAME: model.provider,
            PROCESS_PID: os.getpid(),
            **attributes,
        }
        with open_span(f"invoke_agent {agent}", attrs) as span:
            if span is not None:
                record_content(span, RUN_TASK, task, full=False)
            yield RunTrace(span)


def plan_span(*, run_id: str, step: int, attempt: int, strategy: str) -> AbstractContextManager[Span | None]:
    if current_telemetry() is None:
        return _OFF
    attrs = {
        RUN_ID: run_id,
        COMPONENT: "plan",
        STEP: step,
        "shopfloor.plan.attempt": attempt,
        "shopfloor.plan.strategy": strategy,
    }
    return open_span("plan", attrs)


class _SpanBlock:
    """The block of one step's span (None where telemetry is off), open while in the block; what a
    kind of step records on the span as it opens is its ``_opened``."""

    def __init__(self, scope: AbstractContextManager[Span | None] | None) -> None:
        self._scope = scope
        self.span: Span | None = None

    def __enter__(self) -> Self:
        scope = self._scope
        if scope is not None:
            span = self.span = scope.__enter__()
            if span is not None:
                try:
                    self._opened(span)
                except BaseException as exc:  # the span is ended, and the error raised
                    scope.__exit__(type(exc), exc, exc.__traceback__)
                    raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc, tb)

    def _opened(self, span: Span) -> None:
        """Record on ``span``, just opened, what the step starts with."""


class ChatTrace(_SpanBlock):
    """The block of one model call."""

    def __init__(
        self, scope: AbstractContextManager[Span | None] | None, request: ModelRequest | None = None
    ) -> None:
        super().__init__(scope)
        self._request = request

    def _opened(self, span: Span) -> None:
        if self._request is not None and content_enabled():
            # the list is the whole history: only where content is kept
            messages = [{"role": m.role, "content": m.content} for m in self._request.messages]
            record_content(span, INPUT_MESSAGES, messages)

    def response(self, response: ModelResponse) -> dict[str, Any]:
        """Put the response on the span; return it as the step's JSON output."""
        output = response.to_dict()
        span = self.span
        if span is None:
            return output
        usage = response.usage
        attrs: dict[str, Any] = {
            RESPONSE_MODEL: response.model,
            RESPONSE_FINISH_REASONS: (response.finish_reason,),
            INPUT_TOKENS: usage.input_tokens,
            OUTPUT_TOKENS: usage.output_tokens,
            CACHED_INPUT_TOKENS: usage.cached_input_tokens,
        }
        if usage.time_to_first_token is not None:
            attrs[TIME_TO_FIRST_CHUNK] = usage.time_to_first_token
        tps = usage.tokens_per_second
        if tps is not None:
            attrs[TOKENS_PER_SECOND] = tps
        span.set_attributes(attrs)
        message: dict[str, Any] = {"role": "assistant", "content": response.text}
        if response.tool_calls:
            message["tool_calls"] = [vars(call) for call in response.tool_calls]
        # The rest of the step's output (model, usage) is on the span already: replay rebuilds it.
        record_content(span, STEP_OUTPUT, {k: v for k, v in message.items() if k != "role"}, full=False)
        record_content(span, OUTPUT_MESSAGES, [message])
        return output


def chat_span(*, run_id: str, model: Model, step_name: str, request: ModelRequest) -> ChatTrace:
    if current_telemetry() is None:
        return ChatTrace(None)
    attrs = {
        OPERATION_NAME: "chat",
        PROVIDER_NAME: model.provider,
        REQUEST_MODEL: model.name or model.provider,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
        RUN_ID: run_id,
        COMPONENT: "model",
        STEP_NAME: step_name,
    }
    return ChatTrace(open_span(f"chat {model.name or model.provider}", attrs, kind=SpanKind.CLIENT), request)


class ToolTrace(_SpanBlock):
    """The block of one tool call."""

    def __init__(self, scope: AbstractContextManager[Span | None] | None, arguments: Any = None) -> None:
        super().__init__(scope)
        self._arguments = arguments

    def _opened(self, span: Span) -> None:
        record_content(span, TOOL_ARGUMENTS, self._arguments)

    def outcome(self, outcome: dict[str, Any], text: str | None = None) -> dict[str, Any]:
        """Put the tool's outcome on the span (an error status for a failure); return it. ``text``: the
        outcome's redacted JSON (``redact_json``), where the step has it."""
        span = self.span
        if span is None:
            return outcome
        if outcome.get("error") is not None:
            mark_error(span, str(outcome.get("error_kind") or "execution"), str(outcome["error"]))
        else:
            record_content(span, TOOL_RESULT, outcome.get("output"))
        record_content(span, STEP_OUTPUT, outcome, full=False, text=text)
        return outcome


def tool_span(
    *, run_id: str, tool: Tool, call_id: str, step: int, step_name: str, arguments: Any
) -> ToolTrace:
    if current_telemetry() is None:
        return ToolTrace(None)
    attrs = {
        OPERATION_NAME: "execute_tool",
        TOOL_NAME: tool.name,
        TOOL_CALL_ID: call_id,
        TOOL_TYPE: tool.kind,
        RUN_ID: run_id,
        COMPONENT: "tool",
        STEP: step,
        STEP_NAME: step_name,
    }
    return ToolTrace(open_span(f"execute_tool {tool.name}", attrs), arguments)
