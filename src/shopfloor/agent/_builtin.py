"""Built-in tools an agent spec can grant as ``builtin:NAME``, and how a spec's tool
sources (``builtin:NAME``, ``FILE.py:ATTR``, ``module:attr``) become Tool objects.

``builtin_tools()`` is a fresh registry of the built-ins; the composition root holds one
(other packages may add to it) and passes it to ``load_tool``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError, ToolExecutionError
from shopfloor.spec import ToolSpec
from shopfloor.tools import FunctionTool, Tool, ToolServices

__all__ = ["BuiltinFactory", "builtin_tools", "calculate", "import_source", "load_tool"]

#: Makes the tools of a ``builtin:NAME`` entry; ``services`` are the run's (the workspace view...).
BuiltinFactory = Callable[[ToolSpec, ToolServices], Tool | list[Tool]]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}


#: Largest integer, in bits, the calculator computes (about 3,000 decimal digits): arguments come
#: from a model, and one ``**`` or ``*`` of big integers can hold a CPU for minutes where no
#: timeout can interrupt it. Each operation's result size is estimated and refused *before* it runs.
MAX_INT_BITS = 10_000
#: Longest expression, in characters (deeply nested ones would exhaust the parser's recursion).
MAX_EXPRESSION = 2_000
#: Longest expression computed on the event loop, in characters: even with every operation at the
#: integer limit it takes well under a millisecond (a longer one, up to ~5 ms at MAX_EXPRESSION, runs in
#: a thread, as any plain function tool's call does).
INLINE_EXPRESSION = 100


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse an integer operation whose result would exceed ``MAX_INT_BITS`` (floats overflow cheaply)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if isinstance(op, ast.Pow):
        estimate = _bits(left) * right if right > 0 and abs(left) > 1 else 0
    elif isinstance(op, ast.Mult):
        estimate = _bits(left) + _bits(right)
    else:
        estimate = max(_bits(left), _bits(right)) + 1
    if estimate > MAX_INT_BITS:
        raise ToolExecutionError(
            f"result too large: {type(op).__name__.lower()} would give an integer of about {estimate} bits "
            f"(limit {MAX_INT_BITS} bits, about {MAX_INT_BITS * 3 // 10} digits)"
        )


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        if _bits(node.value) > MAX_INT_BITS:
            raise ToolExecutionError(f"number too large (limit {MAX_INT_BITS} bits)")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ToolExecutionError("exponent too large (limit 1000)")
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        return _FUNCS[node.func.id](*[_eval(arg) for arg in node.args])
    raise ToolExecutionError(f"unsupported expression element: {ast.dump(node)[:60]}")


def calculate(expression: Annotated[str, Field(examples=["17*23"])]) -> float | int:
    """Evaluate an arithmetic expression, e.g. "17*23" or "sqrt(2)/3". Supports + - * / // % ** and
    sqrt, abs, round, min, max, log, exp."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolExecutionError(
            f"expression too long: {len(expression)} characters (limit {MAX_EXPRESSION})"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolExecutionError(f"not an arithmetic expression: {expression!r} ({exc.msg})") from exc
    except RecursionError:
        raise ToolExecutionError("expression nested too deeply") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError as exc:
        raise ToolExecutionError("division by zero") from exc
    except OverflowError as exc:
        raise ToolExecutionError(f"result out of range: {exc}") from exc
    except RecursionError:
        raise ToolExecutionError("expression nested too deeply") from None
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


def _calculator(spec: ToolSpec, services: ToolServices) -> Tool:
    return FunctionTool(
        calculate,
        name=spec.name,
        description=spec.description or (calculate.__doc__ or ""),
        requires_approval=spec.requires_approval,
        approval_timeout=spec.approval_timeout,
        inline=_short_expression,
    )


def _short_expression(args: dict[str, Any]) -> bool:
    return len(args["expression"]) <= INLINE_EXPRESSION


def _workspace_files(spec: ToolSpec, services: ToolServices) -> list[Tool]:
    """read_file, write_file, edit_file, list_files, grep_files over the run's workspace view."""
    from shopfloor.workspace import workspace_tools

    view = services.workspace
    if view is None:
        raise ConfigError(
            f"tool {spec.name!r}: builtin:workspace needs the run's workspace; run the agent with "
            "`shopfloor run`, which opens it"
        )
    return workspace_tools(view)


def builtin_tools() -> Registry[BuiltinFactory]:
    """The ``builtin:NAME`` tools: ``calculator`` and ``workspace`` (the file tools)."""
    return Registry("built-in tool", {"calculator": _calculator, "workspace": _workspace_files})


def import_source(source: str, base_dir: Path) -> Any:
    """The attribute ``FILE.py:NAME`` (relative to ``base_dir``) or ``MODULE:NAME`` names."""
    target, _, attr = source.rpartition(":")
    if target.endswith(".py"):
        path = (base_dir / target).resolve()
        if not path.is_file():
            raise ConfigError(f"tool source {source!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(f"shopfloor_agent_tools_{abs(hash(path))}", path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"tool source {source!r}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, attr):
        raise ConfigError(f"tool source {source!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)


def load_tool(
    spec: ToolSpec,
    base_dir: Path,
    services: ToolServices | None = None,
    builtins: Registry[BuiltinFactory] | None = None,
) -> list[Tool]:
    """Make the tools that a spec's tool entry names (a built-in or a list of tools may give several);
    ``builtin:NAME`` comes from ``builtins`` (``builtin_tools()`` by default)."""
    kind, _, rest = spec.source.partition(":")
    if kind == "builtin":
        builtins = builtins if builtins is not None else builtin_tools()
        if rest not in builtins:
            raise ConfigError(
                f"tool {spec.name!r}: no built-in tool {rest!r}; "
                f"built-ins: {', '.join(sorted(builtins.names()))}"
            )
        made = builtins.get(rest)(spec, services or ToolServices())
        return made if isinstance(made, list) else [made]
    if not rest:
        raise ConfigError(
            f"tool {spec.name!r}: source {spec.source!r} must be builtin:NAME, FILE.py:ATTR or module:attr"
        )
    target = import_source(spec.source, base_dir)
    if isinstance(target, Tool):
        return [target]
    # a list of tools gives each of them (a benchmark's whole tool set under one entry)
    if isinstance(target, list | tuple) and target and all(isinstance(t, Tool) for t in target):
        return list(target)
    if callable(target):
        tool = FunctionTool(
            target,
            name=spec.name,
            description=spec.description,
            requires_approval=spec.requires_approval,
            approval_timeout=spec.approval_timeout,
        )
        return [tool]
    raise ConfigError(f"tool {spec.name!r}: {spec.source} is neither a Tool, a list of tools nor a function")
