"""How the model chooses its next action, one strategy per protocol.

Small local models fail the free-form multi-turn tool protocol but choose well
when every reply is constrained by a JSON schema built from the granted tools:
``OneShot`` asks for ``{"tool": ..., "args": {...}}`` under an ``anyOf`` with one
branch per tool; ``TwoPhase`` first asks for the tool from an enum, then for its
arguments under that tool's own schema (better for the smallest models);
``Native`` uses the server's tool calling for large remote models.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from shopfloor.errors import ConfigError, ToolError
from shopfloor.models import Message, ModelRequest, ModelResponse, ToolCall, ToolDef
from shopfloor.tools import Tool

__all__ = [
    "FINAL_ANSWER",
    "Action",
    "DecisionStrategy",
    "Invalid",
    "Native",
    "OneShot",
    "TwoPhase",
    "strategy_for",
]

FINAL_ANSWER = "final_answer"
_MAX_STAGES = 8
FINAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "description": "the answer to the task, with its figures"}},
    "required": ["answer"],
    "additionalProperties": False,
}

CallModel = Callable[[ModelRequest], Awaitable[ModelResponse]]


@dataclass(frozen=True, kw_only=True)
class Action:
    tool: str
    arguments: Any
    call_id: str
    #: the model's reply as it goes into the history
    reply: Message


@dataclass(frozen=True, kw_only=True)
class Invalid:
    reply: Message
    error: str


def _compact(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema.get("properties", schema), separators=(",", ":"))


class DecisionStrategy(ABC):
    name: ClassVar[str]

    def system_prompt(self, instructions: str, tools: Mapping[str, Tool]) -> str:
        lines = [
            instructions.strip()
            or "You are a careful assistant that completes the task with the tools given."
        ]
        lines.append("\nTools:")
        lines += [
            f"- {tool.describe()}\n  arguments: {_compact(tool.input_schema)}" for tool in tools.values()
        ]
        lines.append(f"- {FINAL_ANSWER}: give the final answer once the tool results contain it")
        lines.append(
            'Reply with one JSON object: {"tool": NAME, "args": {...}}. '
            "Use tool results, never guess numbers. "
            f'When done reply {{"tool": "{FINAL_ANSWER}", "args": {{"answer": "..."}}}}.'
        )
        return "\n".join(lines)

    @abstractmethod
    async def decide(
        self,
        messages: tuple[Message, ...],
        tools: Mapping[str, Tool],
        call: CallModel,
        *,
        step: int,
        max_tokens: int,
    ) -> Action | Invalid:
        """Ask the model (one or more calls through ``call``) for the next action."""

    def observation(self, action: Action, content: str) -> Message:
        return Message(role="user", content=f"Result of {action.tool}: {content}")

    @staticmethod
    def _parse(text: str, step: int) -> tuple[str, Any] | str:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"the reply is not valid JSON ({exc.msg} at character {exc.pos})"
        if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
            return 'the reply must be a JSON object with a string "tool" and an "args" object'
        return data["tool"], data.get("args", {})


class OneShot(DecisionStrategy):
    name = "one_shot"

    @staticmethod
    def schema(tools: Mapping[str, Tool]) -> dict[str, Any]:
        branches = [
            {
                "type": "object",
                "properties": {"tool": {"const": name}, "args": schema},
                "required": ["tool", "args"],
                "additionalProperties": False,
            }
            for name, schema in [(n, t.input_schema) for n, t in tools.items()]
            + [(FINAL_ANSWER, FINAL_SCHEMA)]
        ]
        return {"anyOf": branches}

    async def decide(
        self,
        messages: tuple[Message, ...],
        tools: Mapping[str, Tool],
        call: CallModel,
        *,
        step: int,
        max_tokens: int,
    ) -> Action | Invalid:
        response = await call(
            ModelRequest(messages=messages, json_schema=self.schema(tools), max_tokens=max_tokens)
        )
        reply = Message(role="assistant", content=response.text)
        parsed = self._parse(response.text, step)
        if isinstance(parsed, str):
            return Invalid(reply=reply, error=parsed)
        return Action(tool=parsed[0], arguments=parsed[1], call_id=f"call_{step}", reply=reply)


class TwoPhase(DecisionStrategy):
    name = "two_phase"

    async def decide(
        self,
        messages: tuple[Message, ...],
        tools: Mapping[str, Tool],
        call: CallModel,
        *,
        step: int,
        max_tokens: int,
    ) -> Action | Invalid:
        names = [*tools, FINAL_ANSWER]
        choice_schema = {
            "type": "object",
            "properties": {"tool": {"enum": names}},
            "required": ["tool"],
            "additionalProperties": False,
        }
        first = await call(ModelRequest(messages=messages, json_schema=choice_schema, max_tokens=64))
        parsed = self._parse(first.text, step)
        if isinstance(parsed, str) or parsed[0] not in names:
            error = parsed if isinstance(parsed, str) else f"unknown tool {parsed[0]!r}"
            return Invalid(reply=Message(role="assistant", content=first.text), error=error)
        name = parsed[0]
        chosen = Message(role="assistant", content=first.text)
        stages: Tool | _FinalStages
        if name == FINAL_ANSWER:
            stages, details = _FinalStages(), None
        else:
            stages, details = tools[name], await tools[name].details()
        args: dict[str, Any] = {}
        history = (*messages, chosen)
        stage_no = 0
        while (schema := await stages.next_schema(args, stage_no)) is not None:
            if stage_no >= _MAX_STAGES:
                raise ToolError(f"{name}: more than {_MAX_STAGES} argument stages; a tool bug")
            stage_no += 1
            prompt = f"Now give the arguments for {name} as JSON: {_compact(schema)}"
            if details:
                prompt, details = f"{details.strip()}\n\n{prompt}", None
            history = (*history, Message(role="user", content=prompt))
            second = await call(ModelRequest(messages=history, json_schema=schema, max_tokens=max_tokens))
            try:
                stage = json.loads(second.text)
            except json.JSONDecodeError as exc:
                reply = Message(
                    role="assistant", content=json.dumps({"tool": name, "args": args}) + second.text
                )
                return Invalid(reply=reply, error=f"the arguments are not valid JSON ({exc.msg})")
            if not isinstance(stage, dict):
                reply = Message(role="assistant", content=json.dumps({"tool": name, "args": args}))
                return Invalid(reply=reply, error="the arguments must be a JSON object")
            args.update(stage)
            history = (*history, Message(role="assistant", content=second.text))
        reply = Message(role="assistant", content=json.dumps({"tool": name, "args": args}))
        return Action(tool=name, arguments=args, call_id=f"call_{step}", reply=reply)


class Native(DecisionStrategy):
    name = "native"

    def system_prompt(self, instructions: str, tools: Mapping[str, Tool]) -> str:
        return (
            instructions.strip()
            or "You are a careful assistant that completes the task with the tools given."
        )

    async def decide(
        self,
        messages: tuple[Message, ...],
        tools: Mapping[str, Tool],
        call: CallModel,
        *,
        step: int,
        max_tokens: int,
    ) -> Action | Invalid:
        defs = tuple(
            ToolDef(name=n, description=t.description, parameters=t.input_schema) for n, t in tools.items()
        )
        response = await call(ModelRequest(messages=messages, tools=defs, max_tokens=max_tokens))
        if not response.tool_calls:
            reply = Message(role="assistant", content=response.text)
            return Action(
                tool=FINAL_ANSWER, arguments={"answer": response.text}, call_id=f"call_{step}", reply=reply
            )
        # One call per turn keeps every step durable on its own; later calls are asked for again.
        first: ToolCall = response.tool_calls[0]
        reply = Message(role="assistant", content=response.text, tool_calls=(first,))
        try:
            args = json.loads(first.arguments or "{}")
        except json.JSONDecodeError as exc:
            return Invalid(reply=reply, error=f"the arguments of {first.name} are not valid JSON ({exc.msg})")
        return Action(tool=first.name, arguments=args, call_id=first.id, reply=reply)

    def observation(self, action: Action, content: str) -> Message:
        return Message(role="tool", content=content, tool_call_id=action.call_id)


class _FinalStages:
    async def next_schema(self, chosen: dict[str, Any], stage: int) -> dict[str, Any] | None:
        return FINAL_SCHEMA if stage == 0 else None


_STRATEGIES: dict[str, type[DecisionStrategy]] = {s.name: s for s in (OneShot, TwoPhase, Native)}


def strategy_for(decision: str, *, native_supported: bool) -> DecisionStrategy:
    if decision == "auto":
        decision = "native" if native_supported else "one_shot"
    if decision == "native" and not native_supported:
        raise ConfigError(
            "decision 'native' needs a model with native tool calling; use one_shot or two_phase"
        )
    return _STRATEGIES[decision]()
