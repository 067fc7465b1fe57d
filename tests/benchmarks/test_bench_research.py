"""The citation verifier's ``cite`` against the verifier as it was (``BeforeVerifier``, which checked every
sentence against every passage): the same verdicts on a set of sentence/passage pairs from the shipped
tutorial pages, with the real MiniLM and a scripted judge; and the comparison catches a verifier that
differs."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from shopfloor.connectors.docs import (
    Citation,
    CitationVerifier,
    MiniLM,
    chunk_sections,
    parser_for,
)

pytestmark = pytest.mark.slow  # the embedding model runs on the CPU

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "researcher" / "corpus" / "tutorial"
sys.path.insert(0, str(ROOT))  # the benchmarks package, whose baseline verifier this test compares with
from benchmarks.bench_research import BeforeVerifier, Metered, ScriptedModel  # noqa: E402


def _pairs() -> tuple[list[str], list[tuple[str, int]]]:
    """Eight passages of two chapters (and one of them again), and sentences citing them: copied,
    reworked, cited to the wrong passage, misquoted by a numeral, invented, empty of content words."""
    passages: list[str] = []
    for page in ("errors.html", "venv.html"):
        parser = parser_for(CORPUS / page)
        assert parser is not None
        parsed = parser.parse((CORPUS / page).read_bytes(), page)
        passages += [c.text for c in chunk_sections(parsed.sections) if len(c.text) > 200][:4]
    firsts = [
        next(s for s in re.split(r"(?<=[.!?])\s+", p.replace("\n", " ")) if len(s) > 40) for p in passages
    ]
    fillers = itertools.cycle(["plainly", "roughly", "certainly", "frankly", "basically", "mostly"])
    drafted: list[tuple[str, int]] = []
    for i, sentence in enumerate(firsts):
        words = sentence.rstrip(".").split()
        drafted += [
            (sentence, i),
            (sentence, (i + 1) % len(passages)),
            (" ".join(next(fillers) if n % 3 == 2 else w for n, w in enumerate(words)) + ".", i),
            (" ".join(next(fillers) if n % 2 else w for n, w in enumerate(words)) + ".", i),
            (
                " ".join(next(fillers) if n % 2 else w for n, w in enumerate(words)) + ".",
                (i + 3) % len(passages),
            ),
            (f"{sentence.rstrip('.')} in 1987.", i),
        ]
    # Passage 0 again with a sentence more: passages holding a sentence's words equally, between which
    # meaning (and the order of the judge's questions) chooses.
    passages.append(f"{passages[0]} A closing remark follows here.")
    halved = " ".join(f"other{n}" if n % 4 == 1 else w for n, w in enumerate(firsts[0].split()))
    drafted += [(firsts[0], 3), (halved, 3), (halved, 5)]
    drafted += [
        ("The finally clause was removed from Python and replaced by the goto statement.", 0),
        ("It is so.", 1),
    ]
    return passages, drafted


def differences(before: list[Citation], after: list[Citation]) -> list[int]:
    """Where two verifiers' citations differ: the passage chosen, the verdict, the share of words; the
    cosine and the reason where both measured it (``cite`` measures it only where words leave it open)."""
    out = []
    for n, (b, a) in enumerate(zip(before, after, strict=True)):
        bs, as_ = b.support, a.support
        same = (b.chosen, bs.supported, bs.verdict, bs.lexical) == (
            a.chosen,
            as_.supported,
            as_.verdict,
            as_.lexical,
        )
        if as_.semantic is not None:
            same = same and bs.semantic is not None and abs(bs.semantic - as_.semantic) < 1e-5
        cosine = re.compile(r" \(cosine [0-9.-]+\)$")
        same = same and cosine.sub("", bs.reason) == cosine.sub("", as_.reason)
        if not same:
            out.append(n)
    return out


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


@pytest.fixture(scope="module")
def before(minilm: MiniLM) -> tuple[list[Citation], int, Metered]:
    """The old verifier's citations of the pairs, how many times it asked the judge, what it embedded."""
    passages, drafted = _pairs()
    judge, embedder = ScriptedModel(plan=lambda question: []), Metered(minilm)
    cited = asyncio.run(BeforeVerifier(embedder, judge=judge).cite(drafted, passages))
    return cited, judge.calls["judge"], embedder


async def test_cite_gives_the_verdicts_of_checking_every_passage(
    minilm: MiniLM, before: tuple[list[Citation], int, Metered]
) -> None:
    passages, drafted = _pairs()
    judge = ScriptedModel(plan=lambda question: [])
    embedder = Metered(minilm)
    after = await CitationVerifier(embedder, judge=judge).cite(drafted, passages)
    old, old_judged, old_embedder = before
    # The pairs reach every verdict, a re-citation and a removal, so that the comparison means something.
    verdicts = {c.support.verdict for c in old}
    assert verdicts == {"lexical", "semantic", "judge", "unsupported"}
    assert any(c.chosen not in (None, cited) for c, (_, cited) in zip(old, drafted, strict=True))
    assert any(c.chosen is None for c in old)
    assert differences(old, after) == []
    # For less: fewer questions to the judge, fewer texts embedded in fewer calls, and no cosine where
    # the words decided.
    assert judge.calls["judge"] < old_judged
    assert embedder.texts < old_embedder.texts and embedder.calls < old_embedder.calls
    kept_by_words = [
        c
        for c, (_, cited) in zip(after, drafted, strict=True)
        if c.chosen == cited and c.support.verdict == "lexical"
    ]
    assert kept_by_words and all(c.support.semantic is None for c in kept_by_words)


class NeverRecites(CitationVerifier):
    """Broken: a sentence its cited passage does not support is removed, never moved."""

    async def _cite(self, claim: Any, cited: int, passages: Any, known: Any) -> Citation:
        found = await super()._cite(claim, cited, passages, known)
        if found.chosen in (None, cited):
            return found
        return Citation(chosen=None, support=await self._support(claim, passages[cited], known[cited]))


class NoMeaning(CitationVerifier):
    """Broken: the embedding measure never supports a sentence."""

    def _by_meaning(self, lexical: float, semantic: float) -> Any:
        return None


@pytest.mark.parametrize("broken", [NeverRecites, NoMeaning])
async def test_the_comparison_catches_a_verifier_that_differs(
    minilm: MiniLM, before: tuple[list[Citation], int, Metered], broken: type[CitationVerifier]
) -> None:
    passages, drafted = _pairs()
    after = await broken(minilm, judge=ScriptedModel(plan=lambda question: [])).cite(drafted, passages)
    assert differences(before[0], after)
