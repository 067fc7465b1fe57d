"""A run's record read back from the local trace store, where content was stored.

The model and tool spans carry their durable step name and (with
``telemetry.store_content``, the default) the step's JSON output; a model call
that failed carries its error instead. The run's task, answer and spec path are
on its ``invoke_agent`` span. Redacted secrets stay redacted, so a run whose
steps contained secrets may not replay the same from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shopfloor.models import ModelResponse, ToolCall, Usage
from shopfloor.runtime import RecordedStep
from shopfloor.telemetry import (
    ERROR_TYPE,
    INPUT_TOKENS,
    OPERATION_NAME,
    OUTPUT_TOKENS,
    PROVIDER_NAME,
    RESPONSE_FINISH_REASONS,
    RESPONSE_MODEL,
    RUN_OUTPUT,
    RUN_STATUS,
    RUN_TASK,
    STEP_NAME,
    STEP_OUTPUT,
    TIME_TO_FIRST_CHUNK,
    SpanRecord,
)

__all__ = ["RunInfo", "recorded_from_spans", "run_info_from_spans"]


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    run_id: str
    agent: str | None
    task: str | None
    spec_path: str | None
    output: str | None
    status: str | None
    workspace_commit: str | None = None
    #: the digest of the agent spec (and what it references) the run was made with
    digest: str | None = None
    #: the model reference the run was started with, where it overrode the spec's
    model: str | None = None


def recorded_from_spans(spans: Sequence[SpanRecord]) -> list[RecordedStep]:
    """The run's steps in the order they ran; raises ValueError where a step's output was not stored."""
    steps = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        name = span.attributes.get(STEP_NAME)
        if name is None:
            continue
        if span.status == "error" and STEP_OUTPUT not in span.attributes:
            kind = str(span.attributes.get(ERROR_TYPE, "ModelError"))
            raised = {
                "type": "TimeoutError" if kind == "timeout" else kind,
                "message": span.status_message or "",
            }
            steps.append(RecordedStep(name=str(name), raised=raised))
            continue
        if STEP_OUTPUT not in span.attributes:
            raise ValueError(
                f"step {name} has no stored output: the run was traced without telemetry.store_content"
            )
        output = json.loads(span.attributes[STEP_OUTPUT])
        if span.attributes.get(OPERATION_NAME) == "chat":
            output = _model_output(span, output)
        steps.append(RecordedStep(name=str(name), output=output))
    return steps


def _model_output(span: SpanRecord, stored: dict[str, Any]) -> dict[str, Any]:
    """The model step's recorded JSON: the stored reply with the model and usage from the span."""
    attrs = span.attributes
    response = ModelResponse(
        text=stored["content"],
        model=str(attrs.get(RESPONSE_MODEL, "")),
        provider=str(attrs.get(PROVIDER_NAME, "")),
        finish_reason=str((attrs.get(RESPONSE_FINISH_REASONS) or ["stop"])[0]),
        usage=Usage(
            input_tokens=int(attrs.get(INPUT_TOKENS, 0)),
            output_tokens=int(attrs.get(OUTPUT_TOKENS, 0)),
            time_to_first_token=attrs.get(TIME_TO_FIRST_CHUNK),
            duration=span.duration,
        ),
        tool_calls=tuple(ToolCall(**call) for call in stored.get("tool_calls", [])),
    )
    return response.to_dict()


def run_info_from_spans(run_id: str, spans: Sequence[SpanRecord]) -> RunInfo | None:
    roots = [s for s in spans if s.name.startswith("invoke_agent") and s.run_id == run_id]
    if not roots:
        return None
    root = roots[-1]
    attrs = root.attributes
    return RunInfo(
        run_id=run_id,
        agent=root.agent,
        task=attrs.get(RUN_TASK),
        spec_path=attrs.get("shopfloor.agent.spec"),
        output=attrs.get(RUN_OUTPUT),
        status=attrs.get(RUN_STATUS),
        digest=attrs.get("shopfloor.agent.digest"),
    )
