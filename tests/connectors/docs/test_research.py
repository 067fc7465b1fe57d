"""Research over a collection: the router's rules, the verifier's checks, and the researcher end to end on
two chapters of the shipped Python Tutorial corpus with the real MiniLM, the model scripted at its seam."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shopfloor.connectors.docs import (
    CitationVerifier,
    DocIndex,
    MiniLM,
    Passage,
    Ranking,
    Researcher,
    Route,
    Router,
)
from shopfloor.errors import ToolExecutionError
from shopfloor.tools import Budget

pytestmark = pytest.mark.slow  # the embedding model runs on the CPU

CORPUS = Path(__file__).resolve().parents[3] / "examples" / "researcher" / "corpus" / "tutorial"
FABRICATED = "The finally clause was removed from Python and replaced by the goto statement."


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, minilm: MiniLM) -> Iterator[DocIndex]:
    root = tmp_path_factory.mktemp("tutorial")
    for page in ("errors.html", "venv.html"):
        shutil.copy(CORPUS / page, root / page)
    # Two pages: one chunk per page among the best (the default) would make every second passage the
    # other page; the writer here cites a question's page twice, so any number of a page's chunks may rank.
    with DocIndex(root / "docs" / "tutorial.db", minilm, ranking=Ranking(per_document=0)) as made:
        report = made.add([root], base=root)
        assert report.added == 2 and not report.failed
        yield made


def retriever(index: DocIndex, queries: list[str]) -> Any:
    async def retrieve(query: str, k: int) -> list[Passage]:
        queries.append(query)
        return [Passage.from_hit(h, "tutorial") for h in index.search(query, k=k)]

    return retrieve


def first_sentence(prompt: str, number: int) -> str:
    """A sentence of passage ``number`` as the prompt shows it: what a faithful writer copies."""
    block = prompt.split(f"[{number}] (", 1)[1].split("\n", 1)[1]
    block = re.split(r"\n\n\[\d+\] \(|\n\nQuestion:", block)[0]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", block.replace("\n", " "))]
    return next((s for s in sentences if len(s) > 40 and "(" not in s), max(sentences, key=len))


class Scripted:
    """The model at its seam: answers by the schema it is asked under, and records what it was asked."""

    def __init__(
        self, *, plan: list[str], faithful: bool = True, fabricate: bool = True, depth: str = "deep"
    ) -> None:
        self.plan = plan
        self.faithful = faithful
        self.fabricate = fabricate
        self.depth = depth
        self.asked: list[str] = []

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        props = schema["properties"]
        if "sub_questions" in props:
            self.asked.append("plan")
            return json.dumps({"sub_questions": self.plan})
        if "claims" in props:
            self.asked.append("write")
            claims = []
            if self.faithful:
                claims.append({"sentence": first_sentence(prompt, 2), "source": 2})
            if self.fabricate:
                claims.append({"sentence": FABRICATED, "source": 1})
            return json.dumps({"claims": claims})
        if "depth" in props:
            self.asked.append("route")
            return json.dumps({"depth": self.depth})
        if "answer" in props:
            self.asked.append("direct")
            return json.dumps({"answer": "I am a research assistant for the documents"})
        if "supported" in props:
            self.asked.append("judge")
            return json.dumps({"supported": "no"})
        raise AssertionError(f"unexpected schema {schema}")


async def test_the_router_goes_deep_for_comparisons_and_several_questions() -> None:
    router = Router()
    deep = await router.route("What is the difference between else and finally in a try statement?")
    assert (deep.depth, deep.by) == ("deep", "rules") and "difference" in deep.reason
    assert (await router.route("What is venv? How is pip used?")).depth == "deep"
    assert (await router.route(" ".join(["word"] * 30) + "?")).reason == "a long question (30 words)"
    shallow = await router.route("What does the else clause of a try statement do?")
    assert (shallow.depth, shallow.by) == ("shallow", "rules")
    asked = Scripted(plan=[])
    classified = await Router(mode="auto", ask=asked).route("How do I make a virtual environment?")
    assert (classified.depth, classified.by, asked.asked) == ("deep", "model", ["route"])


async def test_the_verifier_keeps_what_the_passage_says_and_flags_what_it_does_not(minilm: MiniLM) -> None:
    passage = (
        "If a finally clause is present, the finally clause will execute as the last task before the try "
        "statement completes. The finally clause runs whether or not the try statement produces an exception."
    )
    verifier = CitationVerifier(minilm)
    quoted = await verifier.check(
        "The finally clause runs whether or not the try statement produces an exception.", passage
    )
    assert quoted.supported and quoted.verdict == "lexical" and quoted.lexical == 1.0
    invented = await verifier.check(FABRICATED, passage)
    assert not invented.supported and invented.verdict == "unsupported"
    numeral = await verifier.check(
        "The finally clause runs 3 times before the try statement completes.", passage
    )
    assert not numeral.supported and "does not contain 3" in numeral.reason
    # Undecided by words and meaning: the judge says no, so it is not supported; it was asked.
    judge = Scripted(plan=[])
    borderline = "A finally clause executes the statement last, whatever exception the try produces."
    judged = await CitationVerifier(minilm, lexical_min=0.99, semantic_min=0.99, judge=judge).check(
        borderline, passage
    )
    assert not judged.supported and judge.asked == ["judge"]


async def test_a_shallow_question_is_answered_with_a_verified_citation_and_the_invention_removed(
    index: DocIndex, minilm: MiniLM
) -> None:
    queries: list[str] = []
    model = Scripted(plan=["unused"])
    researcher = Researcher(retrieve=retriever(index, queries), verifier=CitationVerifier(minilm), ask=model)
    report = await researcher.research("When does the finally clause of a try statement run?")
    assert report.route.depth == "shallow" and report.depth == "shallow" and report.escalated is None
    assert queries == ["When does the finally clause of a try statement run?"] and model.asked == ["write"]
    assert len(report.claims) == 1 and report.claims[0].number == 1
    kept = report.claims[0]
    assert kept.support.supported and kept.sentence in report.passages[1].text.replace("\n", " ")
    assert [r.sentence for r in report.removed] == [FABRICATED]
    out = report.to_json()
    assert out["answer"].startswith(f"{kept.sentence} [1]\n\nSources:\n[1] ")
    assert out["sources"][0]["id"] == kept.cited and out["sources"][0]["doc"] == "errors.html"
    assert out["removed"][0]["reason"].startswith("only ")
    assert {r["doc"] for r in out["results"]} <= {"errors.html", "venv.html"}
    markdown = report.markdown()
    assert "## Removed by the verifier" in markdown and FABRICATED in markdown and "> " in markdown


async def test_a_deep_question_plans_and_retrieves_every_sub_question(
    index: DocIndex, minilm: MiniLM
) -> None:
    queries: list[str] = []
    model = Scripted(plan=["try else clause", "create a virtual environment", "try else clause"])
    researcher = Researcher(retrieve=retriever(index, queries), verifier=CitationVerifier(minilm), ask=model)
    question = "What does a try statement's else clause do, and how do you create a virtual environment?"
    report = await researcher.research(question)
    assert report.route.depth == "deep" and model.asked == ["plan", "write", "write"], (
        "a writer per sub-question"
    )
    assert report.plan == ["try else clause", "create a virtual environment"], "repeats dropped"
    assert sorted(queries) == sorted([question, *report.plan])
    assert {p.source for p in report.passages} == {"errors.html", "venv.html"}, (
        "each sub-question found its page"
    )
    assert len(report.passages) <= 12 and len({p.id for p in report.passages}) == len(report.passages)
    cited = {c.cited for c in report.claims}
    assert len(report.claims) == 2 and len(cited) == 2, "each researcher's sentence cites its own passage"
    assert [r.sentence for r in report.removed] == [FABRICATED], "the same invention twice is removed once"


async def test_an_ungrounded_shallow_answer_is_researched_again_deep_once(
    index: DocIndex, minilm: MiniLM
) -> None:
    queries: list[str] = []
    model = Scripted(plan=["finally clause"], faithful=False)
    researcher = Researcher(retrieve=retriever(index, queries), verifier=CitationVerifier(minilm), ask=model)
    report = await researcher.research("When does the finally clause of a try statement run?")
    assert model.asked == ["write", "plan", "write"], "one deep retry, no more"
    assert report.route.depth == "shallow" and report.depth == "deep"
    assert report.escalated == "the shallow answer kept 0 supported sentences and lost 1"
    assert not report.claims and report.answer.startswith("The documents searched do not support an answer")
    assert "Escalated: the shallow answer kept 0" in report.markdown()


async def test_a_writer_reply_that_is_not_json_is_a_tool_error(index: DocIndex, minilm: MiniLM) -> None:
    async def broken(prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256) -> str:
        return "{not json"

    researcher = Researcher(retrieve=retriever(index, []), verifier=CitationVerifier(minilm), ask=broken)
    with pytest.raises(ToolExecutionError, match=r"the writer reply is not JSON"):
        await researcher.research("What is venv?", depth="shallow")


async def test_an_approved_plan_is_researched_as_it_is_and_nothing_escalates_without_approval(
    index: DocIndex, minilm: MiniLM
) -> None:
    queries: list[str] = []
    model = Scripted(plan=["never asked"], faithful=False)
    researcher = Researcher(retrieve=retriever(index, queries), verifier=CitationVerifier(minilm), ask=model)
    question = "When does the finally clause of a try statement run?"
    shallow = await researcher.research(question, escalate=False)
    assert model.asked == ["write"] and shallow.depth == "shallow" and shallow.escalated is None
    assert shallow.not_escalated is not None and "a deep plan needs approval" in shallow.not_escalated
    assert "Not escalated: the shallow answer kept 0" in shallow.markdown()
    model.asked.clear()
    route = Route(depth="deep", reason="approved", by="rules")
    deep = await researcher.research(question, route=route, plan=["create a virtual environment"])
    assert model.asked == ["write"], "the plan given is not planned again"
    assert deep.plan == ["create a virtual environment"] and deep.route is route
    assert queries[-2:] == [question, "create a virtual environment"]


async def test_a_question_routed_direct_is_answered_without_retrieval(
    index: DocIndex, minilm: MiniLM
) -> None:
    queries: list[str] = []
    model = Scripted(plan=["unused"], depth="direct")
    researcher = Researcher(retrieve=retriever(index, queries), verifier=CitationVerifier(minilm), ask=model)
    summed = await researcher.research("What is 12 * 7?")
    assert (summed.depth, summed.route.by) == ("direct", "rules") and not queries and not model.asked
    out = summed.to_json()
    assert out["answer"] == "84 (computed; no documents were needed)."
    assert out["route"]["depth"] == "direct" and not out["claims"] and not out["results"]
    greeted = await researcher.research("Hello!")
    assert greeted.answer.startswith("Hello! Ask me a question about the collection's documents")
    # the classifier's direct: the easy model answers in a sentence, and the report says it searched nothing
    classified = Researcher(
        retrieve=retriever(index, queries),
        verifier=CitationVerifier(minilm),
        ask=model,
        router=Router(mode="model", ask=model),
    )
    chat = await classified.research("Who are you?")
    assert chat.depth == "direct" and model.asked == ["route", "direct"] and not queries
    assert chat.answer == (
        "I am a research assistant for the documents (answered without searching the documents: "
        "the classifier said direct)."
    )


async def test_a_deep_pass_asks_the_hard_model_and_a_shallow_one_the_easy(
    index: DocIndex, minilm: MiniLM
) -> None:
    easy, hard = Scripted(plan=["unused"]), Scripted(plan=["try else clause"])
    researcher = Researcher(
        retrieve=retriever(index, []), verifier=CitationVerifier(minilm), ask=easy, hard=hard
    )
    await researcher.research("When does the finally clause of a try statement run?")
    assert (easy.asked, hard.asked) == (["write"], [])
    easy.asked.clear()
    await researcher.research("What is the difference between try else and finally?")
    assert (easy.asked, hard.asked) == ([], ["plan", "write"])


async def test_an_escalation_the_budget_cannot_fit_is_not_made_and_says_why(
    index: DocIndex, minilm: MiniLM
) -> None:
    model = Scripted(plan=["finally clause"], faithful=False)
    researcher = Researcher(
        retrieve=retriever(index, []),
        verifier=CitationVerifier(minilm),
        ask=model,
        router=Router(deep_tokens=4_000),
    )
    poor = Budget(tokens_left=2_000, seconds_left=600.0, step_seconds=600.0)
    report = await researcher.research("When does the finally clause of a try statement run?", budget=poor)
    assert model.asked == ["write"] and report.depth == "shallow" and report.escalated is None
    assert report.not_escalated == (
        "the shallow answer kept 0 supported sentences and lost 1; "
        "a deep pass needs about 4000 tokens and the run has 2000 left"
    )
    degraded = await researcher.research("Compare the try else and finally clauses", budget=poor)
    assert degraded.route.degraded is not None and degraded.depth == "shallow"
    assert "Degraded: a deep pass needs about 4000 tokens" in degraded.markdown()
    assert "Model: easy (the run model); collections: all (the connector's only collection)." in (
        degraded.markdown()
    )
