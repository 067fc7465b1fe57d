"""The evaluation tests' agent (copied next to its agent.yaml): a scripted model and tools.

Task forms: ``answer=TEXT`` answers TEXT after one ``mark`` call; ``fail`` makes the tool fail and the
model answer garbage; ``block`` waits in the tool while a file ``block`` exists next to this module.
Every tool call appends ``ITEM`` to ``calls.log``, so a test counts how often an item really ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from shopfloor.models import ModelRequest
from shopfloor.tools import ToolContext

HERE = Path(__file__).parent


def _log(line: str) -> None:
    with open(HERE / "calls.log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def mark(item: str, ctx: ToolContext) -> dict[str, Any]:
    """Leave a mark in the workspace; say which marks were there before."""
    _log(item)
    while (HERE / "block").exists() and item.startswith("block"):  # noqa: ASYNC110 - another process removes it
        await asyncio.sleep(0.02)
    view = ctx.services.workspace
    assert view is not None
    before = sorted(info.path for info in await view.ls("") if info.path.startswith("mark-"))
    await view.write(f"mark-{item}.txt", item.encode())
    return {"before": before, "seeded": await view.exists("seed.txt"), "ids": [f"doc-{item}", "doc-x"]}


async def script(request: ModelRequest) -> str:
    task = next(m.content for m in request.messages if m.role == "user")
    step = sum(1 for m in request.messages if m.role == "assistant")
    item = re.sub(r"\W", "", task.split("=")[-1])[:20] or "x"
    if step == 0:
        return json.dumps({"tool": "mark", "args": {"item": ("block" if "block" in task else "") + item}})
    if "fail" in task:
        return "not json at all"
    last = request.messages[-1].content
    answer = task.split("answer=", 1)[1] if "answer=" in task else "none"
    return json.dumps({"tool": "final_answer", "args": {"answer": f"{answer} | {last[:200]}"}})
