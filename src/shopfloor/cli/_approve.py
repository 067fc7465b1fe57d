"""``shopfloor runs approve --edit`` and ``--proposal FILE|-``: a call's proposal as the approver edits it.

The proposal comes back as YAML (JSON is YAML too), read through the spec layer's bounded loader, and is
checked here against what its tool lets change before it is sent, so that a bad edit names its field and
its file:line; the runtime (or the server) checks it again when it records the decision.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from shopfloor.errors import ConfigError, ProposalEditError, RunStateError
from shopfloor.spec import YamlDocument, compose_yaml
from shopfloor.tools import check_edit

__all__ = ["edit_in_editor", "read_proposal"]

#: an edited proposal larger than this is refused before it is parsed (the server's body limit is larger)
MAX_PROPOSAL_BYTES = 256 * 1024


def read_proposal(source: str, approval: dict[str, Any] | None) -> dict[str, Any]:
    """The proposal in ``source`` (a file, or ``-`` for standard input), checked against the waiting
    call's ``approval`` where it is known."""
    if source == "-":
        text, name = sys.stdin.read(MAX_PROPOSAL_BYTES + 1), "<stdin>"
    else:
        path = Path(source)
        try:
            with path.open(encoding="utf-8") as handle:
                text = handle.read(MAX_PROPOSAL_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--proposal {source}: cannot read it: {exc}") from None
        name = str(path)
    return _parsed(text, name, approval)


def edit_in_editor(
    run_id: str, approval: dict[str, Any] | None, *, editor: str | None = None
) -> dict[str, Any]:
    """The waiting call's proposal as the approver leaves it in ``$VISUAL``/``$EDITOR`` (YAML, with what
    may change in a comment at the top). Saved unchanged, it is the proposal as proposed."""
    proposal = (approval or {}).get("proposal")
    if approval is None:
        raise RunStateError(f"run {run_id} is not waiting for approval: nothing to edit")
    if not isinstance(proposal, dict):
        raise ProposalEditError(
            [
                {
                    "loc": ["proposal"],
                    "msg": f"the call run {run_id} waits on proposes nothing to edit: approve without --edit",
                    "type": "value_error",
                }
            ]
        )
    command = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="shopfloor-approve-") as tmp:
        path = Path(tmp) / "proposal.yaml"
        path.write_text(_header(run_id, approval) + _dump(proposal), encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(command), str(path)], check=False)
        except OSError as exc:
            raise ConfigError(f"the editor {command!r} could not be started: {exc}") from None
        if done.returncode != 0:
            raise ConfigError(f"the editor {command!r} exited with {done.returncode}: nothing was approved")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not _without_comments(text).strip():
            raise ConfigError("the edited proposal is empty: nothing was approved")
        return _parsed(text, "the edited proposal", approval)


def _header(run_id: str, approval: dict[str, Any]) -> str:
    editable = approval.get("editable") or {}
    lines = [
        f"The proposal of {json.dumps(approval.get('tool'))} that run {run_id} waits on.",
        "Save and quit to approve it as it is then; empty the file to approve nothing.",
        "What may change (JSON schema):" if editable else "Nothing in it may change.",
        *(f"  {name}: {json.dumps(schema, sort_keys=True)}" for name, schema in editable.items()),
    ]
    return "".join(f"# {line}\n" for line in lines)


def _dump(proposal: dict[str, Any]) -> str:
    # Escaped, not shown as written: a model's text may hold control or bidirectional-override characters
    # that would make the editor show something other than what is approved.
    return yaml.safe_dump(proposal, sort_keys=False, allow_unicode=False, width=100)


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _parsed(text: str, name: str, approval: dict[str, Any] | None) -> dict[str, Any]:
    if len(text.encode("utf-8", "replace")) > MAX_PROPOSAL_BYTES:
        raise ConfigError(f"{name}: the proposal is larger than {MAX_PROPOSAL_BYTES} bytes")
    doc = compose_yaml(text, name)
    if doc.problems:
        raise ConfigError(
            f"{name}: " + "; ".join(f"line {where.line}: {message}" for where, message in doc.problems)
        )
    if not isinstance(doc.data, dict):
        raise ProposalEditError(
            [
                {
                    "loc": ["proposal"],
                    "msg": f"{name} must hold a mapping of the proposal's fields",
                    "type": "dict_type",
                }
            ]
        )
    if approval is not None and isinstance(approval.get("proposal"), dict):
        _check_located(doc, approval)
    return doc.data


def _check_located(doc: YamlDocument, approval: dict[str, Any]) -> None:
    """``check_edit`` with each problem's line in the file added to its message."""
    try:
        check_edit(approval.get("editable") or {}, approval["proposal"], doc.data)
    except ProposalEditError as exc:
        located = []
        for problem in exc.problems:
            where = doc.location(tuple(problem["loc"][1:]), at_key=len(problem["loc"]) == 2)
            located.append({**problem, "msg": f"{problem['msg']} ({doc.file}, line {where.line})"})
        raise ProposalEditError(located) from None
