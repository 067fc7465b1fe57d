"""BFCL's score of an answer: the answer's Python calls decoded (without evaluating anything), then
checked by BFCL's own AST checker against the item's functions and possible answers.

BFCL's decoder ``eval``s arithmetic and lambdas in a model's answer; this one never does (a model's
output is hostile input): constants, negative numbers, lists, tuples, dicts, names and nested calls
are read, anything else makes the answer undecodable, which BFCL scores as a miss too.
"""

from __future__ import annotations

import ast
import json
from types import ModuleType
from typing import Any

from shopfloor.evals._bfcl import CHECKER_MODEL, BfclPackage
from shopfloor.evals._scorer import Case, Metric, ScoreOptions, Scorer, ScorerEnv

__all__ = ["BfclScorer", "decode_calls"]

#: answers longer than this are not decoded (bounded time and memory per item)
MAX_CALLS_CHARS = 20_000
#: how deep values may nest in a decoded call
MAX_DEPTH = 32


def _call(node: ast.Call, depth: int) -> dict[str, dict[str, Any]]:
    parts: list[str] = []
    func: ast.expr = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise ValueError(f"not a function name: {ast.unparse(node.func)[:80]}")
    parts.append(func.id)
    # Positional arguments are dropped, as BFCL's decoder does: its checker then names the missing
    # parameters (the call is wrong either way, but the error type stays BFCL's).
    args = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError("** arguments are not function-call syntax")
        args[keyword.arg] = _value(keyword.value, depth + 1)
    return {".".join(reversed(parts)): args}


def _value(node: ast.expr, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError("values nested too deep")
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand, depth + 1)
        if isinstance(inner, bool) or not isinstance(inner, int | float | complex):
            raise ValueError(f"a sign before a non-number: {ast.unparse(node)[:80]}")
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.List):
        return [_value(v, depth + 1) for v in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(v, depth + 1) for v in node.elts)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ValueError("** in a dict")
        return {
            _value(k, depth + 1): _value(v, depth + 1)
            for k, v in zip(node.keys, node.values, strict=True)
            if k
        }
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return ast.unparse(node) if not node.keywords else _call(node, depth + 1)
    raise ValueError(f"unsupported expression {type(node).__name__}: {ast.unparse(node)[:80]}")


def decode_calls(answer: str) -> list[dict[str, dict[str, Any]]]:
    """``[f(a=1), m.g(b=[2])]`` (brackets optional, code fences stripped) as BFCL's decoded form
    ``[{"f": {"a": 1}}, {"m.g": {"b": [2]}}]``; raises ``ValueError`` naming what cannot be read."""
    if len(answer) > MAX_CALLS_CHARS:
        raise ValueError(f"the answer is over {MAX_CALLS_CHARS} characters")
    text = answer.strip("`\n ")
    if text.startswith("python\n"):
        text = text.removeprefix("python\n").strip()
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text = text + "]"
    try:
        tree = ast.parse(text.strip().strip("'"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not Python call syntax: {exc}") from None
    body = tree.body
    elements = [body] if isinstance(body, ast.Call) else getattr(body, "elts", None)
    if elements is None:
        raise ValueError(f"expected a list of calls, found {type(body).__name__}")
    calls = []
    for element in elements:
        if not isinstance(element, ast.Call):
            raise ValueError(f"not a call: {ast.unparse(element)[:80]}")
        calls.append(_call(element, 0))
    return calls


def _plain(decoded: list[dict[str, dict[str, Any]]]) -> Any:
    """The decoded calls as JSON data (tuples as lists), or their text where keys are not JSON's."""
    try:
        return json.loads(json.dumps(decoded))
    except (TypeError, ValueError):
        return repr(decoded)[:MAX_CALLS_CHARS]


class BfclScorer(Scorer):
    """1 when BFCL's AST checker accepts the answer's calls for the item's category, else 0 with BFCL's
    error and error type in the metric's detail."""

    Options = ScoreOptions

    def __init__(self, type_name: str, options: ScoreOptions, env: ScorerEnv) -> None:
        super().__init__(type_name, options, env)
        self._package = BfclPackage.locate(env.settings)
        self._checker: ModuleType | None = None

    def checker(self) -> ModuleType:
        if self._checker is None:
            self._checker = self._package.checker()
        return self._checker

    async def score(self, case: Case) -> list[Metric]:
        meta = case.item.metadata
        category, functions = meta.get("category"), meta.get("functions")
        if not isinstance(category, str) or not isinstance(functions, list):
            raise ValueError(
                f"item {case.item.id} is not a BFCL item (no category and functions in its metadata)"
            )
        possible = self.expected(case)
        if not isinstance(possible, list):
            raise ValueError(f"item {case.item.id}: BFCL's possible answer should be a list")
        try:
            decoded = decode_calls(case.output or "")
        except ValueError as exc:
            return [self.metric(0.0, False, error=[str(exc)], error_type="ast_decoder:decoder_failed")]
        checker = self.checker()
        try:
            result = checker.ast_checker(
                functions, decoded, possible, checker.Language.PYTHON, category, CHECKER_MODEL
            )
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # calls of a shape BFCL's checker does not expect (a dict key that is a list...): the
            # answer is wrong, not the evaluation broken
            return [
                self.metric(
                    0.0,
                    False,
                    decoded=_plain(decoded),
                    error=[f"{type(exc).__name__}: {exc}"],
                    error_type="ast_checker:raised",
                )
            ]
        valid = bool(result.get("valid"))
        detail: dict[str, Any] = {"decoded": _plain(decoded)}
        if not valid:
            detail |= {"error": result.get("error"), "error_type": result.get("error_type")}
        return [self.metric(1.0 if valid else 0.0, valid, **detail)]
