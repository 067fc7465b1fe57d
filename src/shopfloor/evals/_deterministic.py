"""Deterministic scorers: the same answer always gets the same score, and no model is called."""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from typing import Any

from pydantic import Field

from shopfloor.errors import ShopfloorError
from shopfloor.evals._scorer import Case, Metric, ScoreOptions, Scorer, ScorerEnv
from shopfloor.workspace import compile_linear

__all__ = [
    "ContainsScorer",
    "EntityScorer",
    "ExactScorer",
    "JsonFieldsScorer",
    "NormalisedScorer",
    "NumericScorer",
    "RegexScorer",
    "TokenF1Scorer",
    "normalise",
    "numbers_in",
]

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
#: answers longer than this are scored on their first characters only (bounded time per item)
MAX_ANSWER_CHARS = 200_000
#: where in an answer a JSON object is looked for
MAX_JSON_STARTS = 16


def _answer(case: Case) -> str:
    return (case.output or "")[:MAX_ANSWER_CHARS]


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation or articles, single spaces (SQuAD's normalisation)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def numbers_in(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class ExactScorer(Scorer):
    """The answer, stripped, equals the expected text."""

    async def score(self, case: Case) -> list[Metric]:
        expected = [str(v) for v in _as_list(self.expected(case))]
        ok = _answer(case).strip() in expected
        return [self.metric(1.0 if ok else 0.0, ok)]


class NormalisedScorer(Scorer):
    """Equal after normalisation (case, accents, punctuation, articles, spaces)."""

    async def score(self, case: Case) -> list[Metric]:
        answer = normalise(_answer(case))
        ok = any(answer == normalise(str(v)) for v in _as_list(self.expected(case)))
        return [self.metric(1.0 if ok else 0.0, ok)]


class NumericOptions(ScoreOptions):
    tolerance: float = Field(0.0, ge=0, description="absolute tolerance")
    relative: float = Field(0.0, ge=0, description="relative tolerance (0.01 is 1%)")


class NumericScorer(Scorer):
    """A number in the answer is within the tolerance of the expected number."""

    Options = NumericOptions

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, NumericOptions)
        raw = self.expected(case)
        try:
            target = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected {raw!r} is not a number") from None
        allowed = max(self.options.tolerance, self.options.relative * abs(target))
        found = numbers_in(_answer(case))
        errors = [abs(n - target) for n in found if math.isfinite(n)]
        best = min(errors, default=None)
        ok = best is not None and best <= allowed
        return [self.metric(1.0 if ok else 0.0, ok, expected=target, closest_error=best)]


class ContainsOptions(ScoreOptions):
    ignore_case: bool = True


class ContainsScorer(Scorer):
    """Every expected text (one or a list) appears in the answer."""

    Options = ContainsOptions

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, ContainsOptions)
        fold = str.lower if self.options.ignore_case else str
        answer = fold(_answer(case))
        missing = [str(v) for v in _as_list(self.expected(case)) if fold(str(v)) not in answer]
        return [self.metric(0.0 if missing else 1.0, not missing, missing=missing)]


class RegexOptions(ScoreOptions):
    pattern: str | None = Field(None, description="RE2 pattern (default: the expected value)")
    ignore_case: bool = False


class RegexScorer(Scorer):
    """The answer matches a pattern (RE2: linear time, whatever the pattern or the answer)."""

    Options = RegexOptions

    def __init__(self, type_name: str, options: ScoreOptions, env: ScorerEnv) -> None:
        super().__init__(type_name, options, env)
        assert isinstance(options, RegexOptions)
        self.pattern = (
            compile_linear(options.pattern, ignore_case=options.ignore_case) if options.pattern else None
        )

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, RegexOptions)
        pattern = self.pattern
        if pattern is None:
            try:
                pattern = compile_linear(str(self.expected(case)), ignore_case=self.options.ignore_case)
            except ShopfloorError as exc:
                raise ValueError(str(exc)) from None
        ok = pattern.search(_answer(case))
        return [self.metric(1.0 if ok else 0.0, ok)]


class JsonFieldsOptions(ScoreOptions):
    fields: list[str] | None = Field(None, description="keys to compare (default: every expected key)")


def _json_in(text: str) -> Any:
    """The answer as JSON, or the first JSON object in it (tried at the first few ``{`` only, so an
    answer full of braces costs linear time, not quadratic)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.find("{")
        for _ in range(MAX_JSON_STARTS):
            if start == -1:
                break
            try:
                value, _ = json.JSONDecoder().raw_decode(text, start)
                return value
            except json.JSONDecodeError:
                start = text.find("{", start + 1)
    return None


class JsonFieldsScorer(Scorer):
    """The answer's JSON has the expected value at each field; the score is the share that match."""

    Options = JsonFieldsOptions

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, JsonFieldsOptions)
        expected = self.expected(case)
        if not isinstance(expected, dict):
            raise ValueError("the json scorer needs an expected mapping")
        keys = self.options.fields or sorted(expected)
        got = _json_in(_answer(case))
        if not isinstance(got, dict):
            return [self.metric(0.0, False, reason="the answer holds no JSON object")]
        wrong = [key for key in keys if key not in got or got[key] != expected.get(key)]
        share = 1.0 - len(wrong) / len(keys) if keys else 1.0
        return [self.metric(share, not wrong, wrong=wrong)]


class TokenF1Options(ScoreOptions):
    threshold: float = Field(0.5, ge=0, le=1, description="F1 at or above which an item passes")


class TokenF1Scorer(Scorer):
    """Token-level F1 of the normalised answer against the best of the expected texts."""

    Options = TokenF1Options

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, TokenF1Options)
        answer = normalise(_answer(case)).split()
        best = max(
            (_f1(answer, normalise(str(v)).split()) for v in _as_list(self.expected(case))), default=0.0
        )
        return [self.metric(best, best >= self.options.threshold)]


def _f1(answer: list[str], truth: list[str]) -> float:
    common = sum((Counter(answer) & Counter(truth)).values())
    if not answer or not truth or not common:
        return float(answer == truth)
    precision, recall = common / len(answer), common / len(truth)
    return 2 * precision * recall / (precision + recall)


class EntityOptions(ScoreOptions):
    aliases: dict[str, list[str]] = Field(default_factory=dict, description="other names of an entity")


class EntityScorer(Scorer):
    """The expected entity (a group, a name) is named in the answer as a whole word, or one of its aliases."""

    Options = EntityOptions

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, EntityOptions)
        words = f" {normalise(_answer(case))} "
        missing = []
        for entity in _as_list(self.expected(case)):
            names = [str(entity), *self.options.aliases.get(str(entity), [])]
            if not any(f" {normalise(name)} " in words for name in names if normalise(name)):
                missing.append(str(entity))
        return [self.metric(0.0 if missing else 1.0, not missing, missing=missing)]
