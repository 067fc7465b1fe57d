"""Does a passage support a sentence? The research writer's citations checked before an answer leaves.

Two measures, both cheap and deterministic: **lexical** support is the share of the sentence's content
words (stop words dropped, light stemming) that the passage contains; **semantic** support is the best
cosine between the sentence's embedding and the embeddings of the passage's sentences (a window of
two). A sentence is supported when most of its words are in the passage, or when it says nearly what
one of the passage's sentences says and shares a fair part of its words. Between the two thresholds a
judge (the run's model, asked yes or no under a schema) decides where one is given; without one the
sentence is not supported. A numeral in the sentence that the passage lacks is never supported: the
commonest way a small model misquotes.

The embedding is the measure's cost (the judge aside): it is made only where the words leave the verdict
open (between ``floor`` and ``lexical_min``) or where meaning breaks a tie between passages that carry
the sentence's words equally; elsewhere a ``Support`` records no cosine. ``cite`` checks an answer's
sentences against the passages they cite, in one embedder call for all of them, and looks at other
passages only for a sentence its own does not support, the judge asked only where its yes would change
the choice (``benchmarks/bench_research.py`` measures it against checking every passage).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shopfloor.connectors.docs._embed import Embedder
from shopfloor.connectors.docs._words import STOP_WORDS
from shopfloor.tools import Ask

__all__ = ["Citation", "CitationVerifier", "Support", "content_words", "judge_supports"]

_WORD = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_NUMERAL = re.compile(r"\b\d+(?:\.\d+)?\b")
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+")
#: texts (sentences, passage windows) whose embeddings a verifier keeps, and passages it keeps split
_CACHED = 4096
Verdict = Literal["lexical", "semantic", "judge", "unsupported"]


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s", "ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """The stems of the words that carry meaning (``str.split`` -> ``split``, ``modules`` -> ``modul``)."""
    words: set[str] = set()
    for token in _WORD.findall(text.lower()):
        for part in {token, *token.split(".")}:
            if part and part not in STOP_WORDS:
                words.add(_stem(part))
    return words


@dataclass(frozen=True, kw_only=True)
class Support:
    supported: bool
    #: the share of the sentence's content words found in the passage
    lexical: float
    #: the best cosine of the sentence against the passage's sentences; None: not needed, the words decided
    semantic: float | None
    verdict: Verdict
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "lexical": round(self.lexical, 3),
            "semantic": None if self.semantic is None else round(self.semantic, 3),
            "verdict": self.verdict,
            "reason": self.reason,
        }


@dataclass(frozen=True, kw_only=True)
class Citation:
    """Where a sentence's citation ends: the passage it cites or one it was moved to, or removed."""

    #: the index of the passage that supports the sentence; None: none does, the sentence is removed
    chosen: int | None
    #: the chosen passage's support, or the cited passage's where the sentence is removed
    support: Support


@dataclass(frozen=True, kw_only=True)
class _Sentence:
    text: str
    words: frozenset[str]
    numerals: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Sentence:
        return cls(
            text=text, words=frozenset(content_words(text)), numerals=frozenset(_NUMERAL.findall(text))
        )


@dataclass(frozen=True, kw_only=True)
class _Passage:
    #: its sentences and each two neighbours, whose best cosine is the semantic support
    windows: list[str]
    words: frozenset[str]
    numerals: frozenset[str]


_NOTHING = Support(
    supported=False,
    lexical=0.0,
    semantic=None,
    verdict="unsupported",
    reason="the sentence says nothing checkable",
)


def _unsupported(lexical: float, semantic: float | None) -> tuple[Verdict, str]:
    cosine = "" if semantic is None else f" (cosine {semantic:.2f})"
    return "unsupported", f"only {lexical:.0%} of its words are in the passage{cosine}"


def _support(lexical: float, semantic: float | None, verdict: tuple[Verdict, str]) -> Support:
    return Support(
        supported=verdict[0] != "unsupported",
        lexical=lexical,
        semantic=semantic,
        verdict=verdict[0],
        reason=verdict[1],
    )


_JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"enum": ["yes", "no"]}},
    "required": ["supported"],
    "additionalProperties": False,
}


async def judge_supports(judge: Ask, sentence: str, passage: str) -> bool:
    """The model as a judge: does ``passage`` state what ``sentence`` says (yes or no under a schema;
    an unusable reply is a no)?"""
    reply = await judge(
        f"Passage:\n{passage[:1500]}\n\nSentence: {sentence}\n\n"
        "Does the passage state what the sentence says? Answer yes or no.",
        schema=_JUDGE_SCHEMA,
        system="You check whether a passage supports a sentence. Answer no unless it clearly does.",
        max_tokens=16,
    )
    try:
        said = json.loads(reply).get("supported")
    except (json.JSONDecodeError, AttributeError):
        said = None
    return bool(said == "yes")


class CitationVerifier:
    def __init__(
        self,
        embedder: Embedder,
        *,
        lexical_min: float = 0.7,
        semantic_min: float = 0.75,
        floor: float = 0.4,
        judge: Ask | None = None,
    ) -> None:
        self.embedder = embedder
        #: supported by its words alone at or above this share
        self.lexical_min = lexical_min
        #: supported by meaning at or above this cosine (with at least ``floor`` of its words)
        self.semantic_min = semantic_min
        #: below this share of its words a sentence is never supported
        self.floor = floor
        self.judge = judge
        #: embeddings of sentences and passage windows, and each passage's windows, words and numerals,
        #: kept across the checks of a run: an answer's passages are the same for all its sentences
        self._vectors: dict[str, Any] = {}
        self._passages: dict[str, _Passage] = {}

    async def check(self, sentence: str, passage: str) -> Support:
        return (await self.check_many(sentence, [passage]))[0]

    async def check_many(self, sentence: str, passages: Sequence[str]) -> list[Support]:
        """``sentence`` against each passage, in order (the judge asked for each it decides)."""
        claim = _Sentence.of(sentence)
        if not claim.words:
            return [_NOTHING] * len(passages)
        known = [self._passage(p) for p in passages]
        await self._embed(claim, [k for k in known if self._by_words(claim, k) is None])
        return [await self._support(claim, text, k) for text, k in zip(passages, known, strict=True)]

    async def cite(self, drafted: Sequence[tuple[str, int]], passages: Sequence[str]) -> list[Citation]:
        """Each ``(sentence, index of the passage it cites)`` checked against that passage; a sentence it
        does not support is moved to the passage that does with the most of its words (the closest in
        meaning among equals, the first among those), or removed. The outcome of ``check_many`` against
        every passage and that choice, for less: what the cited passages leave open is embedded in one
        call for all the sentences, another passage only for a sentence its own does not support, and
        the judge is asked only where its yes would change the choice."""
        claims = [_Sentence.of(sentence) for sentence, _ in drafted]
        known = [self._passage(p) for p in passages]
        await self._embed_texts(
            text
            for claim, (_, cited) in zip(claims, drafted, strict=True)
            if claim.words and self._by_words(claim, known[cited]) is None
            for text in (claim.text, *known[cited].windows)
        )
        return [
            await self._cite(claim, cited, passages, known)
            for claim, (_, cited) in zip(claims, drafted, strict=True)
        ]

    async def _cite(
        self, claim: _Sentence, cited: int, passages: Sequence[str], known: Sequence[_Passage]
    ) -> Citation:
        if not claim.words:
            return Citation(chosen=None, support=_NOTHING)
        support = await self._support(claim, passages[cited], known[cited])
        if support.supported:
            return Citation(chosen=cited, support=support)
        # The others by how many of the sentence's words they hold, most first: the first such group
        # with a passage that supports the sentence holds the choice (words first, then meaning).
        least = min(self.floor, self.lexical_min)
        shared: dict[int, list[int]] = {}
        for i, k in enumerate(known):
            count = len(claim.words & k.words)
            if i != cited and count / len(claim.words) >= least and not claim.numerals - k.numerals:
                shared.setdefault(count, []).append(i)
        for count in sorted(shared, reverse=True):
            group, lexical = shared[count], count / len(claim.words)
            if lexical >= self.lexical_min and len(group) == 1:
                return Citation(chosen=group[0], support=_support(lexical, None, self._lexical(lexical)))
            await self._embed(claim, [known[i] for i in group])
            # (cosine, -index) orders a group as the choice does: the closest, the first among equals
            ranked = sorted(((self._cosine(claim, known[i]), -i) for i in group), reverse=True)
            undecided = []
            for semantic, first in ranked:
                i = -first
                verdict = self._by_words(claim, known[i]) or self._by_meaning(lexical, semantic)
                if verdict is not None and verdict[0] != "unsupported":
                    return Citation(chosen=i, support=_support(lexical, semantic, verdict))
                undecided.append((semantic, i))
            # None carried by words or meaning: the judge, closest first, until one says yes.
            for semantic, i in undecided:
                if self.judge is None:
                    break
                judged = await self._judged(claim.text, passages[i], lexical, semantic)
                if judged[0] != "unsupported":
                    return Citation(chosen=i, support=_support(lexical, semantic, judged))
        return Citation(chosen=None, support=support)

    def _passage(self, text: str) -> _Passage:
        known = self._passages.get(text)
        if known is None:
            if len(self._passages) >= _CACHED:
                self._passages.clear()
            sentences = [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 3]
            if len(sentences) <= 1:
                windows = sentences or [text]
            else:
                windows = [f"{a} {b}" for a, b in itertools.pairwise(sentences)] + sentences
            known = self._passages[text] = _Passage(
                windows=windows,
                words=frozenset(content_words(text)),
                numerals=frozenset(_NUMERAL.findall(text)),
            )
        return known

    async def _embed(self, claim: _Sentence, passages: Sequence[_Passage]) -> None:
        """The sentence and the windows of ``passages``, embedded (those not embedded yet, in one call)."""
        if passages:
            await self._embed_texts([claim.text, *(w for k in passages for w in k.windows)])

    async def _embed_texts(self, texts: Iterable[str]) -> None:
        """Those of ``texts`` not embedded yet, in one call of the embedder; all of ``texts`` have their
        vectors after it (a full cache is emptied first, not after)."""
        wanted = list(dict.fromkeys(texts))
        missing = [t for t in wanted if t not in self._vectors]
        if not missing:
            return
        if len(self._vectors) + len(missing) > _CACHED:
            self._vectors.clear()
            missing = wanted
        vectors = await asyncio.to_thread(self.embedder.embed, missing)
        self._vectors.update(zip(missing, vectors, strict=True))

    def _cosine(self, claim: _Sentence, passage: _Passage) -> float:
        """The best cosine of the sentence against the passage's windows (both embedded by ``_embed``)."""
        windows = np.stack([self._vectors[w] for w in passage.windows])
        return float((windows @ self._vectors[claim.text]).max())

    async def _support(self, claim: _Sentence, text: str, passage: _Passage) -> Support:
        lexical = len(claim.words & passage.words) / len(claim.words)
        verdict = self._by_words(claim, passage)
        if verdict is not None:
            return _support(lexical, None, verdict)
        await self._embed(claim, [passage])  # done already unless the cache was emptied since
        semantic = self._cosine(claim, passage)
        verdict = self._by_meaning(lexical, semantic) or await self._judged(
            claim.text, text, lexical, semantic
        )
        return _support(lexical, semantic, verdict)

    def _by_words(self, claim: _Sentence, passage: _Passage) -> tuple[Verdict, str] | None:
        """The verdict where the words decide it; None where they leave it to meaning (and the judge)."""
        missing = sorted(claim.numerals - passage.numerals)
        if missing:
            return "unsupported", f"the passage does not contain {', '.join(missing[:3])}"
        lexical = len(claim.words & passage.words) / len(claim.words)
        if lexical >= self.lexical_min:
            return self._lexical(lexical)
        if lexical < self.floor:
            return _unsupported(lexical, None)
        return None

    def _lexical(self, lexical: float) -> tuple[Verdict, str]:
        return "lexical", f"{lexical:.0%} of its words are in the passage"

    def _by_meaning(self, lexical: float, semantic: float) -> tuple[Verdict, str] | None:
        """Supported by meaning, or None: the judge decides (unsupported without one)."""
        if semantic >= self.semantic_min:
            return "semantic", f"close in meaning to a passage sentence (cosine {semantic:.2f})"
        return None

    async def _judged(
        self, sentence: str, passage: str, lexical: float, semantic: float
    ) -> tuple[Verdict, str]:
        if self.judge is not None and await judge_supports(self.judge, sentence, passage):
            return "judge", "the model judged the passage to support it"
        return _unsupported(lexical, semantic)
