"""The workspace exposed as agent tools."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from shopfloor.errors import ToolArgumentsError, ToolExecutionError
from shopfloor.tools import Tool, ToolContext
from shopfloor.workspace import LocalDirMount, Workspaces, workspace_tools

CTX = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1")


def _by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}


async def _call(tool: Tool, args: dict[str, object]) -> object:
    result = await tool.call(args, CTX)
    assert tool.output_schema is not None
    jsonschema.validate(result, tool.output_schema)
    return result


async def test_tools_read_write_edit_list_grep(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    tools = _by_name(workspace_tools(view, read_only=False))
    assert sorted(tools) == ["edit_file", "grep_files", "list_files", "read_file", "write_file"]
    for tool in tools.values():
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
    assert await _call(tools["write_file"], {"path": "/workspace/notes/plan.md", "content": "a\nb\nc\n"}) == {
        "path": "notes/plan.md",
        "size": 6,
    }
    assert await _call(tools["read_file"], {"path": "notes/plan.md", "offset": 2, "limit": 1}) == {
        "path": "notes/plan.md",
        "content": "b\n",
        "total_lines": 3,
    }
    assert await _call(
        tools["edit_file"], {"path": "notes/plan.md", "old_text": "b\n", "new_text": "B\n"}
    ) == {
        "path": "notes/plan.md",
        "replacements": 1,
    }
    listing = await _call(tools["list_files"], {"path": "notes"})
    assert listing == {"files": [{"path": "notes/plan.md", "kind": "file", "size": 6}]}
    assert await _call(tools["list_files"], {"pattern": "**/*.md"}) == {
        "files": [{"path": "notes/plan.md", "kind": "file"}]
    }
    grep = await _call(tools["grep_files"], {"pattern": "^B$"})
    assert grep == {"matches": [{"path": "notes/plan.md", "line": 2, "text": "B"}]}
    with pytest.raises(ToolExecutionError, match="was not found"):
        await tools["edit_file"].call({"path": "notes/plan.md", "old_text": "zzz", "new_text": "y"}, CTX)
    with pytest.raises(ToolExecutionError, match=r"'\.\.'"):
        await tools["write_file"].call({"path": "../escape", "content": "x"}, CTX)
    with pytest.raises(ToolArgumentsError, match="content"):
        await tools["write_file"].call({"path": "a"}, CTX)


async def test_read_only_tools_offer_no_writes(file_repo: Workspaces, tmp_path: Path) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("a.txt", "x")
    await view.commit("c")
    assert sorted(_by_name(workspace_tools(view, read_only=True))) == [
        "grep_files",
        "list_files",
        "read_file",
    ]
    checkout = await file_repo.workspace("w").checkout()
    assert "write_file" not in _by_name(workspace_tools(checkout))
    # a read-write agent still cannot write into a read-only mount
    (tmp_path / "lake").mkdir()
    mounted = await file_repo.workspace("w").open(mounts={"lake": LocalDirMount(tmp_path / "lake")})
    write = _by_name(workspace_tools(mounted))["write_file"]
    with pytest.raises(ToolExecutionError, match="read-only mount"):
        await write.call({"path": "lake/x.txt", "content": "x"}, CTX)
