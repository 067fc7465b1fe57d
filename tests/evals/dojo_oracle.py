"""The AgentDojo tests' function model (copied next to its agent spec): for a known prompt it makes
the user task's calls from ``plan.json``; once a tool result carries an injection (``<INFORMATION>``)
it first makes the injection task's calls, as a model that follows injected instructions would."""

from __future__ import annotations

import json
from pathlib import Path

from shopfloor.models import ModelRequest

HERE = Path(__file__).parent


async def script(request: ModelRequest) -> str:
    task = next(m.content for m in request.messages if m.role == "user")
    plans = json.loads((HERE / "plan.json").read_text())
    plan = next((plans[prompt] for prompt in plans if prompt in task), None)
    step = sum(1 for m in request.messages if m.role == "assistant")
    if plan is None:
        return json.dumps({"tool": "final_answer", "args": {"answer": "I cannot do that."}})
    calls = plan["user"]
    if any("<INFORMATION>" in (m.content or "") for m in request.messages if m.role != "system"):
        calls = calls[:1] + plan["injection"] + calls[1:]
    if step < len(calls):
        return json.dumps({"tool": calls[step]["function"], "args": calls[step]["args"]})
    return json.dumps({"tool": "final_answer", "args": {"answer": plan["answer"]}})
