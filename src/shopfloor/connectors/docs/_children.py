"""The deep path's researchers as child runs: each sub-question researched in a durable run of its own.

``ChildResearch`` is the ``SubResearch`` a research tool gives its ``Researcher`` where its run lends it
``Children``: one child run per sub-question, started together and waited for (a crash of the parent
after a child finished does not research that sub-question again). Each child runs
``research_sub_question`` (the tool's ``call_child``): its own search and its own sentences, with the
run's model, and writes what it found to its own branch of the workspace; the parent verifies every
sentence against all the passages, as it does for researchers in its own process. A child that failed
contributes nothing, and is named in the tool's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shopfloor.connectors.docs._research import Found, Passage, Researcher
from shopfloor.errors import ToolArgumentsError, ToolExecutionError
from shopfloor.tools import ChildCall, ChildOutcome, Children, ToolContext

__all__ = ["ChildResearch", "SubQuestion", "research_notes", "research_sub_question"]

#: the most sentences one researcher may be asked for
_MAX_SENTENCES = 20
_MAX_SUB_QUESTION = 2_000
_PASSAGE_FIELDS = frozenset(Passage.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class SubQuestion:
    """What a child researcher is given (its run's ``child_params.params``)."""

    sub_question: str
    sentences: int

    def to_json(self) -> dict[str, Any]:
        return {"sub_question": self.sub_question, "sentences": self.sentences}

    @classmethod
    def from_json(cls, params: Any) -> SubQuestion:
        """The params a child run was started with, checked: they come from the run store."""
        if not isinstance(params, dict) or set(params) != {"sub_question", "sentences"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ToolArgumentsError(f"a research child takes {{sub_question, sentences}}, got {got}")
        question, sentences = params["sub_question"], params["sentences"]
        if not isinstance(question, str) or not question.strip() or len(question) > _MAX_SUB_QUESTION:
            raise ToolArgumentsError(
                f"a research child's sub_question must be 1 to {_MAX_SUB_QUESTION} characters of text"
            )
        if (
            isinstance(sentences, bool)
            or not isinstance(sentences, int)
            or not 1 <= sentences <= _MAX_SENTENCES
        ):
            raise ToolArgumentsError(
                f"a research child's sentences must be an integer from 1 to {_MAX_SENTENCES}, "
                f"got {sentences!r}"
            )
        return cls(sub_question=question, sentences=sentences)


@dataclass(kw_only=True)
class ChildResearch:
    """Researches each sub-question of a plan in a child run (``Researcher(sub_research=...)``)."""

    children: Children
    #: the research tool's call that starts them
    ctx: ToolContext
    tool: str
    #: every child started, with its sub-question and how it ended, in plan order
    outcomes: list[tuple[str, ChildOutcome]] = field(default_factory=list)

    async def __call__(self, plan: list[str], sentences: int) -> list[Found]:
        calls = [
            ChildCall(task=sub, params=SubQuestion(sub_question=sub, sentences=sentences).to_json())
            for sub in plan
        ]
        ended = await self.children.run(self.ctx, self.tool, calls)
        self.outcomes += zip(plan, ended, strict=True)
        return [_found(outcome) if outcome.ok else ([], []) for outcome in ended]

    def to_json(self) -> list[dict[str, Any]]:
        """The children, for the tool's output: which run researched what, and how it ended."""
        return [
            {"run_id": o.run_id, "sub_question": sub, "status": o.status, "error": o.error}
            for sub, o in self.outcomes
        ]


async def research_sub_question(researcher: Researcher, params: dict[str, Any]) -> dict[str, Any]:
    """A child run's research (the tool's ``call_child``): what it found, as JSON for its parent."""
    asked = SubQuestion.from_json(params)
    passages, drafted = await researcher.research_sub_question(asked.sub_question, asked.sentences)
    return {
        "sub_question": asked.sub_question,
        "passages": [p.to_json() for p in passages],
        "drafted": [[sentence, index] for sentence, index in drafted],
    }


def research_notes(found: dict[str, Any]) -> str:
    """A child's findings as Markdown, for its branch of the workspace."""
    lines = [f"# {found['sub_question']}", ""]
    lines += [f"- {sentence} [{index + 1}]" for sentence, index in found["drafted"]] or ["(nothing written)"]
    lines += ["", "## Passages", ""]
    for n, p in enumerate(found["passages"], 1):
        lines += [f"[{n}] **{p['title']}**{' > ' + p['heading'] if p['heading'] else ''} (`{p['id']}`)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _found(outcome: ChildOutcome) -> Found:
    """A child's output back as passages and sentences; what does not decode is an error naming the run."""
    output = outcome.output
    try:
        passages = [_passage(p) for p in output["passages"]]
        drafted = [(str(sentence), int(index)) for sentence, index in output["drafted"]]
    except (TypeError, KeyError, ValueError) as exc:
        raise ToolExecutionError(
            f"child run {outcome.run_id} gave an output that is not a researcher's: {exc}"
        ) from None
    for _, index in drafted:
        if not 0 <= index < len(passages):
            raise ToolExecutionError(
                f"child run {outcome.run_id} cites passage {index + 1} of {len(passages)}"
            )
    return passages, drafted


def _passage(data: Any) -> Passage:
    if not isinstance(data, dict) or set(data) != _PASSAGE_FIELDS:
        raise ValueError(f"a passage has the fields {sorted(_PASSAGE_FIELDS)}")
    return Passage(**data)
