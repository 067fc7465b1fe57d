"""The waterfall view of a run: the tree, durations, tokens, cost, failures in red."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from tel_helpers import call, final, run_spans, scripted

from shopfloor.agent import AgentLoop
from shopfloor.errors import ToolExecutionError
from shopfloor.telemetry import Telemetry, span_tree, tree_json, waterfall
from shopfloor.tools import FunctionTool


async def test_waterfall_shows_the_tree_tokens_cost_and_failures(telemetry: Telemetry) -> None:
    def broken(x: int) -> int:
        raise ToolExecutionError("disk on fire")

    loop = AgentLoop(
        model=scripted(call("broken", x=1), final("gave up")), tools=[FunctionTool(broken)], name="w"
    )
    await loop.run("t", run_id="run-w")
    spans = run_spans(telemetry, "run-w")

    [root] = span_tree(spans)
    assert root.span.name == "invoke_agent w"
    assert [c.span.name for c in root.children] == ["plan", "execute_tool broken", "plan"]
    assert [c.span.name for c in root.children[0].children] == ["chat scripted"]

    table = waterfall(spans, prices={"function:scripted": (1000.0, 1000.0)}, bar_width=20)
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "└─ chat scripted" in text
    assert "execution: disk on fire" in text
    assert "$0." in text  # the model calls are priced
    names = table.columns[0]._cells
    failed = next(cell for cell in names if isinstance(cell, Text) and "execute_tool" in cell.plain)
    assert any("red" in str(part.style) for part in failed.spans)
    bars = [cell for cell in table.columns[3]._cells if isinstance(cell, Text)]
    assert bars[0].plain == "█" * 20  # the run spans the whole time line

    [as_json] = tree_json(spans, prices={"function:scripted": (1000.0, 1000.0)})
    chat = as_json["children"][0]["children"][0]
    assert chat["cost_usd"] > 0 and chat["children"] == []
    assert as_json["children"][1]["status"] == "error"
