"""A spec's tool entry made into tools: a function, a Tool, or a module attribute holding a list of tools
(a benchmark's whole tool set under one entry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.agent._builtin import load_tool
from shopfloor.errors import ConfigError
from shopfloor.spec import ToolSpec

TOOLS = '''
from shopfloor.tools import FunctionTool


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def neg(a: int) -> int:
    """Negate a number."""
    return -a


several = [FunctionTool(add, name="add"), FunctionTool(neg, name="neg")]
empty = []
numbers = [1, 2]
'''


def test_a_list_of_tools_gives_each_and_anything_else_is_named(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS)
    made = load_tool(ToolSpec(name="math", source="tools.py:several"), tmp_path)
    assert [tool.name for tool in made] == ["add", "neg"]
    (single,) = load_tool(ToolSpec(name="plus", source="tools.py:add"), tmp_path)
    assert single.name == "plus"
    for attr in ("empty", "numbers"):
        with pytest.raises(ConfigError, match="neither a Tool, a list of tools nor a function"):
            load_tool(ToolSpec(name="bad", source=f"tools.py:{attr}"), tmp_path)


def test_effects_a_function_has_unless_its_entry_says_none_and_a_tool_declares_its_own(
    tmp_path: Path,
) -> None:
    """``effects`` (what ``durability = "batched"`` may commit behind the run): a function source has
    them unless its entry says ``effects: false``; the built-in calculator has none unless its entry
    says otherwise; a Tool object declares its own, and an entry contradicting it is refused."""
    (tmp_path / "tools.py").write_text(TOOLS)
    (plain,) = load_tool(ToolSpec(name="plus", source="tools.py:add"), tmp_path)
    (pure,) = load_tool(ToolSpec(name="plus", source="tools.py:add", effects=False), tmp_path)
    assert (plain.effects, pure.effects) == (True, False)
    (calculator,) = load_tool(ToolSpec(name="calc", source="builtin:calculator"), tmp_path)
    (declared,) = load_tool(ToolSpec(name="calc", source="builtin:calculator", effects=True), tmp_path)
    assert (calculator.effects, declared.effects) == (False, True)
    assert [
        t.effects for t in load_tool(ToolSpec(name="m", source="tools.py:several", effects=True), tmp_path)
    ]
    with pytest.raises(ConfigError, match=r"tool 'math': effects: false is for a function source"):
        load_tool(ToolSpec(name="math", source="tools.py:several", effects=False), tmp_path)
