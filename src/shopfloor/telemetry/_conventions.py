"""Span names and attribute keys: the OpenTelemetry GenAI semantic conventions and ours.

Other packages name their spans and attributes with these constants, so the
metrics (which read them back) and the trace view agree with what is emitted.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "AGENT_NAME",
    "AGENT_VERSION",
    "CACHED_INPUT_TOKENS",
    "COMPONENT",
    "CONTENT_KEYS",
    "CONVERSATION_ID",
    "ERROR_TYPE",
    "INPUT_MESSAGES",
    "INPUT_TOKENS",
    "OPERATION_NAME",
    "OUTPUT_MESSAGES",
    "OUTPUT_TOKENS",
    "PROCESS_CPU",
    "PROCESS_MEMORY",
    "PROCESS_PID",
    "PROVIDER_NAME",
    "REQUEST_MODEL",
    "RESPONSE_FINISH_REASONS",
    "RESPONSE_MODEL",
    "RUN_ID",
    "RUN_OUTPUT",
    "RUN_STATUS",
    "RUN_STOP_REASON",
    "RUN_TASK",
    "SANDBOX_CPU",
    "SANDBOX_MEMORY",
    "STEP",
    "STEP_NAME",
    "STEP_OUTPUT",
    "STORE_CONTENT_KEYS",
    "TIME_TO_FIRST_CHUNK",
    "TOKENS_PER_SECOND",
    "TOOL_ARGUMENTS",
    "TOOL_CALL_ID",
    "TOOL_NAME",
    "TOOL_RESULT",
    "TOOL_TYPE",
    "Component",
]

#: What a span measures, for per-component latency, fault and timeout metrics.
Component = Literal[
    "run", "plan", "model", "tool", "sandbox", "workspace", "db", "vector", "retrieval", "mcp"
]

# --- GenAI semantic conventions -------------------------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
#: of the input tokens, those read from the provider's cache (a reused prompt prefix), not processed again
CACHED_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_VERSION: Final = "gen_ai.agent.version"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_TYPE: Final = "gen_ai.tool.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
TOOL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
TOOL_RESULT: Final = "gen_ai.tool.call.result"
ERROR_TYPE: Final = "error.type"
PROCESS_PID: Final = "process.pid"

# --- Shopfloor -------------------------------------------------------------------------------
COMPONENT: Final = "shopfloor.component"
RUN_ID: Final = "shopfloor.run.id"
RUN_STATUS: Final = "shopfloor.run.status"
RUN_STOP_REASON: Final = "shopfloor.run.stop_reason"
RUN_TASK: Final = "shopfloor.run.task"
RUN_OUTPUT: Final = "shopfloor.run.output"
STEP: Final = "shopfloor.step"
#: the durable step name (``model:3``, ``tool:2:search``), the key replay matches on
STEP_NAME: Final = "shopfloor.step.name"
#: the step's recorded JSON output, so a run can be replayed from the trace store
STEP_OUTPUT: Final = "shopfloor.step.output"
TOKENS_PER_SECOND: Final = "shopfloor.model.tokens_per_second"
#: set by the sandbox on its ``sandbox.exec`` spans
SANDBOX_CPU: Final = "shopfloor.sandbox.cpu_seconds"
SANDBOX_MEMORY: Final = "shopfloor.sandbox.peak_memory_bytes"
#: the worker process's cumulative CPU seconds and peak RSS, set on ``invoke_agent`` spans
PROCESS_CPU: Final = "shopfloor.process.cpu_seconds"
PROCESS_MEMORY: Final = "shopfloor.process.peak_memory_bytes"

#: Recorded in the local store by default (``telemetry.store_content``): what replay needs.
STORE_CONTENT_KEYS: Final = frozenset({STEP_OUTPUT, RUN_TASK, RUN_OUTPUT})
#: Every content attribute; exported beyond the local store only with ``telemetry.record_content``.
CONTENT_KEYS: Final = STORE_CONTENT_KEYS | {INPUT_MESSAGES, OUTPUT_MESSAGES, TOOL_ARGUMENTS, TOOL_RESULT}
