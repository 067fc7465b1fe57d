"""``redact_value``'s whole-value screen: it copies a clean value, and redacts exactly what the
string-by-string walk redacts, on values built to sit at the edges of the screen."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopfloor._json import COMPACT
from shopfloor.telemetry import REDACTED, redact, redact_json, redact_value, register_secret
from shopfloor.telemetry._redact import _SCREEN_LOWER, _keyword_in, _redact_each, may_hold_secret

#: a known secret that JSON escapes (a quote, a backslash, a control character)
KNOWN = 'zq"uo\\te\tv4lue-42'

PIECES = [
    "plain text",
    "17*23",
    "token",
    "tokens",
    "first_token",
    'token"s',
    "token\\s",
    "pa\u017fsword",  # matches "password" ignoring case, yet lowers to itself
    "Kelvin \u212aey",
    "api_key",
    "x-api-key: abc123",
    "Bearer abcdefgh12345",
    "basic",
    "sk-abcdefghijklmnop1234",
    "sk_live_51HxAbCdEfGh12345",
    'https://user:p"w@host/v1',
    "https://user:p\nw@host/v1",
    "://a\u0001b@",
    "eyJhbGciOi.eyJzdWIiOi.sig",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB",
    "\u0130 dotted",
    "s\u0131gn",
    "ap\u0130_key=abc",
    "ünïcödé",
    KNOWN,
    f"prefix {KNOWN} suffix",
    "",
]
KEYS = [
    "note",
    "password",
    "Api_Key\n",
    "token_count",
    "first_token",
    "pa\u017fsword",
    "Secret",
    "\u212aey",
    "ap\u0130_key",
    "ap\u0131_key",
    "tokens",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice([*PIECES, 3, 2.5, None, True, float("nan"), object()])
    if roll < 0.75:
        return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    items = [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return tuple(items) if rng.random() < 0.3 else items


@pytest.fixture(autouse=True)
def known_secret() -> None:
    register_secret(KNOWN)


@pytest.mark.parametrize("seed", range(40))
def test_the_whole_value_screen_redacts_what_the_walk_redacts(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        value = {rng.choice(KEYS): _value(rng) for _ in range(3)}
        assert redact_value(value) == _redact_each(value)
        listed = [_value(rng), _value(rng)]
        assert redact_value(listed) == _redact_each(listed)


class _Ordered(dict[Any, Any]):
    """A dict subclass whose ``items`` is its own: read through it, copied as a plain dict."""

    def items(self) -> Any:
        return reversed(list(super().items()))


def _shape(value: Any) -> Any:
    """``value`` with each container's exact type and its keys in order."""
    if isinstance(value, dict):
        return (type(value), [(key, _shape(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value), [_shape(item) for item in value])
    return (type(value), value)


def _containers(value: Any) -> set[int]:
    """The ids of ``value``'s containers, itself among them."""
    if isinstance(value, dict):
        return {id(value)}.union(*(_containers(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return {id(value)}.union(*(_containers(item) for item in value))
    return set()


def _clean_value(rng: random.Random, clean: list[str], depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice([*clean, 3, 2.5, None, True])
    size = rng.randrange(4)
    if roll < 0.6:
        return {f"k{i}": _clean_value(rng, clean, depth + 1) for i in range(size)}
    if roll < 0.7:
        return _Ordered({f"o{i}": _clean_value(rng, clean, depth + 1) for i in range(size)})
    items = [_clean_value(rng, clean, depth + 1) for _ in range(size)]
    return tuple(items) if rng.random() < 0.3 else items


@pytest.mark.parametrize("seed", range(20))
def test_a_clean_copy_is_built_as_the_walk_builds_it(seed: int) -> None:
    """The same containers (types, key order) as ``_redact_each`` builds, none of them shared with
    the value: plain dicts, lists, tuples (as lists) and dict subclasses (as dicts, read through
    their own ``items``)."""
    rng = random.Random(seed)
    clean = [piece for piece in PIECES if not may_hold_secret(piece) and KNOWN not in piece]
    for _ in range(50):
        value = {"top": _clean_value(rng, clean)}
        copied = redact_value(value)
        assert _shape(copied) == _shape(_redact_each(value))
        assert not _containers(copied) & _containers(value)


def test_a_clean_value_comes_back_as_a_copy_with_tuples_as_lists() -> None:
    value = {"args": ("a", {"n": 1}), "text": "17*23", "usage": {"input_tokens": 3}}
    copied = redact_value(value)
    assert copied == {"args": ["a", {"n": 1}], "text": "17*23", "usage": {"input_tokens": 3}}
    assert copied is not value and copied["usage"] is not value["usage"]
    assert copied["args"][1] is not value["args"][1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"pa\u017fsword": "hunter2"}, {"pa\u017fsword": REDACTED}),  # the long s: screened string by string
        (
            {"s\u00e9same": "caf\u00e9 \u2615"},
            {"s\u00e9same": "caf\u00e9 \u2615"},
        ),  # other text: screened whole
        ({"note": f"x {KNOWN} y"}, {"note": f"x {REDACTED} y"}),  # the known value, escaped in JSON
        ({1: {"password": "p"}}, {1: {"password": REDACTED}}),  # a number key
        ({(1, 2): {"password": "p"}}, {(1, 2): {"password": REDACTED}}),  # a key JSON cannot write
        ([{"token": "t"}, ("x",)], [{"token": REDACTED}, ["x"]]),
    ],
)
def test_values_at_the_edges_of_the_screen(value: Any, expected: Any) -> None:
    assert redact_value(value) == expected


@pytest.mark.parametrize(
    "text",
    ["pa\u017fsword=hunter2222", "ap\u0130_key: hunter2222", "TOKEN=hunter2222 ap\u0131_key=hunter2222"],
)
def test_redact_finds_a_secret_key_spelled_with_a_character_ignorecase_folds_to_ascii(text: str) -> None:
    """The screen before the patterns lowered the text, and lowering keeps the long s (and the two
    Turkish i) where the patterns' IGNORECASE reads an ASCII letter: redact returned it unchanged."""
    assert may_hold_secret(text)
    assert "hunter2222" not in redact(text)


@given(
    st.lists(
        st.sampled_from(
            [
                "password",
                "PassWD",
                "pwd",
                "secret",
                "first_token",
                "tokens",
                "token",
                "API-key",
                "api_key",
                "apikey",
                "access-key",
                "AccessKey",
                "private_key",
                "credential",
                "Authorization",
                "bearer",
                "Basic",
                "pass",
                "key",
                "api",
                "to",
                "ken",
                "\u017f",
                "\u0130",
                " ",
                "_",
                "-",
                "x",
            ]
        ),
        max_size=8,
    ).map("".join)
)
def test_the_keyword_screens_fixed_strings_never_skip_a_match_of_its_pattern(text: str) -> None:
    assert _keyword_in(text) == (_SCREEN_LOWER.search(text.lower()) is not None)


@pytest.mark.parametrize("seed", range(40))
def test_redact_json_is_the_walk_and_its_compact_text(seed: int) -> None:
    """``redact_json``: what the walk redacts (its screen reads ``COMPACT``'s own text, escapes and all),
    with the text ``COMPACT`` writes of that copy, whichever way it was reached."""
    rng = random.Random(seed)
    for _ in range(50):
        value = {rng.choice(KEYS): _value(rng) for _ in range(3)}
        walked = _redact_each(value)
        copied, text = redact_json(value)
        assert copied == walked and text == COMPACT.encode(walked)
        assert _shape(copied) == _shape(walked)


@pytest.mark.parametrize("seed", range(10))
def test_redact_json_of_a_clean_value_is_a_copy_and_its_text(seed: int) -> None:
    rng = random.Random(seed)
    clean = [piece for piece in PIECES if not may_hold_secret(piece) and KNOWN not in piece]
    for _ in range(50):
        value = {"top": _clean_value(rng, clean), "thing": object()}
        copied, text = redact_json(value)
        assert _shape(copied) == _shape(_redact_each(value)) and text == COMPACT.encode(copied)
        assert not _containers(copied) & _containers(value)


def test_redact_json_redacts_what_only_an_escape_hides_from_its_text() -> None:
    """Outside ASCII, ``COMPACT`` writes ``\\uXXXX``: a key that ``IGNORECASE`` reads as a secret's
    (the long s) and a known secret are found all the same."""
    copied, text = redact_json({"pa\u017fsword": "hunter22", "note": f"with {KNOWN} in it", "u": "ünï"})
    assert copied == {"pa\u017fsword": REDACTED, "note": f"with {REDACTED} in it", "u": "ünï"}
    assert text == COMPACT.encode(copied) and "hunter22" not in text


def test_redact_json_of_what_json_cannot_write_raises_as_encoding_the_copy_does() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises((ValueError, RecursionError)):
        redact_json(cycle)
