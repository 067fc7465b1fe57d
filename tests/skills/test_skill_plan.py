"""A staged skill's schemas for a whole decision from its stage-0 run (``shopfloor-schema-plan/1``),
run through the real sandbox: later stages read the plan; what it does not cover runs on its own."""

from __future__ import annotations

import logging
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import Settings
from shopfloor.skills import SkillTool, load_skill, new_skill
from shopfloor.skills._plan import PLAN_FORMAT, parse_plan

# Each schema says where it came from: "plan" (the stage-0 run's plan) or "run" (a run of its own).
# The plan covers kind "a" only; MODE says how the skill answers a request for a plan.
SCRIPT = """
import json, sys

MODE = {mode!r}
request = json.load(sys.stdin)


def schema(stage, chosen, origin):
    if stage == 0:
        return {{"type": "object", "properties": {{"kind": {{"enum": ["a", "b"]}}}}, "required": ["kind"],
                "additionalProperties": False, "description": origin}}
    if stage == 1:
        return {{"type": "object", "properties": {{"size": {{"enum": [1, 2]}}}}, "required": ["size"],
                "additionalProperties": False, "description": origin + " " + request.get("task", "")}}
    return None


if sys.argv[1:] != ["schema"]:
    print(json.dumps({{"result": "done"}}))
elif request.get("plan") and MODE == "plan":
    a = {{"kind": "a"}}
    stages = [
        {{"stage": 0, "when": {{}}, "schema": schema(0, {{}}, "plan")}},
        {{"stage": 1, "when": a, "schema": schema(1, a, "plan")}},
        {{"stage": 2, "when": a, "schema": None}},
    ]
    print(json.dumps({{"format": "shopfloor-schema-plan/1", "stages": stages}}))
elif request.get("plan") and MODE == "broken":
    print(json.dumps({{"format": "shopfloor-schema-plan/1", "stages": [{{"stage": "zero"}}]}}))
else:
    print(json.dumps(schema(request["stage"], request["chosen"], "run")))
"""


def _tool(settings: Settings, mode: str) -> SkillTool:
    skill_dir = new_skill(f"staged-{mode}", settings.home.parent / "skills")
    (skill_dir / "scripts" / "run.py").write_text(textwrap.dedent(SCRIPT.format(mode=mode)))
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text() + "staged: true\n")
    return SkillTool(load_skill(skill_dir), settings=settings, workspace=Path(settings.home))


def _origin(schema: dict[str, Any] | None) -> str:
    assert schema is not None
    return str(schema["description"])


async def test_later_stages_read_the_plan_of_the_stage_zero_run(settings: Settings) -> None:
    tool = _tool(settings, "plan")
    assert _origin(await tool.next_schema({}, 0, task="t")) == "plan"
    assert _origin(await tool.next_schema({"kind": "a"}, 1, task="t")) == "plan t"
    assert await tool.next_schema({"kind": "a", "size": 1}, 2, task="t") is None
    # What the plan does not cover (kind b), or another task's stage, runs on its own.
    assert _origin(await tool.next_schema({"kind": "b"}, 1, task="t")) == "run t"
    assert _origin(await tool.next_schema({"kind": "a"}, 1, task="other")) == "run other"


async def test_a_new_decision_asks_for_a_new_plan(settings: Settings) -> None:
    tool = _tool(settings, "plan")
    await tool.next_schema({}, 0, task="first")
    assert _origin(await tool.next_schema({}, 0, task="second")) == "plan"
    assert _origin(await tool.next_schema({"kind": "a"}, 1, task="second")) == "plan second"


async def test_a_skill_that_does_not_plan_runs_each_stage(settings: Settings) -> None:
    tool = _tool(settings, "stages")
    assert _origin(await tool.next_schema({}, 0, task="t")) == "run"
    assert _origin(await tool.next_schema({"kind": "a"}, 1, task="t")) == "run t"
    assert await tool.next_schema({"kind": "a", "size": 2}, 2, task="t") is None


async def test_a_malformed_plan_is_ignored_with_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    tool = _tool(settings, "broken")
    with caplog.at_level(logging.WARNING, logger="shopfloor.skills"):
        assert _origin(await tool.next_schema({}, 0, task="t")) == "run"
    assert "stages[0].stage must be a stage number" in caplog.text
    assert _origin(await tool.next_schema({"kind": "a"}, 1, task="t")) == "run t"


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ({"format": PLAN_FORMAT, "stages": {}}, "'stages' must be a list"),
        ({"format": PLAN_FORMAT, "stages": [3]}, r"stages\[0\] must be an object"),
        ({"format": PLAN_FORMAT, "stages": [{"stage": True}]}, r"stages\[0\].stage must be"),
        ({"format": PLAN_FORMAT, "stages": [{"stage": 0, "when": []}]}, r"stages\[0\].when must be"),
        ({"format": PLAN_FORMAT, "stages": [{"stage": 0, "schema": "x"}]}, r"stages\[0\].schema must be"),
    ],
)
def test_a_malformed_plan_says_what_is_wrong(output: dict[str, Any], error: str) -> None:
    message = parse_plan(output, "t")
    assert isinstance(message, str)
    assert re.search(error, message)


def test_a_schema_is_not_a_plan() -> None:
    assert parse_plan({"type": "object", "properties": {}}, "t") is None
    assert parse_plan(None, "t") is None


def test_the_first_matching_entry_wins_and_needs_every_when_value() -> None:
    plan = parse_plan(
        {
            "format": PLAN_FORMAT,
            "stages": [
                {"stage": 1, "when": {"kind": "a", "file": "x"}, "schema": {"description": "ax"}},
                {"stage": 1, "when": {"kind": "a"}, "schema": {"description": "a"}},
                {"stage": 2, "when": {"kind": "a"}, "schema": None},
            ],
        },
        "t",
    )
    assert plan is not None and not isinstance(plan, str)
    assert plan.lookup(1, {"kind": "a", "file": "x", "size": 1}) == (True, {"description": "ax"})
    assert plan.lookup(1, {"kind": "a", "file": "y"}) == (True, {"description": "a"})
    assert plan.lookup(1, {"file": "x"}) == (False, None)
    assert plan.lookup(2, {"kind": "a"}) == (True, None)
    assert plan.lookup(3, {"kind": "a"}) == (False, None)
