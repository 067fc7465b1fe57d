"""The workspace as agent tools: read_file, write_file, edit_file, list_files, grep_files.

Each tool has JSON schemas for its input and output; a workspace error (a bad path,
an ambiguous edit, a quota) becomes a ToolExecutionError whose message tells the model
what to fix. In a read-only view the write tools are not offered at all, so the model
is never shown a tool it may not use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shopfloor.errors import ToolExecutionError, WorkspaceError
from shopfloor.tools import Tool, ToolContext
from shopfloor.workspace._view import WorkspaceView

__all__ = ["WorkspaceTool", "workspace_tools"]

Handler = Callable[[WorkspaceView, dict[str, Any]], Awaitable[dict[str, Any]]]

_PATH = {"type": "string", "description": "path relative to /workspace, e.g. notes/plan.md"}


def _path(value: str) -> str:
    """Models often write the mount point; accept it and strip it."""
    if value in ("/workspace", "/workspace/"):
        return ""
    return value[len("/workspace/") :] if value.startswith("/workspace/") else value


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


class WorkspaceTool(Tool):
    def __init__(
        self,
        view: WorkspaceView,
        *,
        name: str,
        description: str,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any],
        handler: Handler,
    ) -> None:
        self.view = view
        self.name = name
        self.description = description
        self.input_schema = input_schema
        self.output_schema = output_schema
        self._handler = handler

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        try:
            return await self._handler(self.view, self.validate(args))
        except WorkspaceError as exc:
            raise ToolExecutionError(f"{self.name}: {exc}") from exc


async def _read(view: WorkspaceView, args: dict[str, Any]) -> dict[str, Any]:
    text = await view.read_text(_path(args["path"]))
    lines = text.splitlines(keepends=True)
    start = max(int(args.get("offset", 1)), 1) - 1
    limit = args.get("limit")
    chosen = lines[start : None if limit is None else start + int(limit)]
    return {"path": args["path"], "content": "".join(chosen), "total_lines": len(lines)}


async def _write(view: WorkspaceView, args: dict[str, Any]) -> dict[str, Any]:
    info = await view.write(_path(args["path"]), args["content"])
    return {"path": info.path, "size": info.size}


async def _edit(view: WorkspaceView, args: dict[str, Any]) -> dict[str, Any]:
    count = await view.edit(
        _path(args["path"]),
        args["old_text"],
        args["new_text"],
        replace_all=bool(args.get("replace_all", False)),
    )
    return {"path": args["path"], "replacements": count}


async def _list(view: WorkspaceView, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("pattern"):
        root = _path(args.get("path", ""))
        pattern = f"{root}/{args['pattern']}" if root else args["pattern"]
        return {"files": [{"path": p, "kind": "file"} for p in (await view.glob(pattern))[:1000]]}
    infos = await view.ls(_path(args.get("path", "")))
    return {"files": [{"path": i.path, "kind": i.kind, "size": i.size} for i in infos[:1000]]}


async def _grep(view: WorkspaceView, args: dict[str, Any]) -> dict[str, Any]:
    matches = await view.grep(
        args["pattern"],
        path=_path(args.get("path", "")),
        glob=args.get("glob"),
        ignore_case=bool(args.get("ignore_case", False)),
        max_matches=100,
    )
    return {"matches": [m.to_json() for m in matches]}


_FILES_OUT = _obj(
    {
        "files": {
            "type": "array",
            "items": _obj(
                {"path": {"type": "string"}, "kind": {"enum": ["file", "dir"]}, "size": {"type": "integer"}},
                ["path", "kind"],
            ),
        }
    },
    ["files"],
)

_SPECS: list[tuple[str, bool, str, dict[str, Any], dict[str, Any], Handler]] = [
    (
        "read_file",
        False,
        "Read a text file of the workspace, optionally from line `offset` (1-based) for `limit` lines.",
        _obj(
            {
                "path": _PATH,
                "offset": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
            ["path"],
        ),
        _obj(
            {"path": {"type": "string"}, "content": {"type": "string"}, "total_lines": {"type": "integer"}},
            ["path", "content", "total_lines"],
        ),
        _read,
    ),
    (
        "write_file",
        True,
        "Create or replace a file in the workspace with the given text content.",
        _obj({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
        _obj({"path": {"type": "string"}, "size": {"type": "integer"}}, ["path", "size"]),
        _write,
    ),
    (
        "edit_file",
        True,
        "Replace exact text in a file; old_text must appear exactly once unless replace_all is true.",
        _obj(
            {
                "path": _PATH,
                "old_text": {"type": "string", "minLength": 1},
                "new_text": {"type": "string"},
                "replace_all": {"type": "boolean"},
            },
            ["path", "old_text", "new_text"],
        ),
        _obj({"path": {"type": "string"}, "replacements": {"type": "integer"}}, ["path", "replacements"]),
        _edit,
    ),
    (
        "list_files",
        False,
        "List a directory of the workspace, or with `pattern` (a glob such as **/*.py) the matching files.",
        _obj({"path": _PATH, "pattern": {"type": "string"}}, []),
        _FILES_OUT,
        _list,
    ),
    (
        "grep_files",
        False,
        "Search the workspace's text files for lines matching a regular expression.",
        _obj(
            {
                "pattern": {"type": "string", "minLength": 1},
                "path": _PATH,
                "glob": {"type": "string"},
                "ignore_case": {"type": "boolean"},
            },
            ["pattern"],
        ),
        _obj(
            {
                "matches": {
                    "type": "array",
                    "items": _obj(
                        {"path": {"type": "string"}, "line": {"type": "integer"}, "text": {"type": "string"}},
                        ["path", "line", "text"],
                    ),
                }
            },
            ["matches"],
        ),
        _grep,
    ),
]


def workspace_tools(view: WorkspaceView, *, read_only: bool | None = None) -> list[Tool]:
    """The file tools over ``view``; without write_file and edit_file when read-only (or the view is)."""
    ro = view.read_only if read_only is None else read_only or view.read_only
    return [
        WorkspaceTool(
            view, name=name, description=desc, input_schema=ins, output_schema=outs, handler=handler
        )
        for name, writes, desc, ins, outs, handler in _SPECS
        if not (writes and ro)
    ]
