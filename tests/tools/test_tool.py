"""A tool's arguments are checked against its input schema, the error naming the failing field."""

from __future__ import annotations

import gc
import threading

import pytest

from shopfloor.errors import ToolArgumentsError
from shopfloor.tools import FunctionTool, ToolContext
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
