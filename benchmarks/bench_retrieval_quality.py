"""The researcher's retrieval quality: document-level recall@5 and MRR of each ranking, side by side.

For every question of the evaluation (``examples/researcher/evals/questions.jsonl``) and of the held-out
set (``heldout.jsonl``: questions written from reference, library and HOWTO pages outside the tutorial,
to catch a ranking fitted to the evaluation) that has gold documents, the ``python__research`` tool
itself is called at the question's labelled depth, and its output's ``results`` are scored as the
evaluation's retrieval scorer scores them: the distinct documents in order, the first 5, recall against
the gold ones, and the reciprocal rank of the first gold one. The model is a scripted one at its seam:
it writes no sentence, so the tool retrieves exactly the queries it would for a real model but for a
deep question's sub-questions, which a real planner writes: here the planner repeats the question (the
tool drops a repeat), so a deep question's row measures the question's own search alone.

Each ranking is an ``index.ranking`` (``shopfloor.connectors.docs.Ranking``) with a search mode; the
``hybrid`` row is the ranking as it was, the ``default`` row the one the index now ships. CPU ms per
question (the process's, load-independent) is beside each row.

Collections: ``--collection python-docs`` under ``--home`` (``SHOPFLOOR_HOME`` by default), ingested
first from the researcher's ``sources`` when it is missing or stale (unchanged pages cost a hash; the
first ingest of the full documentation is ~11 min of CPU); ``--fallback`` ingests the shipped
``corpus/tutorial`` into a collection of a temporary home instead (the evaluation's questions only: the
held-out ones are about pages not shipped; gold pages outside the tutorial cap its recall below 1).

Run: ``.venv/bin/python -m benchmarks.bench_retrieval_quality [--fallback] [--home DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shopfloor.config import load_settings
from shopfloor.connectors import Secrets
from shopfloor.connectors._docs import DocsConnector, ingest_sources
from shopfloor.connectors.docs import DocCollections, Ranking, resolve_sources
from shopfloor.spec import ConnectorSpec, load_spec, spec_resolvers
from shopfloor.tools import ToolContext, ToolServices

RESEARCHER = Path(__file__).resolve().parents[1] / "examples" / "researcher"
EVALS = RESEARCHER / "evals"
K = 5
#: per question: its depth, recall, reciprocal rank and the documents retrieved
Rows = list[tuple[str, float, float, list[str]]]


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    mode: str
    ranking: Ranking


#: the ranking as it was before ``Ranking`` had choices: each variant below changes one thing of it
BEFORE = Ranking(stop_words=False, candidates=50, document_boost=0.0, per_document=0, rerank=0)
VARIANTS = [
    Variant(name="bm25", mode="bm25", ranking=BEFORE),
    Variant(name="dense", mode="dense", ranking=BEFORE),
    Variant(name="hybrid (before)", mode="hybrid", ranking=BEFORE),
    Variant(name="+stop words", mode="hybrid", ranking=replace(BEFORE, stop_words=True)),
    Variant(name="+heading x3", mode="hybrid", ranking=replace(BEFORE, heading_weight=3.0)),
    Variant(name="+100 candidates", mode="hybrid", ranking=replace(BEFORE, candidates=100)),
    Variant(name="+dense x2", mode="hybrid", ranking=replace(BEFORE, dense_weight=2.0)),
    Variant(name="+bm25 x2", mode="hybrid", ranking=replace(BEFORE, bm25_weight=2.0)),
    Variant(name="+document boost .5", mode="hybrid", ranking=replace(BEFORE, document_boost=0.5)),
    Variant(name="+rerank 20 by cosine", mode="hybrid", ranking=replace(BEFORE, rerank=20)),
    Variant(name="+1 per document", mode="hybrid", ranking=replace(BEFORE, per_document=1)),
    Variant(
        name="+1 per doc, bm25 x2", mode="hybrid", ranking=replace(BEFORE, per_document=1, bm25_weight=2.0)
    ),
    Variant(
        name="+1 per doc, dense x2", mode="hybrid", ranking=replace(BEFORE, per_document=1, dense_weight=2.0)
    ),
    Variant(
        name="+1 per doc, 100 cand.", mode="hybrid", ranking=replace(BEFORE, per_document=1, candidates=100)
    ),
    Variant(
        name="+1 per doc, stop words", mode="hybrid", ranking=replace(BEFORE, per_document=1, stop_words=True)
    ),
    Variant(
        name="+1 per doc, stop, 100, bm25 x2",
        mode="hybrid",
        ranking=Ranking(per_document=1, stop_words=True, candidates=100, bm25_weight=2.0),
    ),
    #: per document 1, stop words, 100 candidates
    Variant(name="default (now)", mode="hybrid", ranking=Ranking()),
]


async def _scripted(prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256) -> str:
    """The planner repeats the question; the writer writes nothing (no verification to pay for)."""
    if "sub_questions" in schema["properties"]:
        question = prompt.partition("Question: ")[2].partition("\n")[0]
        return json.dumps({"sub_questions": [question]})
    return json.dumps({"claims": []})


def load_questions(path: Path) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [item for item in items if item["expected"]["docs"]]


def score(results: list[dict[str, Any]], gold: set[str]) -> tuple[float, float]:
    """Recall@K and reciprocal rank over the distinct documents of ``results``, as the eval scores them."""
    docs = list(dict.fromkeys(str(r["doc"]) for r in results))[:K]
    rank = next((n for n, doc in enumerate(docs, 1) if doc in gold), None)
    return len(gold & set(docs)) / len(gold), (1.0 / rank if rank else 0.0)


async def measure(home: Path, spec: ConnectorSpec, variant: Variant, questions: list[dict[str, Any]]) -> Rows:
    assert spec.docs is not None
    docs = spec.docs.model_copy(update={"mode": variant.mode})
    connector = DocsConnector(
        spec.model_copy(update={"docs": docs}), Secrets(None), collections=DocCollections.under(home)
    )
    try:
        (await connector.index()).ranking = variant.ranking
        tools = {tool.name: tool for tool in await connector.tools()}
        research = tools[f"{spec.name}__research"]
        rows = []
        for n, item in enumerate(questions):
            depth = item["expected"]["depth"]
            ctx = ToolContext(
                run_id="bench", step=n, call_id=f"c{n}", idempotency_key=f"bench:{n}",
                services=ToolServices(ask=_scripted),
            )  # fmt: skip
            out = await research.call({"question": item["input"], "depth": depth}, ctx)
            recall, rr = score(out["results"], set(item["expected"]["docs"]))
            rows.append((depth, recall, rr, list(dict.fromkeys(r["doc"] for r in out["results"]))[:K]))
        return rows
    finally:
        await connector.aclose()


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "-"


def table(
    title: str, results: dict[str, list[tuple[str, float, float, list[str]]]], cpu: dict[str, float]
) -> None:
    print(f"\n{title}")
    print("| ranking | recall@5 | shallow | deep | MRR | CPU ms/question |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        recall = [r for _, r, _, _ in rows]
        print(
            f"| {name} | {_mean(recall)} | {_mean([r for d, r, _, _ in rows if d == 'shallow'])} "
            f"| {_mean([r for d, r, _, _ in rows if d == 'deep'])} | {_mean([rr for _, _, rr, _ in rows])} "
            f"| {cpu[name]:.0f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="SHOPFLOOR_HOME of the collection")
    parser.add_argument("--fallback", action="store_true", help="the shipped tutorial pages, in a fresh home")
    parser.add_argument("--misses", action="store_true", help="list each question the default ranking misses")
    args = parser.parse_args(argv)
    loaded = load_spec(RESEARCHER, resolvers=spec_resolvers())
    spec = next(c for c in loaded.spec.connectors if c.docs is not None)
    assert spec.docs is not None
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) if args.fallback else (args.home or load_settings().home)
        docs = (
            spec.docs.model_copy(update={"sources": list(spec.docs.fallback)}) if args.fallback else spec.docs
        )
        resolved = resolve_sources(docs, RESEARCHER)
        started = time.monotonic()
        reports = ingest_sources(DocCollections.under(home), docs, resolved.paths)
        added = sum(r.added + r.replaced for r in reports)
        print(f"{docs.collection} in {home}: {[str(p) for p in resolved.paths]}, {added} pages (re)ingested "
              f"in {time.monotonic() - started:.0f} s")  # fmt: skip
        sets = {"evaluation": load_questions(EVALS / "questions.jsonl")}
        if not args.fallback:  # the held-out questions' pages are not among the shipped seven
            sets["held-out"] = load_questions(EVALS / "heldout.jsonl")
        for title, questions in sets.items():
            results, cpu = {}, {}
            for variant in VARIANTS:
                before = time.process_time()
                results[variant.name] = asyncio.run(measure(home, spec, variant, questions))
                cpu[variant.name] = (time.process_time() - before) * 1000 / len(questions)
            table(
                f"{title}: {len(questions)} questions with gold documents ({docs.collection})", results, cpu
            )
            if args.misses:
                for item, (_, recall, _, got) in zip(questions, results["default (now)"], strict=True):
                    if recall < 1:
                        print(f"  miss {item['id']}: gold {item['expected']['docs']} got {got}")


if __name__ == "__main__":
    sys.exit(main())
