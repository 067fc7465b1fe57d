"""Does a passage support a sentence? The research writer's citations checked before an answer leaves.

Two measures, both cheap and deterministic: **lexical** support is the share of the sentence's content
words (stop words dropped, light stemming) that the passage contains; **semantic** support is the best
cosine between the sentence's embedding and the embeddings of the passage's sentences (a window of
two). A sentence is supported when most of its words are in the passage, or when it says nearly what
one of the passage's sentences says and shares a fair part of its words. Between the two thresholds a
judge (the run's model, asked yes or no under a schema) decides where one is given; without one the
sentence is not supported. A numeral in the sentence that the passage lacks is never supported: the
commonest way a small model misquotes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shopfloor.connectors.docs._embed import Embedder
from shopfloor.connectors.docs._words import STOP_WORDS
from shopfloor.tools import Ask

__all__ = ["CitationVerifier", "Support", "content_words"]

_WORD = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_NUMERAL = re.compile(r"\b\d+(?:\.\d+)?\b")
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+|\n+")
#: passage windows whose embeddings a verifier keeps
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
    #: the best cosine of the sentence against the passage's sentences
    semantic: float
    verdict: Verdict
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "lexical": round(self.lexical, 3),
            "semantic": round(self.semantic, 3),
            "verdict": self.verdict,
            "reason": self.reason,
        }


_JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"enum": ["yes", "no"]}},
    "required": ["supported"],
    "additionalProperties": False,
}


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
        self._vectors: dict[str, Any] = {}

    def _windows(self, passage: str) -> list[str]:
        sentences = [s.strip() for s in _SENTENCE.split(passage) if len(s.strip()) > 3]
        if len(sentences) <= 1:
            return sentences or [passage]
        return [f"{a} {b}" for a, b in itertools.pairwise(sentences)] + sentences

    async def check(self, sentence: str, passage: str) -> Support:
        return (await self.check_many(sentence, [passage]))[0]

    async def check_many(self, sentence: str, passages: Sequence[str]) -> list[Support]:
        """``sentence`` against each passage, in order."""
        words = content_words(sentence)
        numerals = set(_NUMERAL.findall(sentence))
        if not words:
            nothing = Support(
                supported=False,
                lexical=0.0,
                semantic=0.0,
                verdict="unsupported",
                reason="the sentence says nothing checkable",
            )
            return [nothing] * len(passages)
        windows = [self._windows(p) for p in passages]
        flat = [w for ws in windows for w in ws]
        # The passages are the same for every sentence of an answer: their windows are embedded once.
        missing = [w for w in dict.fromkeys(flat) if w not in self._vectors]
        vectors = await asyncio.to_thread(self.embedder.embed, [sentence, *missing])
        if len(self._vectors) + len(missing) > _CACHED:
            self._vectors.clear()
        self._vectors.update(zip(missing, vectors[1:], strict=True))
        cosines = (
            np.stack([self._vectors[w] for w in flat]) @ vectors[0] if flat else np.zeros(0, dtype=np.float32)
        )
        out: list[Support] = []
        start = 0
        for passage, ws in zip(passages, windows, strict=True):
            semantic = float(cosines[start : start + len(ws)].max()) if ws else 0.0
            start += len(ws)
            lexical = len(words & content_words(passage)) / len(words)
            out.append(await self._verdict(sentence, passage, lexical, semantic, numerals))
        return out

    async def _verdict(
        self, sentence: str, passage: str, lexical: float, semantic: float, numerals: set[str]
    ) -> Support:
        verdict, reason = await self._decide(sentence, passage, lexical, semantic, numerals)
        return Support(
            supported=verdict != "unsupported",
            lexical=lexical,
            semantic=semantic,
            verdict=verdict,
            reason=reason,
        )

    async def _decide(
        self, sentence: str, passage: str, lexical: float, semantic: float, numerals: set[str]
    ) -> tuple[Verdict, str]:
        missing = sorted(numerals - set(_NUMERAL.findall(passage)))
        if missing:
            return "unsupported", f"the passage does not contain {', '.join(missing[:3])}"
        if lexical >= self.lexical_min:
            return "lexical", f"{lexical:.0%} of its words are in the passage"
        if lexical >= self.floor and semantic >= self.semantic_min:
            return "semantic", f"close in meaning to a passage sentence (cosine {semantic:.2f})"
        if lexical >= self.floor and self.judge is not None:
            reply = await self.judge(
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
            if said == "yes":
                return "judge", "the model judged the passage to support it"
        return "unsupported", f"only {lexical:.0%} of its words are in the passage (cosine {semantic:.2f})"
