"""Turn pydantic validation errors into ``file:line:col: what was expected`` problems.

Pydantic reports locations as paths through the data (``("limits", "max_steps")``);
the YAML document maps each path back to where it was written. Messages name the
key, what is expected and what was found, and suggest the closest key for a typo.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import defaultdict
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from shopfloor.spec._yaml import DataPath, Problem, YamlDocument, format_path

__all__ = ["describe_value", "validation_problems"]

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def describe_value(value: Any) -> str:
    """How a value reads to a person who wrote YAML."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.date):
        return f"a date ({value.isoformat()})"
    return type(value).__name__


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], path: DataPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (list indexes are skipped)."""
    model: type[BaseModel] | None = root
    for part in path:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _submodel(model.model_fields[part].annotation)
    return model


def _field_at(root: type[BaseModel], path: DataPath) -> FieldInfo | None:
    names = [i for i, part in enumerate(path) if isinstance(part, str)]
    if not names:
        return None
    last = names[-1]
    model = _model_at(root, path[:last])
    name = path[last]
    if model is None or not isinstance(name, str):
        return None
    return model.model_fields.get(name)


def _where(path: DataPath) -> str:
    return format_path(path) if path else "the agent spec"


def _split_labels(doc: YamlDocument, loc: tuple[str | int, ...], kind: str) -> tuple[DataPath, int | None]:
    """Drop union-branch labels (``list[str]``) from a pydantic loc; return the data path and
    the depth at which the first label was found (None when there was none)."""
    path: list[str | int] = []
    node: Any = doc.data
    union_at: int | None = None
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and (part in node or (last and kind == "missing"))
        ):
            path.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            if union_at is None:
                union_at = len(path)
    return tuple(path), union_at


def _value_at(doc: YamlDocument, path: DataPath) -> Any:
    node: Any = doc.data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '')}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"a number {sign} {ctx.get(key)}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


class _Reporter:
    def __init__(self, doc: YamlDocument, root: type[BaseModel]) -> None:
        self.doc = doc
        self.root = root

    def unknown_key(self, path: DataPath) -> Problem:
        parent, key = path[:-1], str(path[-1])
        model = _model_at(self.root, parent)
        allowed = sorted(model.model_fields) if model is not None else []
        message = f"unknown key {key!r} in {_where(parent)}"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            message += f": did you mean {close[0]!r}?"
        if allowed:
            message += f" Allowed keys: {', '.join(allowed)}"
        return self.doc.location(path, at_key=True), message

    def missing(self, path: DataPath) -> Problem:
        parent, key = path[:-1], str(path[-1])
        field = _field_at(self.root, path)
        hint = f" ({field.description})" if field is not None and field.description else ""
        return self.doc.location(parent), f"missing required key {key!r}{hint} in {_where(parent)}"

    def wrong(self, path: DataPath, expected: str, kind: str) -> Problem:
        value = _value_at(self.doc, path)
        field = _field_at(self.root, path)
        label = _where(path)
        if field is not None and field.description:
            label += f" ({field.description})"
        if kind == "value_error":
            message = f"{label}: {expected}"
        else:
            message = f"{label}: expected {expected}, found {describe_value(value)}"
        position = self.doc.positions.get(path)
        raw = position.raw if position is not None else None
        if expected == "a string" and value is not None and raw is not None:
            message += f"; write it in quotes to make it a string: {raw!r}"
        elif expected == "a list" and value is not None and raw is not None:
            message += f"; for a single item write a list: [{raw}]"
        return self.doc.location(path), message


def validation_problems(exc: ValidationError, doc: YamlDocument, root: type[BaseModel]) -> list[Problem]:
    """Every error of ``exc`` as a located problem; alternatives of one union become one problem."""
    reporter = _Reporter(doc, root)
    problems: list[Problem] = []
    unions: dict[DataPath, list[tuple[DataPath, ErrorDetails]]] = defaultdict(list)
    for error in exc.errors():
        kind = error["type"]
        path, union_at = _split_labels(doc, tuple(error["loc"]), kind)
        if union_at is not None:
            unions[path[:union_at]].append((path, error))
        elif kind == "extra_forbidden":
            problems.append(reporter.unknown_key(path))
        elif kind == "missing":
            problems.append(reporter.missing(path))
        else:
            problems.append(reporter.wrong(path, _expected(error), kind))
    for base, branch_errors in unions.items():
        deepest = max(len(path) for path, _ in branch_errors)
        if deepest > len(base):
            # One alternative matched the shape of the value; its inner errors are the useful ones.
            for path, error in branch_errors:
                if len(path) == deepest:
                    problems.append(reporter.wrong(path, _expected(error), error["type"]))
            continue
        options = list(dict.fromkeys(_expected(error) for _, error in branch_errors))
        problems.append(reporter.wrong(base, " or ".join(options), "union"))
    return problems
