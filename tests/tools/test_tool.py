"""A tool's arguments are checked against its input schema, the error naming the failing field."""

from __future__ import annotations

import pytest

from shopfloor.errors import ToolArgumentsError
from shopfloor.tools import FunctionTool


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
