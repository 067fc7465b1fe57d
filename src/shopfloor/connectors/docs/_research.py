"""Research over document collections: route, plan, retrieve in parallel, write with citations, verify.

A ``Router`` (``_route.py``) chooses the depth, model route and collections of each question, each
decision with its reason; a question routed **direct** is answered without retrieval. **Shallow** is one
retrieval pass for the question, written from its best passages; **deep** has the model plan
sub-questions (under a schema), retrieved in parallel beside the question itself, and one researcher per
sub-question writes from the passages its own search found, side by side. A writer sees its passages
numbered and answers under a schema: a few sentences, each naming the one passage it states (small
models follow that far better than free text with bracketed numbers). The ``CitationVerifier`` then
checks every sentence against the passage it cites: a sentence its passage does not support is re-cited
to a passage that does, or removed and recorded. A shallow answer left without support is researched
again deep, once, and says so (unless the run's budget cannot fit a deep pass: then it says that). A
deep pass asks the ``hard`` model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shopfloor.connectors.docs._index import Hit
from shopfloor.connectors.docs._route import Depth, Route, Router, direct_answer
from shopfloor.connectors.docs._verify import CitationVerifier, Support
from shopfloor.errors import ToolExecutionError
from shopfloor.tools import Ask, Budget

__all__ = ["Claim", "Found", "Passage", "Removed", "ResearchReport", "Researcher", "SubResearch"]


@dataclass(frozen=True, kw_only=True)
class Passage:
    #: ``COLLECTION:CHUNK``, the citable id
    id: str
    source: str
    title: str
    heading: str
    text: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_hit(cls, hit: Hit, collection: str) -> Passage:
        """A search hit of ``collection`` as a citable passage."""
        return cls(
            id=f"{collection}:{hit.chunk_id}",
            source=hit.source,
            title=hit.title,
            heading=hit.heading,
            text=hit.text,
            score=hit.score,
        )


#: retrieves the passages of one query: (query, how many) -> passages, best first
Retrieve = Callable[[str, int], Awaitable[list[Passage]]]
#: what one researcher found for a sub-question: its passages and its sentences, each with the index
#: of the passage it cites
Found = tuple[list[Passage], list[tuple[str, int]]]
#: researches a deep plan's sub-questions side by side: (sub-questions, sentences each) -> what each
#: found, in order (``Researcher.in_process``, or child runs: ``docs/_children.py``)
SubResearch = Callable[[list[str], int], Awaitable[list[Found]]]


@dataclass(frozen=True, kw_only=True)
class Claim:
    sentence: str
    #: the passage it cites (after verification), and its number in the answer
    cited: str
    number: int
    support: Support
    #: the passage the writer cited, where the verifier moved the citation to another
    recited_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class Removed:
    sentence: str
    cited: str | None
    reason: str


@dataclass(kw_only=True)
class ResearchReport:
    question: str
    #: the router's decision
    route: Route
    #: the depth researched: the route's, or deep after an escalation
    depth: Depth
    plan: list[str] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    #: why a shallow attempt was researched again deep (None when it was not)
    escalated: str | None = None
    #: why a shallow attempt left without support was not researched deep (plans need approval)
    not_escalated: str | None = None
    #: the answer of a question routed direct (no retrieval, no citations)
    direct: str | None = None
    #: collection -> the index version searched and the workspace commit it was built from (or None)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cited(self) -> list[Passage]:
        """The passages the answer cites, in citation-number order."""
        by_id = {p.id: p for p in self.passages}
        numbers: dict[str, int] = {}
        for claim in self.claims:
            numbers.setdefault(claim.cited, claim.number)
        return [by_id[i] for i in sorted(numbers, key=numbers.__getitem__)]

    @property
    def grounded(self) -> bool:
        return bool(self.claims) and len(self.removed) <= len(self.claims)

    @property
    def answer(self) -> str:
        if self.direct is not None:
            return self.direct
        if not self.claims:
            return "The documents searched do not support an answer to this question" + (
                f" ({len(self.removed)} unsupported sentences were removed)." if self.removed else "."
            )
        body = " ".join(f"{c.sentence.rstrip()} [{c.number}]" for c in self.claims)
        sources = "\n".join(
            f"[{n}] {p.title}{' > ' + p.heading if p.heading else ''} ({p.source}, {p.id})"
            for n, p in enumerate(self.cited, 1)
        )
        return f"{body}\n\nSources:\n{sources}"

    def markdown(self) -> str:
        lines = [f"# {self.question}", "", self.answer, ""]
        lines += [f"Depth: {self.depth}; routed {self.route.depth} ({self.route.by}: {self.route.reason})."]
        route = self.route
        searched = ", ".join(route.collections) or "all"
        lines.append(
            f"Model: {route.model} ({route.model_ref or 'the run model'}); "
            f"collections: {searched} ({route.collections_reason or 'not chosen'})."
        )
        if route.degraded:
            lines.append(f"Degraded: {route.degraded}.")
        if self.escalated:
            lines.append(f"Escalated: {self.escalated}.")
        if self.not_escalated:
            lines.append(f"Not escalated: {self.not_escalated}.")
        if self.plan:
            lines += ["", "## Plan", "", *(f"- {q}" for q in self.plan)]
        if self.removed:
            lines += ["", "## Removed by the verifier", ""]
            lines += [f"- {r.sentence} (cited {r.cited or 'nothing'}: {r.reason})" for r in self.removed]
        lines += ["", "## Sources", ""]
        for name, index in sorted(self.indexes.items()):
            commit = index.get("commit")
            built = f", built from workspace commit `{commit}`" if commit else ""
            lines += [f"Index: collection {name} version {index.get('version', 0)}{built}.", ""]
        for n, p in enumerate(self.cited, 1):
            lines += [f"[{n}] **{p.title}**{' > ' + p.heading if p.heading else ''} ({p.source}, `{p.id}`)"]
            lines += ["", *(f"> {line}" for line in p.text.splitlines()), ""]
        return "\n".join(lines).rstrip() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "question": self.question,
            "depth": self.depth,
            "route": self.route.to_json(),
            "escalated": self.escalated,
            "not_escalated": self.not_escalated,
            "plan": self.plan,
            "claims": [
                {
                    "sentence": c.sentence,
                    "cited": c.cited,
                    "number": c.number,
                    "recited_from": c.recited_from,
                    "support": c.support.to_json(),
                }
                for c in self.claims
            ],
            "removed": [{"sentence": r.sentence, "cited": r.cited, "reason": r.reason} for r in self.removed],
            # what the answer cites, with the text it was checked against; ``doc`` the document's id
            "sources": [
                {"n": n, "id": p.id, "doc": p.source, "title": p.title, "heading": p.heading, "text": p.text}
                for n, p in enumerate(self.cited, 1)
            ],
            # every passage retrieved, best first (the evaluation's retrieval scorer reads ``results``)
            "results": [{"id": p.id, "doc": p.source, "score": p.score} for p in self.passages],
            "index": self.indexes,
        }


def _parse(reply: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(reply)
    except json.JSONDecodeError as exc:
        raise ToolExecutionError(f"the {what} reply is not JSON ({exc.msg}): {reply[:120]!r}") from None
    if not isinstance(data, dict):
        raise ToolExecutionError(f"the {what} reply is not a JSON object: {reply[:120]!r}")
    return data


class Researcher:
    def __init__(
        self,
        *,
        retrieve: Retrieve,
        verifier: CitationVerifier,
        ask: Ask,
        router: Router | None = None,
        hard: Ask | None = None,
        per_query: int = 4,
        max_passages: int = 6,
        max_sub_questions: int = 3,
        max_claims: int = 4,
        passage_chars: int = 700,
        sub_research: SubResearch | None = None,
        sequential: bool = False,
    ) -> None:
        self.retrieve = retrieve
        #: where a deep plan's sub-questions are researched (in this process by default)
        self.sub_research: SubResearch = sub_research or self.in_process
        #: the sub-questions researched in this process one after the other, not side by side
        self.sequential = sequential
        self.verifier = verifier
        self.ask = ask
        #: the model a deep pass asks (the route ``hard``); None: ``ask``
        self.hard = hard
        self.router = router or Router()
        self.per_query = per_query
        self.max_passages = max_passages
        self.max_sub_questions = max_sub_questions
        self.max_claims = max_claims
        self.passage_chars = passage_chars

    async def route(
        self, question: str, *, depth: Depth | None = None, budget: Budget | None = None
    ) -> Route:
        """The router's decision, or the caller's ``depth``; fitted to ``budget`` either way."""
        if depth is not None:
            return self.router.fit(Route(depth=depth, reason="the caller asked for it", by="asked"), budget)
        return await self.router.route(question, budget=budget)

    async def research(
        self,
        question: str,
        *,
        depth: Depth | None = None,
        route: Route | None = None,
        plan: list[str] | None = None,
        escalate: bool = True,
        budget: Budget | None = None,
    ) -> ResearchReport:
        """Research ``question`` at the depth routed (``route`` where it was routed already); a deep
        ``plan`` given (an approved one) is researched as it is. ``escalate=False``: a shallow answer left
        without support is not researched deep (a plan waiting for approval cannot be made mid-call).
        ``budget``: what the run has left, which the route and an escalation must fit."""
        route = route or await self.route(question, depth=depth, budget=budget)
        if route.depth == "direct":
            names = [c.name for c in self.router.collections] or ["collection's"]
            answer = await direct_answer(question, route, self.ask, collections=names)
            return ResearchReport(question=question, route=route, depth="direct", direct=answer)
        report = await self._attempt(question, route, route.depth, plan=plan)
        if route.depth == "shallow" and not report.grounded:
            why = (
                f"the shallow answer kept {len(report.claims)} supported sentences and "
                f"lost {len(report.removed)}"
            )
            if not escalate:
                report.not_escalated = f"{why}; a deep plan needs approval: ask again with depth deep"
                return report
            short = self.router.deep_short(budget)
            if short is not None:
                report.not_escalated = f"{why}; {short}"
                return report
            deep = await self._attempt(question, route, "deep")
            deep.escalated = why
            return deep
        return report

    async def plan(self, question: str, *, ask: Ask | None = None) -> list[str]:
        """The sub-questions of a deep pass, asked of ``ask`` (the ``hard`` model by default)."""
        schema = {
            "type": "object",
            "properties": {
                "sub_questions": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 3, "maxLength": 160},
                    "minItems": 1,
                    "maxItems": self.max_sub_questions,
                }
            },
            "required": ["sub_questions"],
            "additionalProperties": False,
        }
        ask = ask or self.hard or self.ask
        reply = _parse(
            await ask(
                f"Question: {question}\nWrite up to {self.max_sub_questions} short search queries, "
                "each about one thing the question asks.",
                schema=schema,
                system="You plan the searches of a research assistant over documentation.",
                max_tokens=160,
            ),
            "planner",
        )
        asked = reply.get("sub_questions")
        queries = [q.strip() for q in asked if isinstance(q, str)] if isinstance(asked, list) else []
        seen = {question.strip().lower()}
        plan = []
        for query in queries:
            if query and query.lower() not in seen:
                seen.add(query.lower())
                plan.append(query)
        return plan[: self.max_sub_questions]

    async def _attempt(
        self, question: str, route: Route, depth: Depth, *, plan: list[str] | None = None
    ) -> ResearchReport:
        ask = self.hard or self.ask if depth == "deep" else self.ask
        if depth == "shallow":
            plan = []
        elif plan is None:
            plan = await self.plan(question)
        if plan:
            # One researcher per sub-question, side by side, each writing from what its own search found:
            # a small model answers one narrow question from a few passages far better than two from many.
            share = -(-self.max_claims // len(plan))
            own, researched = await asyncio.gather(
                self.retrieve(question, self.per_query), self.sub_research(plan, share)
            )
            found = [own, *(subset for subset, _ in researched)]
            passages = _interleave(found, self.per_query * len(found))
            at = {p.id: i for i, p in enumerate(passages)}
            drafted = [
                (sentence, at[subset[i].id]) for subset, drafts in researched for sentence, i in drafts
            ]
        else:
            found = [await self.retrieve(question, self.per_query)]
            passages = _interleave(found, self.max_passages)
            drafted = await self._write(question, passages, self.max_claims, ask) if passages else []
        report = ResearchReport(question=question, route=route, depth=depth, plan=plan, passages=passages)
        numbers: dict[str, int] = {}
        seen: set[str] = set()
        unique: list[tuple[str, int]] = []
        for sentence, cited in drafted:
            key = " ".join(sentence.lower().split())
            if key not in seen:
                seen.add(key)
                unique.append((sentence, cited))
        # All the answer's sentences at once: their embeddings and their cited passages' in one batch.
        citations = await self.verifier.cite(unique, [p.text for p in passages])
        for (sentence, cited), citation in zip(unique, citations, strict=True):
            if citation.chosen is None:
                report.removed.append(
                    Removed(sentence=sentence, cited=passages[cited].id, reason=citation.support.reason)
                )
                continue
            passage = passages[citation.chosen]
            number = numbers.setdefault(passage.id, len(numbers) + 1)
            report.claims.append(
                Claim(
                    sentence=sentence,
                    cited=passage.id,
                    number=number,
                    support=citation.support,
                    recited_from=passages[cited].id if citation.chosen != cited else None,
                )
            )
        return report

    async def in_process(self, plan: list[str], sentences: int) -> list[Found]:
        """Each sub-question researched here, side by side (one after the other where ``sequential``)."""
        if self.sequential:
            return [await self.research_sub_question(sub, sentences) for sub in plan]
        return list(await asyncio.gather(*(self.research_sub_question(sub, sentences) for sub in plan)))

    async def research_sub_question(self, sub_question: str, sentences: int) -> Found:
        """One researcher: the sub-question's own search, and at most ``sentences`` sentences from it,
        written by the model of a deep pass (the ``hard`` route: sub-questions exist only there)."""
        subset = await self.retrieve(sub_question, self.per_query)
        ask = self.hard or self.ask
        return subset, (await self._write(sub_question, subset, sentences, ask) if subset else [])

    async def _write(
        self, question: str, passages: Sequence[Passage], sentences: int, ask: Ask
    ) -> list[tuple[str, int]]:
        numbered = "\n\n".join(
            f"[{n}] ({p.title}{' > ' + p.heading if p.heading else ''})\n{p.text[: self.passage_chars]}"
            for n, p in enumerate(passages, 1)
        )
        schema = {
            "type": "object",
            "properties": {
                "claims": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "sentence": {"type": "string", "minLength": 8, "maxLength": 280},
                            "source": {"enum": list(range(1, len(passages) + 1))},
                        },
                        "required": ["sentence", "source"],
                        "additionalProperties": False,
                    },
                    "minItems": 1,
                    "maxItems": sentences,
                }
            },
            "required": ["claims"],
            "additionalProperties": False,
        }
        reply = _parse(
            await ask(
                f"Passages:\n{numbered}\n\nQuestion: {question}\n"
                f"Answer in at most {sentences} sentences. Each sentence states one fact from one "
                "passage, in the passage's words, and gives that passage's number as its source.",
                schema=schema,
                system=(
                    "You answer questions from numbered documentation passages. Use only what the "
                    "passages say; never add facts of your own."
                ),
                max_tokens=400,
            ),
            "writer",
        )
        drafted: list[tuple[str, int]] = []
        claims = reply.get("claims")
        for claim in claims if isinstance(claims, list) else []:
            if not isinstance(claim, dict):
                continue
            sentence, source = claim.get("sentence"), claim.get("source")
            number = source if isinstance(source, int) and 1 <= source <= len(passages) else None
            if isinstance(sentence, str) and sentence.strip() and number is not None:
                drafted.append((sentence.strip(), number - 1))
        return drafted


def _interleave(found: Sequence[list[Passage]], limit: int) -> list[Passage]:
    """The passages of every query, best of each first in turn, without repeats, at most ``limit``."""
    out: list[Passage] = []
    seen: set[str] = set()
    for rank in range(max((len(f) for f in found), default=0)):
        for hits in found:
            if rank < len(hits) and hits[rank].id not in seen:
                seen.add(hits[rank].id)
                out.append(hits[rank])
                if len(out) == limit:
                    return out
    return out
