"""An approver's edit of a proposal is checked against what its tool lets change, each problem naming its
field (``loc``) the way FastAPI names a body's."""

from __future__ import annotations

from typing import Any

import pytest

from shopfloor.errors import ProposalEditError
from shopfloor.tools import check_edit

PLAN = {
    "route": {"depth": "deep", "reason": "two questions", "by": "rules"},
    "sub_questions": ["a b c", "d e f"],
}
EDITABLE = {
    "sub_questions": {
        "type": "array",
        "minItems": 1,
        "maxItems": 3,
        "items": {
            "type": "string",
            "minLength": 3,
            "maxLength": 20,
            "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
            "description": "one line without control characters",
        },
    }
}


def problems(edit: Any) -> list[tuple[list[Any], str, str]]:
    with pytest.raises(ProposalEditError) as caught:
        check_edit(EDITABLE, PLAN, edit)
    return [(p["loc"], p["msg"], p["type"]) for p in caught.value.problems]


def test_an_edit_of_an_editable_field_gives_the_proposal_with_it() -> None:
    edited = check_edit(EDITABLE, PLAN, {"sub_questions": ["venv module", "pip install"]})
    assert edited == {**PLAN, "sub_questions": ["venv module", "pip install"]}
    assert PLAN["sub_questions"] == ["a b c", "d e f"], "the proposal itself is not changed"


def test_a_field_left_out_or_sent_unchanged_keeps_its_value() -> None:
    assert check_edit(EDITABLE, PLAN, {}) == PLAN
    assert check_edit(EDITABLE, PLAN, {"route": PLAN["route"], "sub_questions": ["x y z"]}) == {
        **PLAN,
        "sub_questions": ["x y z"],
    }


def test_each_bad_item_is_named_by_its_index_and_says_the_bound() -> None:
    found = problems({"sub_questions": ["ok ok", "x" * 5000, 7, "no\nnewline"]})
    assert found == [
        (["proposal", "sub_questions"], "at most 3 items, got 4", "maxItems"),
        (["proposal", "sub_questions", 1], "at most 20 characters, got 5000", "maxLength"),
        (["proposal", "sub_questions", 2], "must be string, got a number", "type"),
        (
            ["proposal", "sub_questions", 3],
            "must be one line without control characters",
            "pattern",
        ),
    ]
    assert all("x" * 200 not in msg for _, msg, _ in found), "a hostile value is not echoed"


def test_new_fields_and_fields_the_tool_keeps_are_refused() -> None:
    assert problems({"route": {"depth": "shallow"}, "answer": "42"}) == [
        (["proposal", "route"], "may not be changed (editable: sub_questions)", "frozen_field"),
        (["proposal", "answer"], "no such field (the proposal's: route, sub_questions)", "extra_forbidden"),
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (["a b c"], (["proposal"], "must be a JSON object, got a list", "dict_type")),
        ({"sub_questions": []}, (["proposal", "sub_questions"], "at least 1 item, got 0", "minItems")),
        ({"sub_questions": "a b c"}, (["proposal", "sub_questions"], "must be array, got a string", "type")),
        (
            {"sub_questions": ["ab"]},
            (["proposal", "sub_questions", 0], "at least 3 characters, got 2", "minLength"),
        ),
    ],
)
def test_the_shape_of_an_edit_is_checked(edit: Any, expected: tuple[list[Any], str, str]) -> None:
    assert problems(edit) == [expected]


def test_the_error_message_names_every_field() -> None:
    with pytest.raises(ProposalEditError) as caught:
        check_edit(EDITABLE, PLAN, {"sub_questions": ["x" * 30], "extra": 1})
    assert str(caught.value) == (
        "the edited proposal is refused: proposal.sub_questions.0: at most 20 characters, got 30; "
        "proposal.extra: no such field (the proposal's: route, sub_questions)"
    )


def test_a_proposal_with_nothing_editable_takes_no_change() -> None:
    with pytest.raises(ProposalEditError, match=r"sub_questions: may not be changed \(editable: nothing\)"):
        check_edit({}, PLAN, {"sub_questions": ["x y z"]})
    assert check_edit({}, PLAN, {"sub_questions": PLAN["sub_questions"]}) == PLAN


def test_only_what_changes_is_checked() -> None:
    """A tool's own proposal may lie outside what an approver may write (the planner's longer question):
    sent back unchanged it is no edit, while the same value written anew is refused."""
    long = {**PLAN, "sub_questions": ["a question longer than twenty characters"]}
    assert check_edit(EDITABLE, long, {"sub_questions": long["sub_questions"]}) == long
    with pytest.raises(ProposalEditError, match="at most 20 characters, got 40"):
        check_edit(EDITABLE, PLAN, {"sub_questions": long["sub_questions"]})
