"""A staged skill's schemas for a whole decision from one run: ``SchemaPlan``.

A staged skill computes each stage's argument schema in a sandboxed run (``entry schema``), and a
decision has several stages: one run each costs a sandbox start, an interpreter and the skill's
imports every time. Asked with ``"plan": true`` at stage 0, a skill may answer every stage at once::

    {"format": "shopfloor-schema-plan/1",
     "stages": [{"stage": 0, "when": {}, "schema": {...}},
                {"stage": 2, "when": {"operation": "best_group", "file": "a.csv"}, "schema": null}]}

A stage's schema is the first entry of that stage whose ``when`` the arguments chosen so far match
(``null``: the arguments are complete). A stage the plan does not cover runs on its own as before,
and a skill that ignores ``plan`` answers stage 0 alone, so either side may be older.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PLAN_FORMAT", "SchemaPlan", "parse_plan"]

PLAN_FORMAT = "shopfloor-schema-plan/1"


@dataclass(frozen=True, kw_only=True)
class _Entry:
    stage: int
    when: Mapping[str, Any]
    schema: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class SchemaPlan:
    #: the task the plan was computed for (a skill may narrow its choices to what the task names)
    task: str
    entries: tuple[_Entry, ...]

    def lookup(self, stage: int, chosen: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """(found, schema) for ``stage`` given the arguments chosen so far."""
        for entry in self.entries:
            if entry.stage == stage and all(k in chosen and chosen[k] == v for k, v in entry.when.items()):
                return True, entry.schema
        return False, None


def parse_plan(output: Any, task: str) -> SchemaPlan | str | None:
    """The plan in a schema run's ``output``; None where the output is not one (a skill that answered
    stage 0 alone); a message saying what is wrong where it claims to be one and is malformed."""
    if not isinstance(output, dict) or output.get("format") != PLAN_FORMAT:
        return None
    stages = output.get("stages")
    if not isinstance(stages, list):
        return f"{PLAN_FORMAT}: 'stages' must be a list"
    entries = []
    for i, item in enumerate(stages):
        if not isinstance(item, dict):
            return f"{PLAN_FORMAT}: stages[{i}] must be an object"
        stage, when, schema = item.get("stage"), item.get("when", {}), item.get("schema")
        if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
            return f"{PLAN_FORMAT}: stages[{i}].stage must be a stage number (0 or more)"
        if not isinstance(when, dict):
            return f"{PLAN_FORMAT}: stages[{i}].when must be an object of chosen arguments"
        if schema is not None and not isinstance(schema, dict):
            return f"{PLAN_FORMAT}: stages[{i}].schema must be a JSON Schema object or null"
        entries.append(_Entry(stage=stage, when=when, schema=schema))
    return SchemaPlan(task=task, entries=tuple(entries))
