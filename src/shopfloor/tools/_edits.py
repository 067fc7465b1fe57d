"""What an approver may change in what a tool proposed, and the check of an edit.

A tool's ``Proposal`` names its ``editable`` fields, each with the JSON schema of the values it allows
(the research tool: its list of sub-questions, bounded in count and length, strings only). An edit is the
proposal as the approver wants it: a field it leaves out (or sends back as proposed) keeps its proposed
value, a field it changes must be editable and valid, and it adds no field. The runtime checks an edit when
it is given (a bad one is refused, each problem naming its field) and the agent loop checks it again when
the decision reaches the run, so the call never runs with a proposal its tool does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import jsonschema

from shopfloor.errors import ProposalEditError

__all__ = ["check_edit"]

#: how long a message may quote what the validator found (a hostile edit is not echoed in full)
_QUOTE = 120


def check_edit(editable: Mapping[str, Any], proposed: Mapping[str, Any], edit: Any) -> dict[str, Any]:
    """The proposal as edited: ``proposed`` with the fields ``edit`` changes, each allowed by ``editable``
    (field -> JSON schema). Raises ``ProposalEditError`` naming each field that is not an object's, not
    the proposal's, not editable, or not valid."""
    if not isinstance(edit, Mapping):
        raise ProposalEditError(
            [{"loc": ["proposal"], "msg": f"must be a JSON object, got {_kind(edit)}", "type": "dict_type"}]
        )
    problems: list[dict[str, Any]] = []
    fields = ", ".join(sorted(proposed)) or "none"
    may = ", ".join(sorted(editable)) or "nothing"
    for name, value in edit.items():
        loc: list[str | int] = ["proposal", str(name)]
        if name not in proposed:
            problems.append(
                {"loc": loc, "msg": f"no such field (the proposal's: {fields})", "type": "extra_forbidden"}
            )
        elif value == proposed[name]:
            continue  # sent back as proposed: not an edit (the tool's own value may lie outside the bounds)
        elif name not in editable:
            problems.append(
                {"loc": loc, "msg": f"may not be changed (editable: {may})", "type": "frozen_field"}
            )
        else:
            validator = jsonschema.Draft202012Validator(editable[name])
            for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
                problems.append(
                    {
                        "loc": [*loc, *error.absolute_path],
                        "msg": _message(error),
                        "type": str(error.validator),
                    }
                )
    if problems:
        raise ProposalEditError(problems)
    return {**proposed, **{name: edit[name] for name in edit}}


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _message(error: jsonschema.ValidationError) -> str:
    """What was wrong, in words that do not repeat the approver's whole value."""
    rule, limit, value = error.validator, cast("Any", error.validator_value), cast("Any", error.instance)
    if rule == "type":
        return f"must be {limit if isinstance(limit, str) else ' or '.join(limit)}, got {_kind(value)}"
    if rule == "maxItems":
        return f"at most {limit} items, got {len(value)}"
    if rule == "minItems":
        return f"at least {limit} item{'s' if limit != 1 else ''}, got {len(value)}"
    if rule == "maxLength":
        return f"at most {limit} characters, got {len(value)}"
    if rule == "minLength":
        return f"at least {limit} characters, got {len(value)}"
    if rule == "uniqueItems":
        return "the items must differ from one another"
    if rule == "pattern":
        said = error.schema.get("description") if isinstance(error.schema, dict) else None
        return f"must be {said}" if said else f"must match the pattern {limit!r}"
    return error.message[:_QUOTE]
