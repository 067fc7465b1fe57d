"""An agent whose scripted model writes hostile text (rich markup, a long call, secrets).

Written next to an agent.yaml by ``write_untrusted_agent``; the task picks the script:
``note`` calls the ``note`` tool (it needs approval) with ``PAYLOAD``, ``leak`` calls
``leak`` with a planted secret in its arguments (the tool fails, quoting another secret),
``crash`` makes the model raise an exception quoting a third.
"""

from __future__ import annotations

import json
from pathlib import Path

from shopfloor.errors import ToolExecutionError
from shopfloor.models import ModelRequest

#: What an injected model might put in a call: markup that hides text, an unbalanced tag
#: that crashed the printer, and a tail past the old 100-character cut.
PAYLOAD = (
    "pay [conceal]IBAN DE00 ATTACKER[/conceal] only the invoice [/magenta] [bold]"
    + "x" * 150
    + " END-OF-CALL"
)
#: Secrets planted in a tool's arguments and in a tool's error.
ARG_SECRET = "sk_live_" + "A1b2C3d4E5f6G7h8J9k0"
ERROR_SECRET = "hf_" + "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2"
#: Planted in an exception that is not Shopfloor's (a bug): DBOS records what a step raises.
CRASH_SECRET = "ghp_" + "Crash0Secret1Value2Here3"
SPEC = """\
name: untrusted
instructions: Do as told.
model: function:untrusted_agent:script
decision: one_shot
tools:
  - name: note
    source: untrusted_agent.py:note
    requires_approval: true
    approval_timeout: {timeout}
  - name: leak
    source: untrusted_agent.py:leak
"""


def write_untrusted_agent(root: Path, *, approval_timeout: float = 0.5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.yaml").write_text(SPEC.format(timeout=approval_timeout))
    (root / "untrusted_agent.py").write_text(Path(__file__).read_text())
    return root


async def script(request: ModelRequest) -> str:
    task = next(m.content for m in request.messages if m.role == "user")
    if any(m.role == "assistant" for m in request.messages):
        return json.dumps({"tool": "final_answer", "args": {"answer": "done"}})
    if task == "crash":
        raise RuntimeError(f"model backend bug while holding {CRASH_SECRET}")
    if task == "note":
        return json.dumps({"tool": "note", "args": {"text": PAYLOAD}})
    return json.dumps({"tool": "leak", "args": {"payload": f"charge it with {ARG_SECRET}"}})


async def note(text: str) -> str:
    """Write a note (needs approval)."""
    return "noted"


async def leak(payload: str) -> str:
    """Call an upstream that fails, quoting a credential in its error."""
    raise ToolExecutionError(f"upstream refused {ERROR_SECRET} for {payload!r}")
