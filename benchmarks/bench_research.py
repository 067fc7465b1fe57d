"""The research agent: where a run's CPU goes, phase by phase, with the citation verifier as it was and
as it is, side by side in one run, and their verdicts compared.

Corpus: the researcher's shipped fallback pages (``examples/researcher/corpus/tutorial/``, seven pages of
the Python Tutorial) indexed once with the real MiniLM. Questions: the researcher's evaluation questions
(``evals/questions.jsonl``), shallow and deep as labelled. The model is scripted at its seam, so that
what is measured is the run's own work, not a model's decode, and does not move with the machine's
load: the writer copies a passage's sentence, reworks one, cites one to the wrong passage and invents
one (which of them, by the question); the judge says yes where more than half the sentence's words
are in the passage. Phases (CPU seconds of the process, median of ``--repeats`` interleaved repeats,
wall beside):

- route: the rules router; retrieve: the hybrid searches (query embeddings included); write and plan:
  the scripted model (near nothing: what a real model costs is its decode, not measured here);
- verify: the verifier's checks of the answer's sentences, of which embed (the embedder's calls, and
  how many texts they embedded) and judge (calls of the judge; each is one model decode in a real run);
  the rest is splitting passages into sentence windows, content words and the choice;
- report: the report's Markdown and JSON.

``before`` is the verifier as it was (``BeforeVerifier``: every sentence checked against every passage,
each embedded in a call of its own with the windows not cached yet, the judge asked for every passage
in its band); ``after`` is ``CitationVerifier.cite``. Both answer every question from the same
retrieval and the same writer; a run whose claims or removals differ is reported (and fails).

Run: ``.venv/bin/python -m benchmarks.bench_research [--repeats 5] [--questions 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shopfloor.connectors.docs import (
    Citation,
    CitationVerifier,
    DocIndex,
    Embedder,
    MiniLM,
    Passage,
    Researcher,
    Support,
    content_words,
)
from shopfloor.connectors.docs._verify import _NUMERAL, _SENTENCE, judge_supports
from shopfloor.tools import Ask

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "researcher"
CORPUS = EXAMPLE / "corpus" / "tutorial"
QUESTIONS = EXAMPLE / "evals" / "questions.jsonl"
INVENTED = "The finally clause was removed from Python 2.9 and replaced by the goto statement."


class BeforeVerifier:
    """The citation verifier as it was before ``cite`` (same measures, same thresholds)."""

    def __init__(self, embedder: Embedder, *, judge: Ask | None = None) -> None:
        self.embedder = embedder
        self.judge = judge
        self.lexical_min, self.semantic_min, self.floor = 0.7, 0.75, 0.4
        self._vectors: dict[str, Any] = {}

    def _windows(self, passage: str) -> list[str]:
        sentences = [s.strip() for s in _SENTENCE.split(passage) if len(s.strip()) > 3]
        if len(sentences) <= 1:
            return sentences or [passage]
        return [f"{a} {b}" for a, b in itertools.pairwise(sentences)] + sentences

    async def check_many(self, sentence: str, passages: Sequence[str]) -> list[Support]:
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
        missing = [w for w in dict.fromkeys(flat) if w not in self._vectors]
        vectors = await asyncio.to_thread(self.embedder.embed, [sentence, *missing])
        if len(self._vectors) + len(missing) > 4096:
            self._vectors.clear()
        self._vectors.update(zip(missing, vectors[1:], strict=True))
        cosines = np.stack([self._vectors[w] for w in flat]) @ vectors[0]
        out: list[Support] = []
        start = 0
        for passage, ws in zip(passages, windows, strict=True):
            semantic = float(cosines[start : start + len(ws)].max()) if ws else 0.0
            start += len(ws)
            lexical = len(words & content_words(passage)) / len(words)
            verdict, reason = await self._decide(sentence, passage, lexical, semantic, numerals)
            out.append(
                Support(
                    supported=verdict != "unsupported",
                    lexical=lexical,
                    semantic=semantic,
                    verdict=verdict,
                    reason=reason,
                )
            )
        return out

    async def _decide(
        self, sentence: str, passage: str, lexical: float, semantic: float, numerals: set[str]
    ) -> tuple[Any, str]:
        missing = sorted(numerals - set(_NUMERAL.findall(passage)))
        if missing:
            return "unsupported", f"the passage does not contain {', '.join(missing[:3])}"
        if lexical >= self.lexical_min:
            return "lexical", f"{lexical:.0%} of its words are in the passage"
        if lexical >= self.floor and semantic >= self.semantic_min:
            return "semantic", f"close in meaning to a passage sentence (cosine {semantic:.2f})"
        if (
            lexical >= self.floor
            and self.judge is not None
            and await judge_supports(self.judge, sentence, passage)
        ):
            return "judge", "the model judged the passage to support it"
        return "unsupported", f"only {lexical:.0%} of its words are in the passage (cosine {semantic:.2f})"

    async def cite(self, drafted: Sequence[tuple[str, int]], passages: Sequence[str]) -> list[Citation]:
        """The researcher's loop as it was: every passage checked, then the citation kept or moved."""
        out = []
        for sentence, cited in drafted:
            supports = await self.check_many(sentence, passages)
            if supports[cited].supported:
                out.append(Citation(chosen=cited, support=supports[cited]))
                continue
            backing = [i for i, s in enumerate(supports) if s.supported]
            chosen = (
                max(backing, key=lambda i: (supports[i].lexical, supports[i].semantic)) if backing else None
            )
            out.append(Citation(chosen=chosen, support=supports[cited if chosen is None else chosen]))
        return out


def _passages(prompt: str) -> list[str]:
    """The writer prompt's numbered passages, as the writer sees them."""
    body = prompt.split("Passages:\n", 1)[1].rsplit("\n\nQuestion:", 1)[0]
    return [
        block.split("\n", 1)[1] if "\n" in block else ""
        for block in re.split(r"(?:^|\n\n)\[\d+\] \(", body)[1:]
    ]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if len(s.strip()) > 30]


def _rework(sentence: str) -> str:
    """Every third word dropped and two words added: a paraphrase between the verifier's thresholds."""
    words = sentence.rstrip(".").split()
    kept = [w for i, w in enumerate(words) if i % 3 != 2]
    return " ".join(["Notably,", *kept, "overall."])


class ScriptedModel:
    """The model at its seam, deterministic; counts its calls by kind."""

    def __init__(self, plan: Callable[[str], list[str]]) -> None:
        self.plan = plan
        self.calls: Counter[str] = Counter()

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        props = schema["properties"]
        if "sub_questions" in props:
            self.calls["plan"] += 1
            return json.dumps(
                {"sub_questions": self.plan(prompt.split("\n", 1)[0].removeprefix("Question: "))}
            )
        if "supported" in props:
            self.calls["judge"] += 1
            passage, sentence = prompt.split("\n\nSentence: ", 1)
            sentence = sentence.split("\n\n", 1)[0]
            words = content_words(sentence)
            return json.dumps(
                {"supported": "yes" if len(words & content_words(passage)) * 2 > len(words) else "no"}
            )
        if "claims" in props:
            self.calls["write"] += 1
            passages = _passages(prompt)
            limit = schema["properties"]["claims"]["maxItems"]
            first = [(_sentences(p) or [p.strip()])[0] for p in passages]
            claims = [{"sentence": first[0], "source": 1}]
            if len(first) > 1:
                claims.append({"sentence": _rework(first[1]), "source": 2})
            if len(first) > 2:
                claims.append({"sentence": first[2], "source": 1})
            claims.append({"sentence": INVENTED, "source": len(first)})
            turn = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(claims)
            return json.dumps({"claims": (claims[turn:] + claims[:turn])[:limit]})
        raise ValueError(f"the scripted model has no answer for {sorted(props)}")


class Metered(Embedder):
    """An embedder that counts its calls, the texts they embedded, and the process CPU they took."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim  # type: ignore[misc]
        self.name = inner.name
        self.calls = self.texts = 0
        self.cpu = 0.0

    def embed(self, texts: Sequence[str]) -> Any:
        cpu = time.process_time()
        try:
            return self.inner.embed(texts)
        finally:
            self.cpu += time.process_time() - cpu
            self.calls += 1
            self.texts += len(texts)


def _timed(
    spent: dict[str, float], phase: str, call: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        cpu = time.process_time()
        try:
            return await call(*args, **kwargs)
        finally:
            spent[phase] = spent.get(phase, 0.0) + time.process_time() - cpu

    return timed


async def one_run(index: DocIndex, embedder: MiniLM, side: str, question: str, depth: str) -> dict[str, Any]:
    """One research of ``question`` with the ``side`` verifier; CPU per phase, counts, and the outcome."""
    spent: dict[str, float] = {}
    metered = Metered(embedder)
    model = ScriptedModel(lambda q: [f"{q} definition", f"{q} example"])

    async def retrieve(query: str, k: int) -> list[Passage]:
        return [Passage.from_hit(h, "tutorial") for h in index.search(query, k=k)]

    judge = _timed(spent, "judge", model)
    verifier: Any = (BeforeVerifier if side == "before" else CitationVerifier)(metered, judge=judge)
    verifier.cite = _timed(spent, "verify", verifier.cite)
    researcher = Researcher(
        retrieve=_timed(spent, "retrieve", retrieve), verifier=verifier, ask=_timed(spent, "write", model)
    )
    wall, cpu = time.perf_counter(), time.process_time()
    route = await _timed(spent, "route", researcher.route)(question, depth=None if depth == "auto" else depth)
    report = await researcher.research(question, route=route)
    report_cpu = time.process_time()
    report.markdown()
    outcome = report.to_json()
    spent["report"] = time.process_time() - report_cpu
    spent["total"] = time.process_time() - cpu
    spent["wall"] = time.perf_counter() - wall
    spent["embed"] = metered.cpu
    spent["verify"] = spent.get("verify", 0.0)
    spent["judge"] = spent.get("judge", 0.0)
    spent["verify_rest"] = spent["verify"] - spent["embed"] - spent["judge"]
    counts = {
        "embed_calls": metered.calls,
        "embedded_texts": metered.texts,
        "judge_calls": model.calls["judge"],
    }
    kept = [
        (
            c["sentence"],
            c["cited"],
            c["support"]["verdict"],
            c["support"]["lexical"],
            c["support"]["semantic"],
        )
        for c in outcome["claims"]
    ]
    return {
        "spent": spent,
        "counts": counts,
        "claims": kept,
        "removed": outcome["removed"],
        "depth": report.depth,
    }


PHASES = ("route", "retrieve", "write", "verify", "embed", "judge", "verify_rest", "report", "total", "wall")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--questions", type=int, default=12, help="at most this many of each depth")
    args = parser.parse_args()
    asked = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    by_depth = {
        d: [q["input"] for q in asked if q["expected"]["depth"] == d][: args.questions]
        for d in ("shallow", "deep")
    }
    embedder = MiniLM()
    with tempfile.TemporaryDirectory() as tmp, DocIndex(Path(tmp) / "tutorial.db", embedder) as index:
        cpu = time.process_time()
        added = index.add([CORPUS], base=CORPUS.parent)
        print(
            f"corpus: {added.added} pages, {added.chunks} chunks indexed "
            f"in {time.process_time() - cpu:.1f} s CPU"
        )
        mismatches = 0
        for depth, questions in by_depth.items():
            rows: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
            counts: dict[str, Counter[str]] = {"before": Counter(), "after": Counter()}
            for repeat in range(args.repeats):
                for question in questions:
                    runs = {}
                    for side in ("before", "after") if repeat % 2 == 0 else ("after", "before"):
                        runs[side] = asyncio.run(one_run(index, embedder, side, question, depth))
                        for phase in PHASES:
                            rows[side].setdefault(phase, []).append(runs[side]["spent"].get(phase, 0.0))
                        if repeat == 0:
                            counts[side].update(runs[side]["counts"])
                    if not _same(runs["before"], runs["after"]):
                        mismatches += 1
                        print(
                            f"  DIFFERENT verdicts for {question!r}:\n"
                            f"    {runs['before']}\n    {runs['after']}"
                        )
            n = len(questions)
            print(
                f"\n{depth}: {n} questions, CPU seconds per question "
                f"(median of {args.repeats} interleaved repeats of the set)"
            )
            print(f"  {'phase':<12} {'before':>9} {'after':>9} {'ratio':>7}")
            for phase in PHASES:
                b, a = (_per_question(rows[side][phase], n) for side in ("before", "after"))
                print(f"  {phase:<12} {b:9.3f} {a:9.3f} {b / a if a else float('inf'):6.1f}x")
            for key in ("embed_calls", "embedded_texts", "judge_calls"):
                b, a = counts["before"][key] / n, counts["after"][key] / n
                print(f"  {key:<12} {b:9.1f} {a:9.1f}   per question")
        print(
            f"\nverdicts: {f'{mismatches} questions DIFFER' if mismatches else 'identical'} before and after"
        )
        return 1 if mismatches else 0


def _per_question(values: list[float], n: int) -> float:
    """The median over repeats of a set's total, per question."""
    return statistics.median(sum(values[i : i + n]) for i in range(0, len(values), n)) / n


def _same(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The same claims (sentence, passage, verdict, word share) and removals; the cosine the same where
    the verifier now measures it (``after`` measures it only where the words leave the verdict open)."""
    if (before["depth"], len(before["claims"]), len(before["removed"])) != (
        after["depth"],
        len(after["claims"]),
        len(after["removed"]),
    ):
        return False
    for (*b, b_semantic), (*a, a_semantic) in zip(before["claims"], after["claims"], strict=True):
        if b != a or (a_semantic is not None and abs(a_semantic - b_semantic) > 1e-5):
            return False
    cosine = re.compile(r" \(cosine [0-9.-]+\)$")
    return all(
        (b["sentence"], b["cited"], cosine.sub("", b["reason"]))
        == (a["sentence"], a["cited"], cosine.sub("", a["reason"]))
        for b, a in zip(before["removed"], after["removed"], strict=True)
    )


if __name__ == "__main__":
    sys.exit(main())
