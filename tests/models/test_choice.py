"""A reply of fixed options decoded at its choices only: the plan of a schema, and the walk through
it with a vocabulary (a toy one here; the embedded model's in test_local_reuse.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shopfloor.models._choice import ChoiceDecoder, Vocabulary, choice_plan

TOOL: dict[str, Any] = {
    "type": "object",
    "properties": {"tool": {"enum": ["data-analysis", "python", "final_answer"]}},
    "required": ["tool"],
    "additionalProperties": False,
}
ARGS: dict[str, Any] = {
    "type": "object",
    "description": "the arguments of best_group",
    "properties": {"stat": {"enum": ["sum", "std"]}, "year": {"enum": [2014, 2015]}, "n": {"const": 1}},
    "required": ["stat", "year", "n"],
    "additionalProperties": False,
}
# Whole words, their pieces and the JSON's punctuation, as a BPE vocabulary has them.
PIECES = [
    b"",  # a control token: no text
    *(
        p.encode()
        for p in [
            *('{"', "{", '"', ' "', '":', '":"', '",', '","', '"}', ":", ",", "}", " "),
            *("tool", "stat", "year", "n", "data", "-analysis", "python", "final", "_answer"),
            *("d", "p", "s", "t", "um", "td", "sum", "std", "st", "201", "4", "5", "1"),
        ]
    ),
]


def tokenize(text: bytes) -> list[int]:
    """Longest piece first, as a stand-in for BPE."""
    tokens = []
    while text:
        piece = max((p for p in PIECES if p and text.startswith(p)), key=len)
        tokens.append(PIECES.index(piece))
        text = text[len(piece) :]
    return tokens


def decoder_of(schema: dict[str, Any]) -> ChoiceDecoder:
    plan = choice_plan(schema)
    assert plan is not None
    return ChoiceDecoder(plan, Vocabulary(PIECES), tokenize)


def walk(schema: dict[str, Any], prefer: list[str]) -> tuple[str, list[list[str]]]:
    """The reply a model that likes ``prefer``'s pieces best (first most) chooses, and the pieces
    allowed at each of its choices."""
    decoder = decoder_of(schema)
    tokens, branches = decoder.take_forced(), []
    while not decoder.done:
        allowed = decoder.allowed()
        branches.append(sorted(PIECES[t].decode() for t in allowed))
        ranked = sorted(
            allowed, key=lambda t: prefer.index(PIECES[t].decode()) if PIECES[t].decode() in prefer else 99
        )
        decoder.accept(ranked[0])
        tokens += [ranked[0], *decoder.take_forced()]
    return b"".join(PIECES[t] for t in tokens).decode(), branches


def test_a_schema_of_enums_has_a_plan_in_its_own_property_order() -> None:
    plan = choice_plan(ARGS)
    assert plan is not None
    assert plan.properties == (('"stat"', ('"sum"', '"std"')), ('"year"', ("2014", "2015")), ('"n"', ("1",)))
    # A gap not spaced yet is written both ways; one spaced keeps its way. Each ends in "," or "}".
    assert [text for text, _ in plan.step(0, {})] == [
        *(b'{"stat":"sum",', b'{"stat":"std",', b'{"stat": "sum",', b'{"stat": "std",'),
        *(b'{ "stat":"sum",', b'{ "stat":"std",', b'{ "stat": "sum",', b'{ "stat": "std",'),
    ]
    assert plan.step(1, {"open": "", "colon": " ", "comma": ""}) == [
        (b'"year": 2014,', {"comma": "", "colon": " "}),
        (b'"year": 2015,', {"comma": "", "colon": " "}),
    ]
    assert plan.step(2, {"colon": " ", "comma": " "}) == [(b' "n": 1}', {"comma": " ", "colon": " "})]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        {**TOOL, "required": []},  # the property may be left out
        {**TOOL, "additionalProperties": True},
        {**TOOL, "anyOf": [{"required": ["tool"]}]},  # a constraint the plan would not keep
        {**TOOL, "properties": {"tool": {"enum": ["a"], "maxLength": 3}}},
        {**TOOL, "properties": {"tool": {"enum": [["a"]]}}},  # not a scalar
        {**TOOL, "properties": {"tool": {"enum": []}}},
        {"type": "array", "items": TOOL},
    ],
)
def test_a_schema_that_allows_more_than_fixed_options_has_no_plan(schema: dict[str, Any]) -> None:
    assert choice_plan(schema) is None


def test_the_model_is_asked_only_where_the_options_or_the_spacing_differ() -> None:
    text, branches = walk(TOOL, ["python", "data", '{"', '":', ' "'])
    assert text == '{"tool": "python"}'
    # The gap after "{", then the colon and its gap (the key's tokens are forced), then the first
    # token that tells the options apart; the rest of "python" is forced.
    assert branches == [
        ["{", '{"'],
        ['"', '":', '":"'],
        [" ", ' "', '"'],
        ["d", "data", "final", "p", "python"],
    ]


def test_a_reply_keeps_the_spacing_it_chose_first() -> None:
    text, branches = walk(ARGS, ["std", "5", "{", ' "', '":"', '","'])
    assert text == '{ "stat":"std","year":2015,"n":1}'
    # The colon's gap is chosen at the first property only; the comma's at the second; the third
    # property has one option and is forced whole.
    assert branches == [
        ["{", '{"'],
        [" ", ' "', '"'],  # "{" was chosen: the key's quote follows, with or without a space
        ['"', '":', '":"'],
        ["s", "st", "std", "sum"],
        ['"', '",', '","'],
        ["4", "5"],
    ]


def test_a_token_that_splits_an_option_leaves_the_options_it_continues_open() -> None:
    text, branches = walk(ARGS, ["s", "t", "4", '{"', '":"', '","'])
    assert json.loads(text) == {"stat": "std", "year": 2014, "n": 1}
    assert ["s", "st", "std", "sum"] in branches and ["t", "td", "um"] in branches


def test_a_token_that_continues_no_option_is_refused() -> None:
    decoder = decoder_of(TOOL)
    with pytest.raises(ValueError, match="continues none of the options"):
        decoder.accept(PIECES.index(b"sum"))


def test_a_single_option_leaves_the_model_only_the_spacing() -> None:
    text, branches = walk({**TOOL, "properties": {"tool": {"const": "python"}}}, ['{"', '":"'])
    assert text == '{"tool":"python"}'
    assert branches == [["{", '{"'], ['"', '":', '":"']]
