"""Run events print what a model or a tool wrote as plain text: no markup, no terminal control."""

from __future__ import annotations

import pytest

from shopfloor.agent import RunEvent
from shopfloor.cli._run import print_event
from shopfloor.runtime import StoredEvent


def _printed(capsys: pytest.CaptureFixture[str], kind: str, **data: object) -> str:
    print_event(StoredEvent(seq=0, at=0.0, event=RunEvent(kind=kind, run_id="r1", step=1, data=data)))  # type: ignore[arg-type]
    return capsys.readouterr().out


def test_markup_escape_sequences_and_bidi_overrides_are_shown_not_obeyed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    hidden = "ok \x1b[8mrm -rf /\x1b[0m \u202edesrever[/magenta] :warning:"
    for kind, data in (
        ("model_reply", {"tool": "shell", "arguments": {"cmd": hidden}, "usage": 1}),
        ("tool_result", {"tool": "shell", "error": hidden}),
        ("tool_result", {"tool": "shell", "output": hidden, "duration": 0.1}),
        ("approval_requested", {"tool": "shell", "arguments": {"cmd": hidden}, "approvers": []}),
        ("run_finished", {"status": "failed", "stop_reason": "error", "error": hidden, "output": hidden}),
    ):
        out = _printed(capsys, kind, **data)
        assert "\x1b" not in out and "\u202e" not in out, (kind, out)
        assert "\\u001b[8mrm -rf /" in out and "\\u202edesrever[/magenta] :warning:" in out, (kind, out)
