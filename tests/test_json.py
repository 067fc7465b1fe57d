"""``JsonText`` writes what ``json.JSONEncoder(...).encode`` writes, and raises what it raises, on
hostile values: every JSON type nested, strings JSON escapes, non-string keys, floats JSON has no
text for, objects only ``default`` can write, cycles and values that fail half-way."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopfloor._json import JsonText


class Colour(enum.IntEnum):
    RED = 1


class Weird(float):
    def __repr__(self) -> str:
        return "weird"


class Opaque:
    def __str__(self) -> str:
        return 'opaque "\u2603"'


def _nothing(value: Any) -> None:
    return None


#: (ensure_ascii, separators, default): each encoder the hot path writes with, and the defaults
OPTIONS: list[tuple[bool, tuple[str, str] | None, Callable[[Any], Any] | None]] = [
    (True, None, None),
    (True, None, str),
    (True, (",", ":"), str),
    (False, (",", ":"), None),
    (False, (",", ":"), _nothing),
]

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),  # surrogates, controls too
    st.sampled_from([Colour.RED, Weird(1.5), Opaque(), b"bytes", {1, 2}, 1 + 2j]),
)
KEYS = st.one_of(
    st.text(max_size=6),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.sampled_from([(1, 2), Colour.RED]),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=20,
)


def _outcome(encode: Callable[[Any], str], value: Any) -> tuple[str, str]:
    try:
        return "text", encode(value)
    except Exception as exc:  # the same exception, type and message, is the point
        return type(exc).__name__, str(exc)


@settings(max_examples=400)
@given(value=VALUES, option=st.sampled_from(OPTIONS))
def test_the_encoders_text_and_errors(value: Any, option: tuple[Any, ...]) -> None:
    ensure_ascii, separators, default = option
    ours = JsonText(ensure_ascii=ensure_ascii, separators=separators, default=default)
    stock = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=separators, default=default)
    assert _outcome(ours.encode, value) == _outcome(stock.encode, value)


def test_a_cycle_is_refused_as_the_encoder_refuses_it_and_leaves_no_mark() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    ours = JsonText()
    with pytest.raises(ValueError, match="Circular reference detected"):
        ours.encode({"a": loop})
    # A value that failed half-way left its containers marked in that call's markers only: the same
    # objects written again (or others at their addresses) are not taken for a cycle.
    inner = [1, 2]
    bad = {"ok": inner, "bad": Opaque()}
    with pytest.raises(TypeError):
        ours.encode(bad)
    assert ours.encode({"ok": inner}) == '{"ok": [1, 2]}'


def test_top_level_strings_and_non_finite_floats() -> None:
    for ensure_ascii in (True, False):
        ours = JsonText(ensure_ascii=ensure_ascii)
        stock = json.JSONEncoder(ensure_ascii=ensure_ascii)
        for value in ["", '\u2603\n"\\', "\ud800", math.nan, -math.inf, Weird(2.0), Colour.RED]:
            assert ours.encode(value) == stock.encode(value)
