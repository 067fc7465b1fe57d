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

from shopfloor.errors import ConfigError
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
        schema = FINAL_SCHEMA if name == FINAL_ANSWER else tools[name].input_schema
        details = None if name == FINAL_ANSWER else await tools[name].details()
        prompt = f"Now give the arguments for {name} as JSON: {_compact(schema)}"
        if details:
            prompt = f"{details.strip()}\n\n{prompt}"
        second = await call(
            ModelRequest(
                messages=(
                    *messages,
                    Message(role="assistant", content=first.text),
                    Message(role="user", content=prompt),
                ),
                json_schema=schema,
                max_tokens=max_tokens,
            )
        )
        try:
            args = json.loads(second.text)
        except json.JSONDecodeError as exc:
            reply = Message(role="assistant", content=json.dumps({"tool": name}) + second.text)
            return Invalid(reply=reply, error=f"the arguments are not valid JSON ({exc.msg})")
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


_STRATEGIES: dict[str, type[DecisionStrategy]] = {s.name: s for s in (OneShot, TwoPhase, Native)}


def strategy_for(decision: str, *, native_supported: bool) -> DecisionStrategy:
    if decision == "auto":
        decision = "native" if native_supported else "one_shot"
    if decision == "native" and not native_supported:
        raise ConfigError(
            "decision 'native' needs a model with native tool calling; use one_shot or two_phase"
        )
    return _STRATEGIES[decision]()
