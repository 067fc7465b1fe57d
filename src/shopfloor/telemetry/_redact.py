"""Secret redaction: the one function every path that stores or exports text goes through.

Patterns cover the secrets that end up in agent traffic: provider API keys (OpenAI
``sk-``/``sk-proj-``, Stripe ``sk_live_``/``rk_live_``/``pk_live_``, Hugging Face ``hf_``,
GitHub, GitLab, Slack, AWS, Google), bearer tokens, JWTs, private key blocks, the values of
fields named like a password or token (in JSON, ``key=value`` and headers) and the password
of a URL (``scheme://user:password@host``).

Where it applies: spans (attributes, events, status) on their way to the trace store and
every exporter (``_outbound.py``); run events, run errors and step outputs before they are
written (``redact_value``); JSON log lines; errors printed by the CLI. What a model or a
tool produced is therefore recorded redacted, and a recorded step replays redacted.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from shopfloor._json import COMPACT, JsonText

__all__ = [
    "REDACTED",
    "may_hold_secret",
    "redact",
    "redact_exception",
    "redact_json",
    "redact_value",
    "register_secret",
]

REDACTED = "[REDACTED]"

_KEYWORD = (
    r"(?:password|passwd|pwd|secret|(?<!first_)token(?!s)|api[_-]?key|access[_-]?key|private[_-]?key|credential"
    r"|authorization)"
)
_SECRET_NAME = rf"{_KEYWORD}[A-Za-z0-9_.-]*"
# Case-insensitive search is ten times slower in ``re``: a cheap screen on the lowered text
# (and the case-sensitive token shapes) lets the common text without secrets skip the patterns.
_SCREEN_LOWER = re.compile(rf"{_KEYWORD}|bearer|basic")
#: fixed strings at least one of which is in every match of ``_SCREEN_LOWER``: a text holding none skips
#: that search (a substring test is in C and ~4x cheaper than the alternation on a span's text)
_SCREEN_WORDS = (
    "passw",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "accesskey",
    "access_key",
    "access-key",
    "privatekey",
    "private_key",
    "private-key",
    "credential",
    "authorization",
    "bearer",
    "basic",
)


def _keyword_in(text: str) -> bool:
    """``_SCREEN_LOWER`` finds a match in ``text.lower()``."""
    lowered = text.lower()
    # A loop, not ``any()`` over a generator: each of the generator's steps was a Python call (~115
    # an agent iteration, 8% of its calls), and on a short event's text (70 characters) the loop
    # takes 1.5 us where ``any()`` took 2.5 (min of 5x20,000).
    for word in _SCREEN_WORDS:
        if word in lowered:
            return _SCREEN_LOWER.search(lowered) is not None
    return False


_SCREEN = re.compile(
    r"eyJ|[spr]k[-_]|hf_|gh[pousr]_|github_pat|glpat|xox|AKIA|ASIA|AIza|PRIVATE KEY|://[^\s/]*@"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        # a whole block, or a block cut short (an error message that quotes the start of a file)
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    # "password": "value" in JSON (the value may contain escaped quotes)
    (re.compile(rf'({_SECRET_NAME}"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.IGNORECASE), rf"\1{REDACTED}\3"),
    # password=value, token: value (query strings, env files, headers)
    (
        re.compile(rf"({_SECRET_NAME}\s*[=:]\s*)(?![\"\[]|Bearer|Basic)([^\s&,;]+)", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), REDACTED),
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"), REDACTED),
    # Stripe live and test keys (sk_live_, rk_live_, pk_live_, sk_test_...)
    (re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"), REDACTED),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat|glpat|xox[abprs])[-_][A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), REDACTED),
    # URL credentials: the password up to the last @ before the host (a password may hold @)
    (re.compile(r"(://[^/\s:@]+:)([^\s/]+)(@)"), rf"\1{REDACTED}\3"),
)


class _KnownValues:
    """The values of the secrets this process has revealed (``secret:NAME`` references resolved for a
    run), redacted by value wherever they appear, whatever their shape.

    One per process, like the patterns above: ``redact`` is called on every path that stores or
    exports text, far from the run that revealed the secret, with nothing but the text."""

    #: shorter values would redact ordinary words
    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()
        #: each value as it reads inside a JSON string (``_screen_json``)
        self.in_json: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        if len(value) < self.MIN_LENGTH or value in self.values:
            return
        with self._lock:
            # longest first: a value that contains another is replaced whole
            self.values = tuple(sorted({*self.values, value}, key=len, reverse=True))
            self.in_json = tuple(_JSON.encode(known)[1:-1] for known in self.values)


#: how ``redact_value`` screens a whole value at once: JSON with every character as it is (an
#: object JSON cannot write stands as null: ``redact_value`` leaves such leaves alone too)
_JSON = JsonText(ensure_ascii=False, separators=(",", ":"), default=lambda _: None)
_KNOWN = _KnownValues()


def register_secret(value: str) -> None:
    """Redact ``value`` by value from now on, in this process (a secret revealed for a run)."""
    _KNOWN.add(value)


def may_hold_secret(text: str) -> bool:
    """The cheap screen: False means ``redact(text)`` would return ``text`` unchanged.

    A text holding a character that ``IGNORECASE`` (the patterns) reads as an ASCII letter while
    lowering gives none (``_FOLDS_TO_ASCII``: ``pa\\u017fsword=...``) always goes on to the patterns."""
    return bool(
        _SCREEN.search(text)
        or _keyword_in(text)
        or (not text.isascii() and _FOLDS_TO_ASCII.search(text))
        or (_KNOWN.values and any(value in text for value in _KNOWN.values))
    )


def redact(text: str) -> str:
    """``text`` with every secret it recognises, or knows by value, replaced by ``[REDACTED]``."""
    if not may_hold_secret(text):
        return text
    for value in _KNOWN.values:
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# ``$``, not ``\Z``: it also matches before a final newline, so a key such as "password\n" is redacted too.
_SECRET_KEY = re.compile(rf"{_SECRET_NAME}$", re.IGNORECASE)


def redact_value(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with secrets redacted; the value of a key
    named like a secret (``password``, ``api_key``...) is replaced whole. Always a copy of its
    containers (dicts as dicts, lists and tuples as lists), whether anything was redacted or not.

    A container is first screened whole, as one JSON text: where that holds no candidate secret,
    none of its strings or keys does either, and it is copied without looking at each (a step's
    output, an event: a dozen strings, each screened on its own before)."""
    if type(value) is not dict:  # a plain dict (an event's data, a step's output) needs no ``isinstance``
        if isinstance(value, str):
            return redact(value)
        if not isinstance(value, dict | list | tuple):
            return _redact_each(value)
    if _screen_json(value):
        return _copy(value)
    return _redact_each(value)


def _screen_json(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> bool:
    """True where ``_redact_each(value)`` would redact nothing.

    Each string of ``value`` is in its JSON text with only ``"``, ``\\`` and control characters
    escaped (``ensure_ascii=False``), each escape made of a backslash, letters and hex digits: a
    screen pattern that finds a string (its letters, digits, ``_``, ``-``, spaces, a URL's
    ``://...@`` run of non-space characters) finds it in the text, its neighbours in the text being
    what they were or an escape or a quote (``token(?!s)`` and ``(?<!first_)`` see no new ``s`` or
    ``first_``); a key named like a secret holds a screen keyword; a known secret's value is there
    as it is escaped. Not where the text holds one of the three characters that ``IGNORECASE`` (the
    key check) takes for an ASCII letter while lowering them gives none (``_FOLDS_TO_ASCII``: the long
    s, U+017F, matches ``s`` ignoring case, yet lowers to itself). A value JSON cannot write (a key
    that is not a string or number, a cycle) is never screened whole."""
    try:
        text = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return (text.isascii() or _FOLDS_TO_ASCII.search(text) is None) and _screened(text)


def _screened(text: str) -> bool:
    """A value's JSON text (``_screen_json``) holds no candidate secret: no token shape, no keyword, no
    known secret's value (as it reads in JSON)."""
    return (
        _SCREEN.search(text) is None
        and not _keyword_in(text)
        and not (_KNOWN.in_json and any(known in text for known in _KNOWN.in_json))
    )


def redact_json(value: Any) -> tuple[Any, str]:
    """``redact_value(value)`` and the JSON text ``COMPACT`` writes of it (an event's stored data, a
    step's output on its span), encoded once where nothing is redacted: the screen reads ``COMPACT``'s
    own text. That text escapes every character outside ASCII (``\\uXXXX``), which the screen's patterns
    and ``IGNORECASE`` could read otherwise than in the string (``_screen_json``): a text holding an
    escape of that kind goes the way of ``redact_value``, and is encoded again from its copy. Where the
    text holds none, it is ``_screen_json``'s text but for what JSON cannot write (there ``str`` of it,
    not null: the screen sees more, never less, of every string and key)."""
    if type(value) is dict:
        try:
            text = COMPACT.encode(value)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if "\\u" not in text and _screened(text):
                return _copy(value), text  # its text is the copy's: dicts as dicts, sequences as lists
    copied = redact_value(value)
    return copied, COMPACT.encode(copied)


#: the characters outside ASCII that ``re.IGNORECASE`` matches to ``[A-Za-z0-9_.-]`` (every code point
#: checked) but ``str.lower`` does not turn into that letter: capital I with a dot (it lowers to i and a
#: combining dot), dotless i and the long s (the fourth, the Kelvin sign, lowers to k)
_FOLDS_TO_ASCII = re.compile("[\u0130\u0131\u017f]")


def _copy(value: Any) -> Any:
    """The containers ``_redact_each`` would have built, with nothing in them redacted.

    A plain dict, a list and a tuple are copied in C (``dict``, ``list``) and only their containers
    replaced: one Python call a container, where a comprehension over ``items()`` was four."""
    if type(value) is dict:
        copied = dict(value)
        for key in copied:
            item = copied[key]
            if type(item) not in _LEAVES:
                copied[key] = _copy(item)
        return copied
    if isinstance(value, dict):  # a subclass: read through its own ``items``
        return {key: item if type(item) in _LEAVES else _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = list(value)
        for index, item in enumerate(items):
            if type(item) not in _LEAVES:
                items[index] = _copy(item)
        return items
    return value


#: what ``_copy`` keeps as it is without a look (a subclass of one is looked at: a dict's is copied)
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _redact_each(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and isinstance(item, str) and _SECRET_KEY.match(key)
            else _redact_each(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_each(item) for item in value]
    return value


def redact_exception(exc: BaseException) -> None:
    """Redact ``exc``'s arguments in place (what DBOS records of an exception it sees raised)."""
    exc.args = tuple(redact_value(list(exc.args)))
