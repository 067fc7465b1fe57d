"""The research router: per question, the depth, the model route and the collections, each with its reason.

**Depth**: ``direct`` answers without retrieval a question that needs no documents (a greeting,
arithmetic; conservative: only what the rules recognise, or what the classifier calls direct and no
collection's words appear in); ``shallow`` is one retrieval pass; ``deep`` plans sub-questions researched
in parallel. **Model route**: ``easy`` for direct and shallow, ``hard`` for deep (each a model reference
of the research config, the run's model by default). **Collections**: where the connector has several,
those whose keywords or description the question names (all when none does).

``mode``: ``rules`` alone; ``model``: the classifier (the ``easy`` model under a JSON schema) decides
every question, the rules only where its reply is unusable; ``auto``: the rules first, the classifier
what they leave open. A deep route that the run's remaining budget (tokens, seconds) cannot fit is
degraded to shallow, and says so. Each decision is a ``research.route`` span with its reasons.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from shopfloor.connectors.docs._verify import content_words
from shopfloor.errors import ToolExecutionError
from shopfloor.telemetry import open_span
from shopfloor.tools import Ask, Budget, calculate

__all__ = [
    "Collection",
    "Depth",
    "ModelRoute",
    "Route",
    "Router",
    "RouterMode",
    "arithmetic",
    "deep_tokens_estimate",
    "direct_answer",
]

Depth = Literal["direct", "shallow", "deep"]
RouterMode = Literal["rules", "model", "auto"]
ModelRoute = Literal["easy", "hard"]

_DEEP_HINT = re.compile(
    r"\b(compare[sd]?|comparison|differen(?:ce|ces|t from)|versus|vs\.?|between|pros and cons|"
    r"trade-?offs?|both|and (?:how|why|what|when|which)|as well as)\b"
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|howdy|good (?:morning|afternoon|evening)|thanks|thank you|many thanks|"
    r"bye|goodbye|cheers)(?: there| all| everyone| so much| again)?[\s!.,:)]*\Z"
)
_ARITHMETIC = re.compile(
    r"^(?:what(?: is|'s)|how much is|compute|calculate|evaluate)?\s*"
    r"(?P<expr>[-+*/%().\d\s]*\d[-+*/%().\d\s]*?)\s*(?:=\s*)?\??\Z"
)
_WORD = re.compile(r"\w+")
#: the classifier's examples (none of them from the researcher's eval questions)
_EXAMPLES = (
    "Examples:\n"
    "- What does the with statement do? -> shallow\n"
    "- Which module reads CSV files? -> shallow\n"
    "- Why is a tuple immutable? -> shallow\n"
    "- How do you open a file, and how do you delete it afterwards? -> deep\n"
    "- Lists or tuples: which to use when? -> deep\n"
)
#: what a question about the documents may name: a dotted or called name, an identifier, a number
_CODE_LIKE = re.compile(r"\w[._]\w|\w\(|[a-z][A-Z]|\d")
#: the largest magnitude a direct answer's number may have (a sum, not a 300-digit power)
_MAX_NUMBER = 1e15


@dataclass(frozen=True, kw_only=True)
class Collection:
    """A collection the connector can search, as the router knows it."""

    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Route:
    """The router's decision for one question, each part with its reason."""

    depth: Depth
    reason: str
    #: "rules", "model" (the classifier) or "asked" (the caller chose the depth)
    by: str
    model: ModelRoute = "easy"
    #: the model reference of the route (None: the run's own model)
    model_ref: str | None = None
    #: the collections to search (empty: the connector's every collection)
    collections: tuple[str, ...] = ()
    collections_reason: str = ""
    #: why the depth chosen was lowered to fit the run's budget (None: it was not)
    degraded: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "reason": self.reason,
            "by": self.by,
            "model": self.model,
            "model_ref": self.model_ref,
            "collections": list(self.collections),
            "collections_reason": self.collections_reason,
            "degraded": self.degraded,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Route:
        """A route as ``to_json`` wrote it (a recorded proposal); parts absent take their defaults."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "collections" in known:
            known["collections"] = tuple(str(c) for c in known["collections"])
        return cls(**known)

    def attributes(self) -> dict[str, Any]:
        """The decision as span attributes (``shopfloor.research.route.*``)."""
        return {
            "shopfloor.research.route.depth": self.depth,
            "shopfloor.research.route.by": self.by,
            "shopfloor.research.route.reason": self.reason,
            "shopfloor.research.route.model": self.model,
            "shopfloor.research.route.model_ref": self.model_ref or "",
            "shopfloor.research.route.collections": list(self.collections),
            "shopfloor.research.route.collections_reason": self.collections_reason,
            "shopfloor.research.route.degraded": self.degraded or "",
        }


def deep_tokens_estimate(*, sub_questions: int, per_query: int, passage_chars: int) -> int:
    """The tokens a deep pass spends, about: the plan, then one writer per sub-question reading its
    passages (about 4 characters a token) and writing up to 400 tokens."""
    return 300 + sub_questions * (per_query * passage_chars // 4 + 500)


def arithmetic(question: str) -> str | None:
    """The value of a question that is plain arithmetic (``what is 12 * 7?``), or None when it is not
    one (no operator, a name, a number too large, division by zero)."""
    match = _ARITHMETIC.match(question.strip().lower())
    if match is None or not re.search(r"\d\s*[-+*/%]|[-+*/%]\s*[\d(]", match.group("expr")):
        return None
    try:
        value = calculate(match.group("expr").strip())
    except ToolExecutionError:
        return None
    if isinstance(value, complex) or not math.isfinite(value) or abs(value) > _MAX_NUMBER:
        return None
    return str(value) if isinstance(value, int) else f"{value:.12g}"


def _parse(reply: str) -> dict[str, Any] | None:
    try:
        data = json.loads(reply)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


async def direct_answer(question: str, route: Route, ask: Ask, *, collections: Sequence[str]) -> str:
    """The answer to a question routed direct: arithmetic computed, a greeting returned, anything else
    (the classifier's direct) answered by the route's model in a sentence or two."""
    value = arithmetic(question)
    if value is not None:
        return f"{value} (computed; no documents were needed)."
    if _GREETING.match(question.strip().lower()):
        searched = ", ".join(collections)
        return f"Hello! Ask me a question about the {searched} documents and I will answer it with citations."
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 400}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = _parse(
        await ask(
            f"Question: {question}\nAnswer it in one or two sentences.",
            schema=schema,
            system="You are a research assistant answering a question that needs no documents.",
            max_tokens=120,
        )
    )
    answer = reply.get("answer") if reply is not None else None
    if not isinstance(answer, str) or not answer.strip():
        return "I could not answer this without documents; ask it about the documents instead."
    return f"{answer.strip()} (answered without searching the documents: {route.reason})."


@dataclass(kw_only=True)
class _Decided:
    depth: Depth | None = None
    reason: str = ""
    by: str = "rules"
    collections: tuple[str, ...] | None = None
    collections_reason: str = ""
    notes: list[str] = field(default_factory=list)


class Router:
    """The depth, model route and collections of a question (module docstring); ``ask`` is the classifier
    (the ``easy`` model), needed by the ``model`` and ``auto`` modes."""

    def __init__(
        self,
        *,
        mode: RouterMode = "rules",
        ask: Ask | None = None,
        collections: Sequence[Collection] = (),
        direct: bool = True,
        easy: str | None = None,
        hard: str | None = None,
        long_question: int = 25,
        deep_tokens: int = 4_000,
        deep_seconds: float = 120.0,
    ) -> None:
        if mode != "rules" and ask is None:
            raise ValueError(f"the {mode!r} router classifies with a model: give it ``ask``")
        self.mode = mode
        self.ask = ask
        self.collections = tuple(collections)
        self.direct = direct
        self.models: dict[ModelRoute, str | None] = {"easy": easy, "hard": hard}
        #: a question of at least this many words is researched deep
        self.long_question = long_question
        #: what a deep pass is expected to cost; a run with less left is researched shallow
        self.deep_tokens = deep_tokens
        self.deep_seconds = deep_seconds

    async def route(self, question: str, *, budget: Budget | None = None) -> Route:
        """Decide ``question``'s route, fitted to ``budget`` (what the run has left)."""
        with open_span("research.route", {"shopfloor.research.router": self.mode}) as span:
            # A computed sum or a greeting is certain in every mode; the rest is the classifier's in model.
            decided = self._rules(question, deep=self.mode != "model")
            if self.mode != "rules" and (decided.depth is None or decided.collections is None):
                await self._classify(question, decided)
            if decided.depth is None:
                decided.depth, decided.reason = "shallow", "one thing asked: one retrieval pass"
            if decided.collections is None:
                decided.collections, decided.collections_reason = (), self._all_reason()
            route = self.fit(
                Route(
                    depth=decided.depth,
                    reason="; ".join([decided.reason, *decided.notes]),
                    by=decided.by,
                    collections=decided.collections,
                    collections_reason=decided.collections_reason,
                ),
                budget,
            )
            if span is not None:
                span.set_attributes(route.attributes())
            return route

    def fit(self, route: Route, budget: Budget | None) -> Route:
        """``route`` with its model route, its deep depth lowered to shallow where ``budget`` cannot fit
        a deep pass (the reason says what was short)."""
        short = self.deep_short(budget) if route.depth == "deep" else None
        if short is not None:
            route = replace(route, depth="shallow", degraded=f"{short}: researched shallow instead of deep")
        model: ModelRoute = "hard" if route.depth == "deep" else "easy"
        return replace(route, model=model, model_ref=self.models[model])

    def deep_short(self, budget: Budget | None) -> str | None:
        """What ``budget`` lacks for a deep pass (tokens or seconds), or None when it fits one."""
        if budget is None:
            return None
        if budget.tokens_left < self.deep_tokens:
            return (
                f"a deep pass needs about {self.deep_tokens} tokens and the run has {budget.tokens_left} left"
            )
        seconds = min(budget.seconds_left, budget.step_seconds)
        if seconds < self.deep_seconds:
            which = "run" if budget.seconds_left <= budget.step_seconds else "research step"
            return f"a deep pass needs about {self.deep_seconds:g} s and the {which} has {seconds:.0f} s left"
        return None

    def _all_reason(self) -> str:
        if len(self.collections) <= 1:
            return "the connector's only collection"
        return "no collection's keywords or description match the question: all searched"

    def _rules(self, question: str, *, deep: bool) -> _Decided:
        """The rules' direct (always) and deep (where ``deep``) decisions and collections, or None each."""
        decided = _Decided()
        lowered = question.strip().lower()
        if self.direct and arithmetic(question) is not None:
            decided.depth, decided.reason = "direct", "plain arithmetic: computed, no documents needed"
        elif self.direct and _GREETING.match(lowered):
            decided.depth, decided.reason = "direct", "a greeting: nothing to look up"
        if decided.depth == "direct" or not deep:
            if decided.depth == "direct" or len(self.collections) <= 1:
                decided.collections, decided.collections_reason = (), self._all_reason()
            return decided
        decided.collections, decided.collections_reason = self._collections_by_rules(question)
        if hint := _DEEP_HINT.search(lowered):
            decided.depth, decided.reason = "deep", f"it asks {hint.group(0)!r}: several things to research"
        elif question.count("?") > 1:
            decided.depth, decided.reason = "deep", "it asks several questions"
        elif (words := len(_WORD.findall(question))) >= self.long_question:
            decided.depth, decided.reason = "deep", f"a long question ({words} words)"
        return decided

    def _collections_by_rules(self, question: str) -> tuple[tuple[str, ...] | None, str]:
        """The collections the question names by keyword or description words, best first; None when
        there is a choice and no collection matches (left to the classifier, or all)."""
        if len(self.collections) <= 1:
            return (), self._all_reason()
        lowered = question.lower()
        asked = content_words(question)
        scored: list[tuple[int, str, str]] = []
        for collection in self.collections:
            keys = [
                k for k in collection.keywords if re.search(rf"(?<!\w){re.escape(k.lower())}(?!\w)", lowered)
            ]
            described = sorted(asked & content_words(collection.description))
            score = 2 * len(keys) + len(described)
            if score:
                why = ", ".join(
                    [*(f"keyword {k!r}" for k in keys), *(f"{w!r} in its description" for w in described)]
                )
                scored.append((score, collection.name, why))
        if not scored:
            return None, self._all_reason()
        scored.sort(key=lambda item: -item[0])
        return tuple(name for _, name, _ in scored), "; ".join(f"{name}: {why}" for _, name, why in scored)

    async def _classify(self, question: str, decided: _Decided) -> None:
        """The classifier decides what ``decided`` leaves open; an unusable reply leaves it to the rules."""
        assert self.ask is not None
        depths = ["direct", "shallow", "deep"] if self.direct else ["shallow", "deep"]
        properties: dict[str, Any] = {"depth": {"enum": depths}}
        names = [c.name for c in self.collections]
        choose = decided.collections is None and len(names) > 1
        if choose:
            properties["collections"] = {
                "type": "array",
                "items": {"enum": names},
                "minItems": 1,
                "maxItems": len(names),
            }
        schema = {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
        listed = "".join(f"\n- {c.name}: {c.description or ', '.join(c.keywords)}" for c in self.collections)
        prompt = (
            "Depth: direct if it needs no documents at all (a greeting, arithmetic); shallow if it asks "
            "one thing, which one search answers (most questions); deep only if it asks two or more "
            "different things.\n"
            + _EXAMPLES
            + (f"Collections, pick those the question is about:{listed}\n" if choose else "")
            + f"Question: {question}"
        )
        reply = _parse(
            await self.ask(
                prompt,
                schema=schema,
                system="You classify questions for a research assistant.",
                max_tokens=48,
            )
        )
        if reply is None:
            decided.notes.append("the classifier's reply was not a JSON object: the rules decided")
            return
        depth = reply.get("depth")
        if decided.depth is None and depth in depths:
            decided.by = "model"
            decided.depth, decided.reason = cast(Depth, depth), f"the classifier said {depth}"
            if depth == "direct":
                self._check_direct(question, decided)
        elif decided.depth is None:
            decided.notes.append(
                f"the classifier's depth {depth!r} is not one of {depths}: the rules decided"
            )
        picked = reply.get("collections")
        if choose and isinstance(picked, list):
            chosen = tuple(dict.fromkeys(str(p) for p in picked if p in names))
            if chosen:
                decided.collections = chosen
                decided.collections_reason = f"the classifier chose {', '.join(chosen)}"

    def _check_direct(self, question: str, decided: _Decided) -> None:
        """Conservative: a classifier's direct for a question that names a collection's words, or a long
        one, is researched shallow instead."""
        words = content_words(question)
        named = sorted(
            words
            & set().union(
                *(content_words(f"{c.description} {' '.join(c.keywords)}") for c in self.collections)
            )
        )
        count = len(_WORD.findall(question))
        code = _CODE_LIKE.search(question)
        if named or code or count > 12:
            why = (
                f"it names {', '.join(map(repr, named))} of the collections"
                if named
                else f"it holds {code.group(0)!r}, which may be in the documents"
                if code
                else f"{count} words"
            )
            decided.depth = "shallow"
            decided.reason = f"the classifier said direct, but {why}: one retrieval pass"
