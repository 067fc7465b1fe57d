"""The research router: each depth for labelled questions, the classifier under its schema (scripted at the
model's seam), collections chosen by keywords and by the classifier, the budget's degrade, the direct path,
and the decision on a ``research.route`` span."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shopfloor.config import Settings
from shopfloor.connectors.docs import Collection, Route, Router, arithmetic, deep_tokens_estimate
from shopfloor.errors import SpecError
from shopfloor.spec import parse_spec
from shopfloor.telemetry import configure_telemetry, run_scope
from shopfloor.tools import Budget

#: questions with the depth a person labelled, each decided by the rules alone
LABELLED = [
    ("Hello!", "direct"),
    ("thanks so much", "direct"),
    ("What is 12 * 7?", "direct"),
    ("calculate (2 + 3) ** 2", "direct"),
    ("What does the else clause of a try statement do?", "shallow"),
    ("What does math.fsum() help with?", "shallow"),
    ("Which command creates a virtual environment?", "shallow"),
    ("What is the difference between else and finally in a try statement?", "deep"),
    ("What is venv? How is pip used?", "deep"),
    ("How do modules get found, and how does the interpreter start?", "deep"),
]
PLENTY = Budget(tokens_left=100_000, seconds_left=3_600.0, step_seconds=900.0)
COLLECTIONS = [
    Collection(name="tutorial", description="The Python Tutorial", keywords=("tutorial", "venv")),
    Collection(name="library", description="Reference of the standard library modules", keywords=("math",)),
    Collection(name="faq", description="Frequently asked questions about installing Python"),
]


class Classifier:
    """The classifier at the model's seam: replies ``reply`` (JSON unless a string) and records the schema
    and prompt it was asked under."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.schemas: list[dict[str, Any]] = []
        self.prompts: list[str] = []

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        self.schemas.append(schema)
        self.prompts.append(prompt)
        return self.reply if isinstance(self.reply, str) else json.dumps(self.reply)


@pytest.mark.parametrize(("question", "depth"), LABELLED)
async def test_the_rules_route_each_labelled_question_to_its_depth(question: str, depth: str) -> None:
    route = await Router().route(question)
    assert (route.depth, route.by) == (depth, "rules"), route.reason
    assert route.model == ("hard" if depth == "deep" else "easy") and route.degraded is None


def test_arithmetic_is_computed_and_anything_else_is_not() -> None:
    assert arithmetic("What is 12 * 7?") == "84"
    assert arithmetic("what's 7 / 2") == "3.5"
    assert arithmetic("-(3 - 10) % 4") == "3"
    # not arithmetic, or not safely: a name, no operator, a version, a huge power, a zero divisor
    for question in ("What is math.pi * 2?", "What is 42?", "What is Python 3.11?", "2 ** 1000", "1 / 0"):
        assert arithmetic(question) is None, question
    assert arithmetic("9 ** 9 ** 9") is None


async def test_the_model_router_asks_the_classifier_under_a_schema_for_every_question() -> None:
    classifier = Classifier({"depth": "deep"})
    router = Router(mode="model", ask=classifier, hard="local:qwen2.5-coder-1.5b")
    route = await router.route("What does the else clause of a try statement do?")
    assert (route.depth, route.by, route.reason) == ("deep", "model", "the classifier said deep")
    assert (route.model, route.model_ref) == ("hard", "local:qwen2.5-coder-1.5b")
    assert classifier.schemas[0]["properties"] == {"depth": {"enum": ["direct", "shallow", "deep"]}}
    # the classifier decides even where a rule would have: comparisons are its call too
    classifier.reply = {"depth": "shallow"}
    compared = await router.route("What is the difference between else and finally?")
    assert (compared.depth, compared.by, compared.model_ref) == ("shallow", "model", None)
    # but a sum is computed without asking it
    asked = len(classifier.schemas)
    summed = await router.route("What is 2 + 2?")
    assert (summed.depth, summed.by) == ("direct", "rules") and len(classifier.schemas) == asked


async def test_the_auto_router_asks_only_what_the_rules_leave_open() -> None:
    classifier = Classifier({"depth": "deep"})
    router = Router(mode="auto", ask=classifier)
    ruled = await router.route("What is the difference between else and finally?")
    assert ruled.by == "rules" and not classifier.schemas
    opened = await router.route("How do I make a virtual environment?")
    assert (opened.depth, opened.by) == ("deep", "model") and len(classifier.schemas) == 1


async def test_an_unusable_classifier_reply_leaves_the_decision_to_the_rules_and_says_so() -> None:
    router = Router(mode="auto", ask=Classifier("{not json"))
    route = await router.route("How do I make a virtual environment?")
    assert (route.depth, route.by) == ("shallow", "rules")
    assert "the classifier's reply was not a JSON object: the rules decided" in route.reason
    wrong = await Router(mode="auto", ask=Classifier({"depth": "very deep"})).route("What is venv?")
    assert wrong.depth == "shallow" and "'very deep' is not one of" in wrong.reason
    with pytest.raises(ValueError, match="classifies with a model: give it ``ask``"):
        Router(mode="model")


async def test_the_classifiers_direct_is_taken_only_for_a_question_the_documents_cannot_hold() -> None:
    router = Router(mode="model", ask=Classifier({"depth": "direct"}), collections=COLLECTIONS[:1])
    chat = await router.route("Who are you?")
    assert (chat.depth, chat.by) == ("direct", "model")
    code = await router.route("What does math.fsum() do?")
    assert code.depth == "shallow" and "it holds 'h.f'" in code.reason
    named = await router.route("Is there a tutorial?")
    assert named.depth == "shallow" and "it names 'tutorial' of the collections" in named.reason
    off = await Router(mode="model", ask=Classifier({"depth": "direct"}), direct=False).route("Who are you?")
    assert off.depth == "shallow" and "is not one of ['shallow', 'deep']" in off.reason


async def test_collections_are_chosen_by_keywords_and_description_then_by_the_classifier() -> None:
    router = Router(collections=COLLECTIONS)
    math = await router.route("What does math.fsum() help with?")
    assert math.collections == ("library",) and "keyword 'math'" in math.collections_reason
    both = await router.route("Which standard library module does the tutorial use for venv?")
    assert both.collections == ("tutorial", "library"), "two keywords rank the tutorial first"
    none = await router.route("When does a finally clause run?")
    assert none.collections == () and "all searched" in none.collections_reason
    classifier = Classifier({"depth": "shallow", "collections": ["faq", "nowhere", "faq"]})
    chosen = await Router(mode="auto", ask=classifier, collections=COLLECTIONS).route(
        "When does a finally clause run?"
    )
    assert chosen.collections == ("faq",) and chosen.collections_reason == "the classifier chose faq"
    picked = classifier.schemas[0]["properties"]["collections"]
    assert picked["items"] == {"enum": ["tutorial", "library", "faq"]}
    assert "- library: Reference of the standard library modules" in classifier.prompts[0]
    single = await Router(collections=COLLECTIONS[:1]).route("What is venv?")
    assert single.collections_reason == "the connector's only collection"


async def test_a_deep_route_the_budget_cannot_fit_is_researched_shallow_and_says_why() -> None:
    router = Router(deep_tokens=4_000, deep_seconds=120.0, hard="local:qwen2.5-coder-1.5b")
    question = "What is the difference between else and finally in a try statement?"
    assert (await router.route(question, budget=PLENTY)).depth == "deep"
    poor = Budget(tokens_left=1_500, seconds_left=3_600.0, step_seconds=900.0)
    tokens = await router.route(question, budget=poor)
    assert (tokens.depth, tokens.model, tokens.model_ref) == ("shallow", "easy", None)
    assert tokens.degraded == (
        "a deep pass needs about 4000 tokens and the run has 1500 left: researched shallow instead of deep"
    )
    late = await router.route(
        question, budget=Budget(tokens_left=9_000, seconds_left=50.0, step_seconds=900.0)
    )
    assert late.degraded is not None and "needs about 120 s and the run has 50 s left" in late.degraded
    step = await router.route(
        question, budget=Budget(tokens_left=9_000, seconds_left=900.0, step_seconds=30.0)
    )
    assert step.degraded is not None and "the research step has 30 s left" in step.degraded
    # the caller's deep is fitted too
    assert router.fit(Route(depth="deep", reason="asked", by="asked"), poor).depth == "shallow"
    assert deep_tokens_estimate(sub_questions=3, per_query=4, passage_chars=700) == 300 + 3 * 1_200


def test_a_route_round_trips_through_json_and_reads_an_older_one() -> None:
    route = Route(depth="deep", reason="r", by="model", model="hard", collections=("a", "b"), degraded=None)
    assert Route.from_json(json.loads(json.dumps(route.to_json()))) == route
    assert Route.from_json({"depth": "shallow", "reason": "old", "by": "rules"}).model == "easy"


async def test_the_decision_is_a_span_with_its_reasons(settings: Settings) -> None:
    telemetry = configure_telemetry(settings)
    try:
        router = Router(collections=COLLECTIONS, deep_tokens=4_000)
        poor = Budget(tokens_left=100, seconds_left=3_600.0, step_seconds=900.0)
        with run_scope("run-route"):
            await router.route("Compare math.fsum and sum in the library", budget=poor)
        telemetry.force_flush()
        spans = [s for s in telemetry.store.run_spans("run-route") if s.name == "research.route"]
    finally:
        telemetry.shutdown()
    assert len(spans) == 1
    attributes = spans[0].attributes
    assert attributes["shopfloor.research.router"] == "rules"
    assert attributes["shopfloor.research.route.depth"] == "shallow"
    assert attributes["shopfloor.research.route.by"] == "rules"
    assert "'compare'" in attributes["shopfloor.research.route.reason"]
    assert list(attributes["shopfloor.research.route.collections"]) == ["library"]
    assert "keyword 'math'" in attributes["shopfloor.research.route.collections_reason"]
    assert "4000 tokens and the run has 100 left" in attributes["shopfloor.research.route.degraded"]


def spec(research: str) -> str:
    return f"""name: researcher
model: test
connectors:
  - name: tutorial
    docs:
      collection: python-tutorial
      research:
{research}
"""


@pytest.mark.parametrize(
    ("research", "line", "message"),
    [
        ("        router: smart", 8, "research.router: expected one of 'rules', 'model' or 'auto'"),
        (
            "        depth: shallow\n        router: model",
            8,
            "router 'model' is never asked with depth 'shallow'",
        ),
        ("        models: {hard: 'not a ref'}", 8, "expected a model reference PROVIDER:NAME"),
        (
            "        models: {medium: local:x}",
            8,
            "unknown key 'medium' in connectors[0].docs.research.models",
        ),
        ("        deep_tokens: 5", 8, "research.deep_tokens: expected a number >= 100"),
    ],
)
def test_bad_router_settings_are_errors_with_file_and_line(research: str, line: int, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(spec(research), file="agent.yaml")
    text = str(raised.value)
    assert text.startswith(f"agent.yaml:{line}:") and message in text, text


def test_several_collections_need_distinct_names_and_clean_keywords() -> None:
    twice = """name: researcher
model: test
connectors:
  - name: tutorial
    docs:
      collection: python-tutorial
      keywords: [python]
      collections:
        - {collection: library, keywords: [math]}
        - {collection: python-tutorial}
"""
    with pytest.raises(SpecError, match="collection 'python-tutorial' is named twice"):
        parse_spec(twice, file="agent.yaml")
    spaced = twice.replace("        - {collection: python-tutorial}\n", "").replace("[python]", "[' python']")
    with pytest.raises(SpecError, match="a keyword is 1-63 characters"):
        parse_spec(spaced, file="agent.yaml")
    good, _ = parse_spec(twice.replace("        - {collection: python-tutorial}\n", ""), file="agent.yaml")
    docs = good.connectors[0].docs
    assert docs is not None and [c.collection for c in docs.collections] == ["library"]
