"""An agent granted the secret API_TOKEN whose tool echoes it in its result, then quotes it in an error.

Written next to an agent.yaml by ``write_secret_agent``. The value has no shape a pattern would know: only
redaction by value keeps it out of the stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shopfloor.errors import ToolExecutionError
from shopfloor.models import ModelRequest
from shopfloor.tools import ToolContext

#: no prefix, no keyword: nothing but its value identifies it
VALUE = "plainvalue-7f3a9c2e1b5d"

SPEC = """\
name: keyed
instructions: Use the token.
model: function:secret_agent:script
decision: one_shot
tools:
  - name: use_token
    source: secret_agent.py:use_token
permissions:
  secrets: [API_TOKEN]
"""


def write_secret_agent(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.yaml").write_text(SPEC)
    (root / "secret_agent.py").write_text(Path(__file__).read_text())
    return root


async def script(request: ModelRequest) -> str:
    calls = sum(1 for m in request.messages if m.role == "assistant")
    if calls == 0:
        return json.dumps({"tool": "use_token", "args": {"mode": "echo"}})
    if calls == 1:
        return json.dumps({"tool": "use_token", "args": {"mode": "fail"}})
    return json.dumps({"tool": "final_answer", "args": {"answer": "done"}})


def use_token(mode: str, ctx: ToolContext) -> dict[str, Any]:
    """Call an upstream with the granted token."""
    assert ctx.services.secrets is not None
    token = ctx.services.secrets()["API_TOKEN"]
    if mode == "fail":
        raise ToolExecutionError(f"upstream refused the token {token}")
    return {"echo": f"sent {token}", "length": len(token)}
