"""A tool's arguments are checked against its input schema, the error naming the failing field."""

from __future__ import annotations

import gc
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shopfloor.errors import ToolArgumentsError
from shopfloor.tools import FunctionTool, ToolContext, calculate
from shopfloor.tools._tool import _MADE


def pick(count: int, label: str = "x") -> str:
    """Pick things."""
    return label * count


def test_arguments_are_checked_against_the_schema_the_tool_has_now() -> None:
    tool = FunctionTool(pick)
    assert tool.validate({"count": 2}) == {"count": 2}
    with pytest.raises(ToolArgumentsError, match="count: 'two' is not of type 'integer'"):
        tool.validate({"count": "two"})
    # The checker is built once per schema; a tool that replaces its schema is checked against the new one.
    tool.input_schema = {**tool.input_schema, "required": ["count", "label"]}
    with pytest.raises(ToolArgumentsError, match="'label' is a required property"):
        tool.validate({"count": 2})
    assert tool.validate({"count": 2, "label": "y"}) == {"count": 2, "label": "y"}


def test_tools_made_again_from_one_function_share_its_model_but_not_their_schemas() -> None:
    """A worker makes each run's tools afresh: what the signature gives is made once per function and
    name, and each tool still owns (and may change) its own schema."""
    first, second = FunctionTool(pick), FunctionTool(pick)
    assert first._args_model is second._args_model
    assert first.input_schema == second.input_schema
    first.input_schema["required"] = ["count", "label"]
    assert second.input_schema["required"] == ["count"]
    assert FunctionTool(pick).input_schema["required"] == ["count"]
    renamed = FunctionTool(pick, name="chooser")
    assert renamed._args_model is not first._args_model
    with pytest.raises(ToolArgumentsError, match="label: 3 is not of type 'string'"):
        renamed.validate({"count": 1, "label": 3})


def test_a_function_that_goes_away_takes_its_made_model_with_it() -> None:
    def local(n: int) -> int:
        return n

    FunctionTool(local)
    assert local in _MADE
    del local
    gc.collect()
    assert all(function.__name__ != "local" for function in _MADE)


async def test_a_plain_function_runs_in_a_thread_unless_its_call_is_short_enough_for_the_loop() -> None:
    threads: list[int] = []

    def count(text: str) -> int:
        """Count characters."""
        threads.append(threading.get_ident())
        return len(text)

    tool = FunctionTool(count, inline=lambda args: len(args["text"]) <= 3)
    ctx = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1")
    assert await tool.call({"text": "abc"}, ctx) == 3
    assert await tool.call({"text": "abcd"}, ctx) == 4
    assert await FunctionTool(count).call({"text": "ab"}, ctx) == 2
    loop_thread = threading.get_ident()
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread and threads[2] != loop_thread


# A plain schema's arguments are admitted without jsonschema: the same verdict and the same error.
class _JsonschemaOnly(FunctionTool):
    """Checked by jsonschema alone, as every tool was before plain schemas were admitted directly."""

    def _plain_schema(self) -> None:
        return None


class _Number(float):
    pass


class _Label(str):
    pass


_NAMES = st.sampled_from(["count", "label", "ratio", "flag", "extra", 1])
_VALUES = st.one_of(
    st.text(max_size=3),
    st.builds(_Label, st.text(max_size=3)),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.builds(_Number, st.floats(allow_nan=False)),
    st.decimals(allow_nan=False, places=1),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_COUNT = {"type": "object", "properties": {"count": {"type": "integer", "examples": [2]}}}
#: mostly plain schemas (the path under test), some that are not (a bound, a list, a closing schema)
_PLAIN_PROPERTY = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "boolean", "integer", "number", "null"] * 3 + ["array"])},
    optional={"title": st.just("T"), "default": st.integers(), "examples": st.just([1])},
)
_PROPERTY = st.one_of(*[_PLAIN_PROPERTY] * 7, st.just({"type": "integer", "minimum": 0}))
_PLAIN_SCHEMA = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["object"] * 7 + ["array"]),
        "properties": st.dictionaries(st.sampled_from(["count", "label", "ratio", "flag"]), _PROPERTY),
    },
    optional={
        "required": st.lists(st.sampled_from(["count", "label", "ratio", "extra"]), max_size=3),
        "additionalProperties": st.sampled_from([False, True, False, True, 0, {"type": "string"}]),
        "description": st.just("D"),
    },
)
_SCHEMA = st.one_of(
    *[_PLAIN_SCHEMA] * 7, st.just({"$schema": "https://json-schema.org/draft/2020-12/schema", **_COUNT})
)


def _verdict(tool: FunctionTool, args: Any) -> tuple[str, Any]:
    try:
        return "valid", tool.validate(args)
    except ToolArgumentsError as exc:
        return "invalid", str(exc)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_SCHEMA, args=st.dictionaries(_NAMES, _VALUES, max_size=4))
@example(schema={**_COUNT, "required": ["count", "label"]}, args={"count": 2})
@example(schema={**_COUNT, "additionalProperties": False}, args={"count": 2, "label": "x"})
@example(schema={**_COUNT, "additionalProperties": False}, args={"count": 2, 1: "x"})
@example(schema=_COUNT, args={"count": True})
@example(schema={"type": "object", "properties": {"label": {"type": "string"}}}, args={"label": False})
@example(schema={"type": "object", "properties": {"flag": {"type": "boolean"}}}, args={"flag": 1})
@example(schema={"type": "object", "properties": {"ratio": {"type": "number"}}}, args={"ratio": True})
@example(schema={"type": "object", "properties": {"label": {"type": "null"}}}, args={"label": 0})
@example(schema={"type": "object", "properties": {"label": {"type": "string"}}}, args={"label": _Label("x")})
@example(schema=_COUNT, args={"count": 2.0})
@example(schema=_COUNT, args={"count": 2.5})
@example(schema={"type": "object", "properties": {"ratio": {"type": "number"}}}, args={"ratio": Decimal(1)})
def test_a_plain_schema_admits_what_jsonschema_admits_and_refuses_in_its_words(
    schema: dict[str, Any], args: dict[Any, Any]
) -> None:
    admitted, checked = FunctionTool(pick), _JsonschemaOnly(pick)
    admitted.input_schema = checked.input_schema = schema
    assert _verdict(admitted, args) == _verdict(checked, args)


def test_a_function_tools_schema_of_scalars_is_plain_and_one_of_anything_else_is_not() -> None:
    """The calculator's schema (a string, required, nothing else) is admitted without jsonschema;
    a list, a union or a bound on a property is not plain."""

    def typed(items: list[int], maybe: int | None = None) -> int:
        return 0

    assert FunctionTool(calculate)._plain_schema() is not None
    assert FunctionTool(pick)._plain_schema() is not None
    assert FunctionTool(typed)._plain_schema() is None
    bounded = FunctionTool(pick)
    bounded.input_schema = {
        **bounded.input_schema,
        "properties": {"count": {"type": "integer", "minimum": 0}},
    }
    assert bounded._plain_schema() is None
