"""The Tool ABC: what skills, workspace file tools, MCP tools and sub-agents implement.

A tool has a name, a one-line description the model sees first, JSON schemas for
its input and output, and an async ``call``. Its arguments are validated against
the input schema before it runs; a validation error goes back to the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import json
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_type_hints

import jsonschema
from pydantic import BaseModel, create_model

from shopfloor.errors import ToolArgumentsError, ToolError

if TYPE_CHECKING:
    from shopfloor.sandbox import Sandbox
    from shopfloor.tools._children import Children
    from shopfloor.workspace import WorkspaceView

__all__ = [
    "Ask",
    "AskModel",
    "Budget",
    "FunctionTool",
    "Proposal",
    "Tool",
    "ToolContext",
    "ToolKind",
    "ToolServices",
]

ToolKind = Literal["function", "extension", "datastore"]


class Ask(Protocol):
    """Asks the run's model one question whose reply must match ``schema`` (a JSON schema); returns the
    reply's text. A tool that reasons with the model (the research tool's planner, writer and judge) gets
    one from its run: the calls are traced under the tool's span and count against the run's tokens."""

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str: ...


class AskModel(Protocol):
    """Asks the model a named route resolves (a model reference, ``local:qwen2.5-coder-1.5b``) one question
    under ``schema``, as ``Ask`` asks the run's own model: traced under the tool's span, its tokens the run's
    and admitted against the same budgets. A route naming the run's model asks that one."""

    async def __call__(
        self, route: str, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str: ...


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What is left of the run's limits as a tool is called (a router fits its work to it)."""

    #: tokens the run may still spend (its ``max_tokens`` less what it spent), never below 0
    tokens_left: int
    #: seconds of wall time the run has left (its ``wall_time`` less what it ran), never below 0
    seconds_left: float
    #: seconds one tool call may take (the run's ``step_timeout``)
    step_seconds: float


@dataclass(frozen=True, kw_only=True)
class ToolServices:
    """What a run lends its tools, built by the runtime and passed down; every field may be absent."""

    #: the run's workspace view: file tools read and write it, a skill runs against a copy of it
    workspace: WorkspaceView | None = None
    #: the tenant a sandboxed call runs as (its uid is derived from the name)
    tenant: str | None = None
    #: the sandbox backend instance to run in (None: the one the settings choose)
    sandbox: Sandbox | None = None
    #: the secrets the agent's spec grants, as environment variables (NAME -> value), resolved at each
    #: call (blocking: call it in a thread) and each read audited; None where none is granted
    secrets: Callable[[], dict[str, str]] | None = None
    #: the run's audit hook for security events (``sandbox.killed``, ``tool.refused``): kind and details,
    #: recorded as the agent's (blocking: call it in a thread); None where nothing audits
    security_event: Callable[[str, dict[str, Any]], None] | None = None
    #: the run's model, for a tool that asks it questions under a schema; None outside a run's loop
    ask: Ask | None = None
    #: starts child runs of the run and waits for them (``Children``); None outside a durable run
    children: Children | None = None
    #: any model by its reference (a larger route for hard questions); None outside a run's loop
    ask_model: AskModel | None = None
    #: what is left of the run's token and time limits at this call; None outside a run's loop
    budget: Budget | None = None


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool knows about the call: who, which step, and the key that makes a retry safe."""

    run_id: str
    step: int
    call_id: str
    #: run id + step: the same for a call that is re-executed after a crash, so a
    #: tool with side effects can make the re-execution a no-op.
    idempotency_key: str
    #: the run's services (its workspace view, tenant, sandbox)
    services: ToolServices = field(default_factory=ToolServices)
    #: what ``Tool.propose`` proposed for this call (approved, where it needed approval); None: nothing
    proposal: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """What a call will do, decided before it does it (``Tool.propose``): a research plan."""

    #: JSON: shown to the approver with the call's arguments, and given to ``call`` as ``ctx.proposal``
    data: dict[str, Any]
    #: False: nothing in it needs a person (a question researched shallow has no plan): the call runs at once
    needs_approval: bool = True
    #: what the approver may change before approving: a field of ``data`` -> the JSON schema of the values
    #: it allows (``check_edit``); the others are shown as they are. Empty: approve or reject it whole
    editable: dict[str, Any] = field(default_factory=dict)


class Tool(ABC):
    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    requires_approval: bool = False
    approval_timeout: float | None = None
    #: each call first proposes what it will do (``propose``), for a person to approve before it runs
    proposes: bool = False
    #: whether a call can act outside the run (write a file, call a service, start a child run, spend
    #: money). False only for a call that computes from its arguments alone and may run again after a
    #: crash: with ``[runtime] durability = "batched"`` its step is then committed behind the run, as a
    #: model call's is, where a call with effects waits for every step before it to be durable first
    #: and holds the next step back until its own record is. True where a tool does not say.
    effects: bool = True
    kind: ClassVar[ToolKind] = "function"

    @abstractmethod
    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        """Run the tool; return a JSON-serialisable value or raise a ToolError."""

    async def call_child(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        """The part of a call that a child run does (``ToolServices.children``): a child run of the agent
        calls its tool's ``call_child`` once, with the params its parent gave it, in a durable step of
        its own; returns JSON, which the parent's ``Children.wait`` hands back. A tool that starts no
        children has none."""
        raise ToolError(f"{self.name} runs no child calls")

    async def propose(self, args: dict[str, Any], ctx: ToolContext) -> Proposal | None:
        """Where ``proposes`` is set: what this call will do (a research plan), decided in a recorded step
        of its own. One that needs approval is shown to a person, whose decision the run waits for durably
        (as for ``requires_approval``); approved, ``call`` runs with it in ``ctx.proposal``; rejected, the
        run ends (stop reason ``rejected``)."""
        return None

    def validate(self, args: Any) -> dict[str, Any]:
        """Check ``args`` against the input schema; the error names the failing field."""
        if not isinstance(args, dict):
            raise ToolArgumentsError(
                f"{self.name}: arguments must be a JSON object, got {json.dumps(args)[:100]}"
            )
        plain = self._plain_schema()
        if plain is not None and plain.admits(args):
            return args
        errors = sorted(self._validator().iter_errors(args), key=str)
        if errors:
            details = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors
            )
            raise ToolArgumentsError(f"{self.name}: invalid arguments: {details}")
        return args

    def _validator(self) -> jsonschema.Draft202012Validator:
        # Built once per schema, not once per call (it was ~2% of a durable step's CPU); a tool
        # that replaces its ``input_schema`` gets a new one.
        schema = self.input_schema
        cached: tuple[dict[str, Any], jsonschema.Draft202012Validator] | None = self.__dict__.get(
            "_schema_validator"
        )
        if cached is None or cached[0] is not schema:
            cached = (schema, jsonschema.Draft202012Validator(schema))
            self.__dict__["_schema_validator"] = cached
        return cached[1]

    def _plain_schema(self) -> _PlainSchema | None:
        # As ``_validator``: made once per schema (None: not a plain one, jsonschema decides alone).
        schema = self.input_schema
        cached: tuple[dict[str, Any], _PlainSchema | None] | None = self.__dict__.get("_plain_schema_of")
        if cached is None or cached[0] is not schema:
            cached = (schema, _PlainSchema.of(schema))
            self.__dict__["_plain_schema_of"] = cached
        return cached[1]

    async def details(self) -> str | None:
        """Longer instructions shown only once the model has chosen this tool (progressive disclosure)."""
        return None

    async def next_schema(
        self, chosen: dict[str, Any], stage: int, *, task: str = ""
    ) -> dict[str, Any] | None:
        """Staged arguments: the schema of the next arguments to ask for (``stage`` counts from 0),
        given those chosen so far and the run's task, or None when they are complete.

        The default asks for everything at once. A tool whose valid values depend on earlier
        choices (the columns of the file chosen first) narrows each stage, so a small model
        can only produce combinations that make sense. Only the two-phase strategy stages.
        """
        return self.input_schema if stage == 0 else None

    def describe(self) -> str:
        """The line the model sees before choosing (progressive disclosure)."""
        return f"{self.name}: {self.description.strip().splitlines()[0] if self.description else ''}"


#: JSON Schema types a plain schema's property may have, with the Python types that certainly match
#: each (jsonschema accepts more: ``1.0`` as an integer, a ``Decimal`` as a number; those go to it)
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}
#: keywords that only annotate (they never fail a value), besides ``type``
_ANNOTATIONS = frozenset({"title", "description", "examples", "default"})


@dataclass(frozen=True)
class _PlainSchema:
    """An object schema of named scalar properties (a function tool's ``calculator(expression: str)``):
    arguments it ``admits`` are valid without asking jsonschema, whose validator took ~60 Python calls
    a tool call (an agent iteration's most after the redaction screen). ``admits`` is never True where
    jsonschema finds an error; where it is False jsonschema decides, and words the error, as before."""

    #: property name -> the Python types that certainly match its schema
    types: dict[str, tuple[type, ...]]
    required: frozenset[str]
    #: ``additionalProperties: false``
    closed: bool

    @classmethod
    def of(cls, schema: dict[str, Any]) -> _PlainSchema | None:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        closed = schema.get("additionalProperties", True)
        if (
            schema.get("type") != "object"
            or not set(schema) <= {"type", "properties", "required", "additionalProperties", *_ANNOTATIONS}
            or not isinstance(properties, dict)
            or not (isinstance(required, list) and all(isinstance(name, str) for name in required))
            or type(closed) is not bool
        ):
            return None
        types: dict[str, tuple[type, ...]] = {}
        for name, prop in properties.items():
            if not (
                isinstance(prop, dict)
                and prop.get("type") in _PLAIN_TYPES
                and set(prop) <= {"type", *_ANNOTATIONS}
            ):
                return None
            types[name] = _PLAIN_TYPES[prop["type"]]
        return cls(types=types, required=frozenset(required), closed=not closed)

    def admits(self, args: dict[str, Any]) -> bool:
        """Each argument's type is one its property certainly accepts (exactly: a subclass goes to
        jsonschema), and the required ones are there; with ``closed``, no others."""
        types = self.types
        for name, value in args.items():
            accepted = types.get(name)
            if accepted is None:
                if self.closed:
                    return False
            elif type(value) not in accepted:
                return False
        return self.required.issubset(args)


@dataclass(frozen=True, kw_only=True)
class _Made:
    """What a function's signature gives its tool: the arguments' model and their JSON schema."""

    args_model: type[BaseModel]
    input_schema: dict[str, Any]
    takes_ctx: bool


#: ``_Made`` by function and tool name. A memo of what the signature determines, not live state: a
#: worker builds each run's tools afresh, and pydantic took ~2 ms of CPU a tool to make the same
#: model and schema again (a run of 10 steps spent more on it than on its steps' bookkeeping). Weak:
#: a function that goes away (a tool file loaded again) takes its entries with it.
_MADE: weakref.WeakKeyDictionary[Callable[..., Any], dict[str, _Made]] = weakref.WeakKeyDictionary()
_MADE_LOCK = threading.Lock()
#: results ``call`` hands back without asking ``inspect.isawaitable`` (no ``__await__``; not their subclasses)
_NEVER_AWAITABLE = frozenset({str, int, float, bool, type(None), dict, list, tuple})


def _made_for(function: Callable[..., Any], name: str) -> _Made:
    try:
        with _MADE_LOCK:
            made = _MADE.get(function, {}).get(name)
    except TypeError:  # not weakly referenceable (a partial, a builtin): made each time
        made = None
    if made is not None:
        return made
    fields: dict[str, Any] = {}
    # Resolve string annotations (``from __future__ import annotations``) with their extras.
    hints = get_type_hints(function, include_extras=True)
    parameters = inspect.signature(function).parameters
    for pname, param in parameters.items():
        if pname == "ctx":
            continue
        annotation = hints.get(pname, Any)
        default = param.default if param.default is not inspect.Parameter.empty else ...
        fields[pname] = (annotation, default)
    args_model = create_model(f"{name}_args", **fields)
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    made = _Made(args_model=args_model, input_schema=schema, takes_ctx="ctx" in parameters)
    with contextlib.suppress(TypeError), _MADE_LOCK:
        _MADE.setdefault(function, {})[name] = made
    return made


class FunctionTool(Tool):
    """A tool made from a typed Python function; its signature gives the input schema.

    A plain (synchronous) function runs in a worker thread, never on the event loop: its
    arguments come from a model, and a call that computes for minutes must not stall every
    other run of the worker or keep the step timeout from firing. A thread cannot be stopped,
    so such a function must bound its own work (as the calculator does); at the timeout the
    run goes on without waiting for it.

    ``inline``: where it says a call's arguments keep it short (well under a millisecond, as a
    calculator's short expression), the call runs on the event loop instead: the hop to a thread and
    back cost more CPU than such a call, and while the thread held the GIL the loop waited for it.
    """

    def __init__(
        self,
        function: Callable[..., Any | Awaitable[Any]],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
        approval_timeout: float | None = None,
        inline: Callable[[dict[str, Any]], bool] | None = None,
        effects: bool = True,
    ) -> None:
        self.function = function
        self.effects = effects
        #: which calls of a plain function are short enough to run on the event loop (None: none)
        self._inline = inline
        self.name = name or function.__name__
        self.description = description or inspect.getdoc(function) or self.name
        self.requires_approval = requires_approval
        self.approval_timeout = approval_timeout
        made = _made_for(function, self.name)
        self._takes_ctx = made.takes_ctx
        self._is_async = inspect.iscoroutinefunction(function)
        self._args_model = made.args_model
        self.input_schema = copy.deepcopy(made.input_schema)

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        parsed = dict(self._args_model.model_validate(args))
        if self._takes_ctx:
            parsed["ctx"] = ctx
        if self._is_async:
            return await self.function(**parsed)
        if self._inline is not None and self._inline(parsed):
            result = self.function(**parsed)
        else:
            result = await asyncio.to_thread(functools.partial(self.function, **parsed))
        if type(result) in _NEVER_AWAITABLE:  # ``inspect.isawaitable`` is 6 Python calls on a plain value
            return result
        return await result if inspect.isawaitable(result) else result
