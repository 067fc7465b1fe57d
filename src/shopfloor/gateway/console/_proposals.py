"""The approval form's editor of what a call proposed (a research plan's sub-questions).

Each field its tool lets change (the approval's ``editable``, a JSON schema per field) becomes inputs: a
list of strings one input a line (with empty lines to add to it, up to its ``maxItems``; a line left empty
drops it), a string one input, anything else its JSON in a text area. The form comes back as
``edit.FIELD.N``, ``edit.FIELD`` or ``edit-json.FIELD``; what it holds goes to the runtime, which checks
it (``check_edit``) and refuses it naming the field. Nothing here trusts the form to hold only the inputs
it was given: a field it adds is handed on and refused as the tool's ``no such field``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shopfloor.errors import ProposalEditError

__all__ = ["EditField", "edit_fields", "edit_from_form"]

#: inputs a list gets at most (its schema's ``maxItems`` where lower)
MAX_SLOTS = 20
_ITEM = re.compile(r"^edit\.(?P<name>.+)\.(?P<index>\d{1,4})$")


@dataclass(frozen=True, kw_only=True)
class EditField:
    name: str
    kind: Literal["list", "text", "json"]
    #: a list's lines (its values then empty ones), a string's value, or the value's JSON
    values: tuple[str, ...]
    #: the longest a string may be (the input's ``maxlength``), None: no bound
    max_length: int | None = None


def edit_fields(approval: Mapping[str, Any] | None) -> list[EditField]:
    """The inputs of the approval form's editor, none where nothing may be edited."""
    proposal = (approval or {}).get("proposal")
    editable = (approval or {}).get("editable") or {}
    if not isinstance(proposal, Mapping) or not isinstance(editable, Mapping):
        return []
    fields = []
    for name, schema in editable.items():
        if name not in proposal or not isinstance(schema, Mapping):
            continue
        value = proposal[name]
        kind = _kind(schema)
        if kind == "list" and isinstance(value, list):
            items = schema.get("items") or {}
            slots = min(int(schema.get("maxItems", len(value) + 2)), MAX_SLOTS)
            lines = [str(v) for v in value]
            fields.append(
                EditField(
                    name=str(name),
                    kind="list",
                    values=(*lines, *[""] * max(0, slots - len(lines))),
                    max_length=items.get("maxLength"),
                )
            )
        elif kind == "text" and isinstance(value, str):
            fields.append(
                EditField(name=str(name), kind="text", values=(value,), max_length=schema.get("maxLength"))
            )
        else:
            shown = json.dumps(value, indent=2, ensure_ascii=False)
            fields.append(EditField(name=str(name), kind="json", values=(shown,)))
    return fields


def edit_from_form(form: Mapping[str, str]) -> dict[str, Any] | None:
    """The proposal's fields as the form sends them (a field it leaves out keeps its proposed value),
    None where it sends no editor's input."""
    lists: dict[str, dict[int, str]] = {}
    edit: dict[str, Any] = {}
    for key, value in form.items():
        if (item := _ITEM.match(key)) is not None:
            lists.setdefault(item["name"], {})[int(item["index"])] = value
        elif key.startswith("edit-json."):
            name = key.removeprefix("edit-json.")
            try:
                edit[name] = json.loads(value)
            except ValueError as exc:
                problem = {"loc": ["proposal", name], "msg": f"not JSON: {exc}", "type": "json_invalid"}
                raise ProposalEditError([problem]) from None
        elif key.startswith("edit."):
            edit[key.removeprefix("edit.")] = value
    for name, lines in lists.items():
        edit[name] = [line.strip() for _, line in sorted(lines.items()) if line.strip()]
    return edit or None


def _kind(schema: Mapping[str, Any]) -> Literal["list", "text", "json"]:
    if schema.get("type") == "array" and (schema.get("items") or {}).get("type") == "string":
        return "list"
    if schema.get("type") == "string":
        return "text"
    return "json"
