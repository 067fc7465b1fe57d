"""Scorers written elsewhere: a Python function (``custom``); a model grading with a rubric (``judged``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from pydantic import Field

from shopfloor.agent import import_source
from shopfloor.errors import ConfigError
from shopfloor.evals._scorer import Case, Metric, ScoreOptions, Scorer, ScorerEnv
from shopfloor.models import Message, ModelRequest, resolve_model
from shopfloor.telemetry import redact

__all__ = ["CustomScorer", "JudgedScorer", "judge_prompt"]


class CustomOptions(ScoreOptions):
    #: ``FILE.py:NAME`` (relative to the suite) or ``MODULE:NAME``, as an agent's tools are named
    function: str
    #: keyword arguments passed to the function after the case
    args: dict[str, Any] = Field(default_factory=dict)


class CustomScorer(Scorer):
    """``function(case, **args)`` returns a bool, a number in [0, 1], or a mapping of sub-metric to
    either (or None: not measured for this item, left out of the means); it may be async."""

    Options = CustomOptions

    def __init__(self, type_name: str, options: ScoreOptions, env: ScorerEnv) -> None:
        super().__init__(type_name, options, env)
        assert isinstance(options, CustomOptions)
        function = import_source(options.function, env.base_dir)
        if not callable(function):
            raise ConfigError(f"custom scorer {options.function!r} is not callable")
        self.function: Callable[..., Any] = function

    async def score(self, case: Case) -> list[Metric]:
        assert isinstance(self.options, CustomOptions)
        result = self.function(case, **self.options.args)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, dict):
            return [self._one(value, str(sub)) for sub, value in result.items()]
        return [self._one(result, "")]

    def _one(self, value: Any, sub: str) -> Metric:
        if value is None:
            return self.metric(None, None, sub)
        if isinstance(value, bool):
            return self.metric(float(value), value, sub)
        if isinstance(value, int | float):
            return self.metric(float(value), None, sub)
        raise TypeError(
            f"custom scorer {self.name} returned {type(value).__name__}; expected a bool or a number"
        )


class JudgedOptions(ScoreOptions):
    #: the judge: any model reference (``local:...``, ``openai:...``, ``test``)
    model: str
    rubric: str = Field(min_length=1)
    #: the judge scores 1..scale; the metric is (score - 1) / (scale - 1)
    scale: int = Field(5, ge=2, le=100)
    #: the normalised score at or above which an item passes
    threshold: float = Field(0.5, ge=0, le=1)
    #: another metric whose pass/fail the judge's is compared with (agreement in the results)
    agree_with: str | None = None


_SCORE = re.compile(r"SCORE\s*[:=]\s*(\d+)", re.IGNORECASE)
#: answers longer than this are cut in the judge's prompt
MAX_JUDGED_CHARS = 8_000


def judge_prompt(options: JudgedOptions, case: Case) -> str:
    expected = case.item.expected if case.item.expected is not None else case.item.reference
    parts = [
        f"Grade an AI agent's answer with this rubric:\n{options.rubric}",
        f"Task:\n{case.item.input[:MAX_JUDGED_CHARS]}",
    ]
    if expected is not None:
        parts.append(f"Reference answer:\n{str(expected)[:MAX_JUDGED_CHARS]}")
    parts.append(f"Agent's answer:\n{(case.output or '(no answer)')[:MAX_JUDGED_CHARS]}")
    parts.append(f"Reply with one line: SCORE: N, where N is 1 (worst) to {options.scale} (best).")
    return "\n\n".join(parts)


class JudgedScorer(Scorer):
    """A model grades the answer with a rubric; its prompt, reply and score are recorded, and an
    evaluation scored again reuses the recorded reply to the same prompt."""

    Options = JudgedOptions

    async def score(self, case: Case) -> list[Metric]:
        opts = self.options
        assert isinstance(opts, JudgedOptions)
        prompt = judge_prompt(opts, case)
        recorded = case.recorded.get(self.name) or {}
        reply = recorded.get("reply") if recorded.get("prompt") == prompt else None
        if reply is None:
            model = resolve_model(opts.model, self.env.settings, self.env.models)
            try:
                response = await model.request(
                    ModelRequest(messages=(Message(role="user", content=prompt),), temperature=0.0)
                )
            finally:
                await model.aclose()
            reply = redact(response.text)  # kept in the eval's items and a canary's grades
        matches = _SCORE.findall(reply)
        if not matches:
            raise ValueError(f"the judge's reply has no 'SCORE: N': {reply[:200]!r}")
        raw = min(max(int(matches[-1]), 1), opts.scale)
        value = (raw - 1) / (opts.scale - 1)
        detail = {
            "prompt": prompt,
            "reply": reply,
            "score": raw,
            "judge": opts.model,
            "agree_with": opts.agree_with,
        }
        return [Metric(name=self.name, value=value, passed=value >= opts.threshold, detail=detail)]
