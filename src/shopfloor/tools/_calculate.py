"""The arithmetic of the built-in ``calculator`` tool and of the research router's direct answers: a
safe evaluator of ``+ - * / // % **`` and a few functions over numbers, bounded so that an expression a
model or a user wrote cannot hold a CPU (every integer operation's result size is checked before it runs).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from shopfloor.errors import ToolExecutionError

__all__ = ["MAX_EXPRESSION", "MAX_INT_BITS", "calculate"]

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
