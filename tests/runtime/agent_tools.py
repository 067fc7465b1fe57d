"""Tools and a scripted model for the runtime tests' agent (copied next to its agent.yaml).

Every tool call and model call appends a line to ``calls.log`` next to this file,
so a test can count how often each step really ran. A file ``block-KEY`` makes the
call with that key wait until the file is removed: the test kills the worker then.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from shopfloor.errors import ToolExecutionError
from shopfloor.models import ModelRequest
from shopfloor.tools import ChildCall, Proposal, Tool, ToolContext

HERE = Path(__file__).parent


def _log(line: str) -> None:
    with open(HERE / "calls.log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def _gate(key: str) -> None:
    # The test process (not this one) removes the file: no in-process event can carry that.
    while (HERE / f"block-{key}").exists():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def tick(n: int, ctx: ToolContext) -> dict[str, Any]:
    """Count one tick."""
    _log(f"tool:{ctx.idempotency_key}")
    await _gate(f"tool-{ctx.step}")
    return {"n": n, "key": ctx.idempotency_key}


async def sleepy(seconds: float) -> str:
    """Sleep a while."""
    await asyncio.sleep(seconds)
    return "rested"


async def transfer(amount: int, ctx: ToolContext) -> str:
    """Move money (needs approval)."""
    _log(f"transfer:{ctx.idempotency_key}")
    return f"moved {amount}"


class FanOut(Tool):
    """Hands ``n`` parts to child runs (``ToolServices.children``) and gathers what they return; a file
    ``block-child-I`` holds part I in its child run."""

    name = "fan_out"
    description = "Work on n parts in child runs"
    input_schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": 8},
            "label": {"type": "string"},
            "ask": {"type": "boolean"},
        },
        "required": ["n"],
        "additionalProperties": False,
    }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        _log(f"fan_out:{ctx.idempotency_key}")
        children = ctx.services.children
        if children is None:
            raise ToolExecutionError("fan_out needs child runs")
        label = args.get("label", "")
        asks = {"ask": True} if args.get("ask") else {}
        calls = [
            ChildCall(task=f"part {i} {label}".strip(), params={"i": i, **asks}) for i in range(args["n"])
        ]
        ended = await children.run(ctx, self.name, calls)
        return {
            "parts": [o.output for o in ended],
            "statuses": [o.status for o in ended],
            "runs": [o.run_id for o in ended],
        }

    async def call_child(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        _log(f"child:{params['i']}")
        await _gate(f"child-{params['i']}")
        if ctx.services.children is not None:
            raise ToolExecutionError("a child run was lent children of its own")
        if ctx.services.ask_model is None or ctx.services.budget is None:
            raise ToolExecutionError("a child run was not lent what a run's tool is: model routes, budget")
        done = {"i": params["i"], "squared": params["i"] ** 2, "key": ctx.idempotency_key}
        if params.get("ask"):  # a question to the run's model: tokens the child spends
            schema = {"type": "object", "properties": {"word": {"type": "string"}}}
            done["word"] = json.loads(await ctx.services.ask(f"child question {params['i']}", schema=schema))
        return done


fan_out = FanOut()


async def script(request: ModelRequest) -> str:
    """Task ``ticks=N [tool=NAME]``: call the tool N times, then answer; ``fanout=N [label=TEXT]``: one
    ``fan_out`` of N parts, then answer with what it gathered (``fanout=N ask``: each child asks the
    model a question)."""
    task = next(m.content for m in request.messages if m.role == "user")
    if task.startswith("child question"):  # a child's ``ask``
        _log("ask")
        return json.dumps({"word": f"answer to {task}"})
    step = sum(1 for m in request.messages if m.role == "assistant")
    _log(f"model:{step + 1}")
    await _gate(f"model-{step + 1}")
    fanout = re.search(r"fanout=(\d+)(?: label=(.*))?", task)
    if fanout is not None:
        if step == 0:
            args: dict[str, Any] = {"n": int(fanout.group(1))}
            if fanout.group(2):
                args["label"] = fanout.group(2)
            if " ask" in task:
                args["ask"] = True
            return json.dumps({"tool": "fan_out", "args": args})
        result = next(m.content for m in reversed(request.messages) if m.role != "assistant")
        return json.dumps({"tool": "final_answer", "args": {"answer": f"gathered {result}"}})
    if "slowmodel" in task:
        await asyncio.sleep(2.0)
    ticks = int(re.search(r"ticks=(\d+)", task).group(1))  # type: ignore[union-attr]
    tool = (re.search(r"tool=(\w+)", task) or re.search(r"(tick)", task)).group(1)  # type: ignore[union-attr]
    if step < ticks:
        args = {"n": step + 1}
        if tool == "transfer":
            args = {"amount": 10 * (step + 1)}
        elif tool == "sleepy":
            args = {"seconds": 5.0 + step}
        elif tool == "research":
            args = {"question": task.split("question=", 1)[1] if "question=" in task else "venv and pip"}
        return json.dumps({"tool": tool, "args": args})
    if "garbage" in task:
        return "not json at all"
    return json.dumps({"tool": "final_answer", "args": {"answer": f"done after {ticks} ticks"}})


class _Research(Tool):
    """Proposes a plan (the question split at "and") for a person to approve, maybe edit, then searches
    the plan it is given; both log what they did (the plan's queries joined by "|")."""

    name = "research"
    description = "Research a question"
    input_schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
        "additionalProperties": False,
    }
    proposes = True

    async def propose(self, args: dict[str, Any], ctx: ToolContext) -> Proposal:
        plan = [part.strip() for part in str(args["question"]).split(" and ")]
        _log(f"propose:{ctx.idempotency_key}")
        editable = {"plan": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 40}}}
        return Proposal(data={"plan": plan, "by": "splitting"}, editable=editable)

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        plan = (ctx.proposal or {}).get("plan", [])
        _log(f"research:{ctx.idempotency_key}:{'|'.join(plan).replace(' ', '_')}")
        await _gate(f"research-{ctx.step}")
        return {"searched": plan}


research = _Research()
