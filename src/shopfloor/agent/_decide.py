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
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from shopfloor.errors import ConfigError, ToolError
from shopfloor.models import Message, ModelRequest, ModelResponse, ToolCall, ToolDef
from shopfloor.tools import Tool

__all__ = [
    "FINAL_ANSWER",
    "Action",
    "DecideContext",
    "DecisionStrategy",
    "Invalid",
    "Native",
    "OneShot",
    "TwoPhase",
    "named_choices",
    "only_option",
    "rank_choices",
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
#: Runs a piece of work the decision needs (a staged schema) as a recorded step.
Record = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class DecideContext:
    step: int
    max_tokens: int
    task: str
    call: CallModel
    record: Record
    #: the ``answer`` text of the last tool result, where the tool gave one (a result summary)
    last_answer: str | None = None


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


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def rank_choices(schema: dict[str, Any], task: str) -> dict[str, Any]:
    """The schema with each property's enum reordered: options the task mentions first.

    Small models lean towards the first option they are shown. An option scores by the words
    it shares with the task, plus the task words listed for it in the schema's ``x-keywords``
    (``{"sum": ["total"]}``); ties keep the tool's order.
    """
    words = _words(task)
    lowered = task.lower()
    props = schema.get("properties")
    if not isinstance(props, dict):
        return schema

    def score(option: Any, keywords: dict[str, list[str]]) -> int:
        hits = len(_words(str(option)) & words)
        return hits + sum(1 for k in keywords.get(str(option), []) if k.lower() in lowered)

    ranked: dict[str, Any] = {}
    for name, prop in props.items():
        if isinstance(prop, dict) and isinstance(prop.get("enum"), list):
            keywords = prop.get("x-keywords") or {}
            order = sorted(prop["enum"], key=lambda o: -score(o, keywords))
            prop = {k: v for k, v in prop.items() if k != "x-keywords"} | {"enum": order}
        ranked[name] = prop
    return {**schema, "properties": ranked}


def _closed_properties(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The properties of an object schema that requires each of them and allows no other; None for
    any other schema (one without properties too)."""
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, dict) or not props:
        return None
    if set(schema.get("required", ())) != set(props) or schema.get("additionalProperties", True):
        return None
    return props


def only_option(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one object a stage's schema allows, where each of its properties is required and an enum
    (or const) of a single value; otherwise None."""
    props = _closed_properties(schema)
    if props is None:
        return None
    forced: dict[str, Any] = {}
    for name, prop in props.items():
        if isinstance(prop, dict) and isinstance(prop.get("enum"), list) and len(prop["enum"]) == 1:
            forced[name] = prop["enum"][0]
        elif isinstance(prop, dict) and "const" in prop:
            forced[name] = prop["const"]
        else:
            return None
    return forced


def named_choices(schema: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The properties of a closed stage schema whose value the task names in so many words: for each
    enum property, its one text option that the task contains verbatim (``seattle-weather.csv``,
    ``net_generation``: case aside, not inside a longer word or name). A property with no such option,
    or more than one, is left out: "the most rain in Seattle" names no file, and the model is asked;
    so is a value the task names for two properties."""
    props = _closed_properties(schema)
    if props is None:
        return {}
    lowered, named = task.lower(), {}
    for name, prop in props.items():
        if not isinstance(prop, dict) or not isinstance(prop.get("enum"), list):
            continue
        options = [
            option
            for option in prop["enum"]
            if isinstance(option, str)
            and option.strip()
            and re.search(rf"(?<![\w.-]){re.escape(option.lower())}(?![\w-]|\.\w)", lowered)
        ]
        if len(options) == 1:
            named[name] = options[0]
    # One named value for two properties (x and y of a chart) says which value, not which property.
    values = list(named.values())
    return {name: value for name, value in named.items() if values.count(value) == 1}


def _narrowed(schema: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """A closed stage schema whose ``chosen`` properties allow only their chosen value. They stay in
    the reply, in their place: the model reads them (forced by the grammar, never sampled) before it
    chooses the rest, as it would have written them itself."""
    props = {k: ({**v, "enum": [chosen[k]]} if k in chosen else v) for k, v in schema["properties"].items()}
    return {**schema, "properties": props}


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
        self, messages: tuple[Message, ...], tools: Mapping[str, Tool], ctx: DecideContext
    ) -> Action | Invalid:
        """Ask the model (one or more calls through ``ctx.call``) for the next action."""

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
        self, messages: tuple[Message, ...], tools: Mapping[str, Tool], ctx: DecideContext
    ) -> Action | Invalid:
        step = ctx.step
        response = await ctx.call(
            ModelRequest(messages=messages, json_schema=self.schema(tools), max_tokens=ctx.max_tokens)
        )
        reply = Message(role="assistant", content=response.text)
        parsed = self._parse(response.text, step)
        if isinstance(parsed, str):
            return Invalid(reply=reply, error=parsed)
        return Action(tool=parsed[0], arguments=parsed[1], call_id=f"call_{step}", reply=reply)


class TwoPhase(DecisionStrategy):
    """The tool first (an enum), then its arguments, stage by stage.

    Each question ends with a short reminder of the task (small models weigh the last
    message most), and the choice of tool with the last result's summary, so a model
    that has its answer stops instead of calling the tool again. The schema of each
    argument stage is a recorded step: it may read the workspace (a file's columns),
    and a replay must see the same schema without running anything. The argument stages
    read the chosen tool's instructions at the end of the system prompt (the same first
    tokens every run, which a model can keep processed) and each extends the one before;
    stage 0's description (asked before anything is chosen) joins them. A property whose task names
    exactly one of its options verbatim is chosen without the model; a stage left with nothing to ask,
    or with one valid option, makes no model call and stays out of the history.
    """

    name = "two_phase"

    def system_prompt(self, instructions: str, tools: Mapping[str, Tool]) -> str:
        lines = [
            instructions.strip()
            or "You are a careful assistant that completes the task with the tools given."
        ]
        lines.append("\nTools:")
        lines += [f"- {tool.describe()}" for tool in tools.values()]
        lines.append(f"- {FINAL_ANSWER}: give the final answer once the tool results contain it")
        lines.append("You first choose a tool, then its arguments. Use tool results, never guess numbers.")
        return "\n".join(lines)

    @staticmethod
    def _reminder(ctx: DecideContext) -> str:
        text = f"Task: {ctx.task}"
        if ctx.last_answer:
            text += f"\nLast result: {ctx.last_answer}\nIf this answers the task, choose {FINAL_ANSWER}."
        return text + "\nWhich tool next?"

    async def decide(
        self, messages: tuple[Message, ...], tools: Mapping[str, Tool], ctx: DecideContext
    ) -> Action | Invalid:
        # With a result summary in hand the answer is likely ready: offer final_answer first.
        names = [FINAL_ANSWER, *tools] if ctx.last_answer else [*tools, FINAL_ANSWER]
        choice_schema = {
            "type": "object",
            "properties": {"tool": {"enum": names}},
            "required": ["tool"],
            "additionalProperties": False,
        }
        question = Message(role="user", content=self._reminder(ctx))
        first = await ctx.call(
            ModelRequest(
                messages=(*messages, question), json_schema=choice_schema, max_tokens=64, cache_prefix=1
            )
        )
        parsed = self._parse(first.text, ctx.step)
        if isinstance(parsed, str) or parsed[0] not in names:
            error = parsed if isinstance(parsed, str) else f"unknown tool {parsed[0]!r}"
            return Invalid(reply=Message(role="assistant", content=first.text), error=error)
        name = parsed[0]
        stages: Tool | _FinalStages
        if name == FINAL_ANSWER:
            stages, details = _FinalStages(ctx.last_answer), None
        else:
            stages, details = tools[name], await tools[name].details()
        args: dict[str, Any] = {}
        history = (*messages, Message(role="assistant", content=first.text))
        joined = bool(details) and history[0].role == "system"
        if joined and details:
            # The tool's instructions join the system prompt: instructions, tools and the tool's own
            # instructions are then the same first tokens in every run, whose processed state the
            # model can keep (``cache_prefix``) instead of reading them again after each task.
            system = Message(role="system", content=f"{history[0].content}\n\n{details.strip()}")
            history, details = (system, *history[1:]), None
        for stage_no in range(_MAX_STAGES + 1):
            schema = await ctx.record(
                f"schema:{ctx.step}:{stage_no}",
                partial(stages.next_schema, dict(args), stage_no, task=ctx.task),
            )
            if schema is None:
                break
            if stage_no == _MAX_STAGES:
                raise ToolError(f"{name}: more than {_MAX_STAGES} argument stages; a tool bug")
            ask = schema.get("description") or f"Now give the arguments for {name}."
            if joined and stage_no == 0 and schema.get("description"):
                # Stage 0 asks before anything is chosen, so its description (the operations and what
                # each does) reads the same in every run: it joins the kept prefix too.
                system = Message(role="system", content=f"{history[0].content}\n\n{ask}")
                history = (system, *history[1:])
                ask = "Choose as described at the end of the instructions."
            schema = rank_choices(schema, ctx.task)
            # What the task names in so many words is chosen without the model; a stage left with one
            # valid reply (the grammar would write it token by token) makes no call, and stays out of
            # the history (later prompts are the shorter for it).
            named = named_choices(schema, ctx.task)
            if named:
                schema = _narrowed(schema, named)
            forced = only_option(schema)
            if forced is not None:
                args.update(forced)
                continue
            prompt = f"{ask}\nTask: {ctx.task}\nReply with JSON: {_compact(schema)}"
            if details:
                prompt, details = f"{details.strip()}\n\n{prompt}", None
            history = (*history, Message(role="user", content=prompt))
            second = await ctx.call(
                ModelRequest(messages=history, json_schema=schema, max_tokens=ctx.max_tokens, cache_prefix=1)
            )
            text = second.text
            try:
                stage = json.loads(text)
            except json.JSONDecodeError as exc:
                reply = Message(role="assistant", content=json.dumps({"tool": name, "args": args}) + text)
                return Invalid(reply=reply, error=f"the arguments are not valid JSON ({exc.msg})")
            if not isinstance(stage, dict):
                reply = Message(role="assistant", content=json.dumps({"tool": name, "args": args}))
                return Invalid(reply=reply, error="the arguments must be a JSON object")
            args.update(stage)
            args.update(named)  # the grammar wrote them; a model not held to it may not have
            history = (*history, Message(role="assistant", content=text))
        reply = Message(role="assistant", content=json.dumps({"tool": name, "args": args}))
        return Action(tool=name, arguments=args, call_id=f"call_{ctx.step}", reply=reply)


class Native(DecisionStrategy):
    name = "native"

    def system_prompt(self, instructions: str, tools: Mapping[str, Tool]) -> str:
        return (
            instructions.strip()
            or "You are a careful assistant that completes the task with the tools given."
        )

    async def decide(
        self, messages: tuple[Message, ...], tools: Mapping[str, Tool], ctx: DecideContext
    ) -> Action | Invalid:
        step = ctx.step
        defs = tuple(
            ToolDef(name=n, description=t.description, parameters=t.input_schema) for n, t in tools.items()
        )
        response = await ctx.call(ModelRequest(messages=messages, tools=defs, max_tokens=ctx.max_tokens))
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
    """The final answer's one stage; it shows the last result so the answer quotes its figures."""

    def __init__(self, last_answer: str | None) -> None:
        self.last_answer = last_answer

    async def next_schema(
        self, chosen: dict[str, Any], stage: int, *, task: str = ""
    ) -> dict[str, Any] | None:
        if stage > 0:
            return None
        ask = "Give the final answer to the task, with its figures."
        if self.last_answer:
            ask += f" The last result says: {self.last_answer}"
        return {**FINAL_SCHEMA, "description": ask}


_STRATEGIES: dict[str, type[DecisionStrategy]] = {s.name: s for s in (OneShot, TwoPhase, Native)}


def strategy_for(decision: str, *, native_supported: bool) -> DecisionStrategy:
    if decision == "auto":
        decision = "native" if native_supported else "one_shot"
    if decision == "native" and not native_supported:
        raise ConfigError(
            "decision 'native' needs a model with native tool calling; use one_shot or two_phase"
        )
    return _STRATEGIES[decision]()
