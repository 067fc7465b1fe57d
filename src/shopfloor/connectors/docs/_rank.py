"""How a collection orders its chunks for a query: the BM25 query, the weights of the FTS5 columns, and the
fusion of the BM25 and dense rankings by reciprocal rank (k = 60), then the documents' share of the top.

``Ranking`` holds the choices; its defaults are the ones ``benchmarks/bench_retrieval_quality.py``
measured to find more of the gold documents on the full Python documentation, on the evaluation's
questions and on held-out ones written from other pages (the README has the table): words without meaning
left out of the BM25 query, 100 candidates from each ranking, and one chunk of a document among the best
before a second of any (a page that fills the top 4 with its chunks hides the other pages that answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shopfloor.connectors.docs._words import QUERY_STOP_WORDS

__all__ = ["RRF_K", "Ranking", "fts_match", "fts_query", "fuse", "query_terms"]

RRF_K = 60
_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, kw_only=True)
class Ranking:
    #: BM25 weights of a chunk's text and of its heading path (``bm25(chunks_fts, text, heading)``)
    text_weight: float = 1.0
    heading_weight: float = 1.0
    #: leave words without meaning (``QUERY_STOP_WORDS``) out of the BM25 query, unless nothing else is left
    stop_words: bool = True
    #: candidates each ranking contributes to the fusion
    candidates: int = 100
    #: the weights of the BM25 and the dense ranking in the fusion
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    #: a chunk's fused score raised by this share of the fused scores of its document's other candidates
    #: (a page several of whose passages match is likelier the page that answers)
    document_boost: float = 0.0
    #: at most this many chunks of one document in a result, others moving up (0: any number)
    per_document: int = 1
    #: the fused best this many reordered by their cosine to the query (0: not reordered)
    rerank: int = 0

    def __post_init__(self) -> None:
        if min(self.text_weight, self.heading_weight, self.bm25_weight, self.dense_weight) < 0:
            raise ValueError("ranking weights are not negative")
        if self.candidates < 1 or min(self.per_document, self.rerank, self.document_boost) < 0:
            raise ValueError("a ranking has at least one candidate, and no negative share or limit")


def query_terms(text: str, *, stop_words: bool = False) -> list[str]:
    """A user's words, lower case, each once, at most 64 (``\\w+``: never query syntax of any backend);
    ``stop_words``: without the words that mean nothing (when some other word is left)."""
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))[:64]
    if stop_words:
        terms = [t for t in terms if t not in QUERY_STOP_WORDS] or terms
    return terms


def fts_match(terms: Sequence[str]) -> str:
    """``terms`` as an FTS5 query that cannot be a syntax error: each quoted, any may match."""
    return " OR ".join(f'"{t}"' for t in terms)


def fts_query(text: str, *, stop_words: bool = False) -> str:
    """A user's words as an FTS5 query (``query_terms``, then ``fts_match``)."""
    return fts_match(query_terms(text, stop_words=stop_words))


def fuse(
    rankings: Sequence[tuple[Sequence[int], float]],
    documents: Mapping[int, int],
    ranking: Ranking,
    k: int,
) -> list[tuple[int, float]]:
    """The best ``k`` chunks with their scores: ``rankings`` (chunk ids best first, each with its weight)
    fused by reciprocal rank, each chunk raised by its document's other candidates
    (``document_boost``; ``documents``: chunk id -> document id), at most ``per_document`` of a document."""
    fused: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, cid in enumerate(ids, 1):
            fused[cid] = fused.get(cid, 0.0) + weight / (RRF_K + rank)
    if ranking.document_boost:
        per_doc: dict[int, float] = {}
        for cid, score in fused.items():
            per_doc[documents[cid]] = per_doc.get(documents[cid], 0.0) + score
        fused = {
            cid: score + ranking.document_boost * (per_doc[documents[cid]] - score)
            for cid, score in fused.items()
        }
    ordered = sorted(fused, key=lambda cid: (-fused[cid], cid))
    if ranking.per_document:
        taken: dict[int, int] = {}
        first: list[int] = []
        rest: list[int] = []
        for cid in ordered:
            doc = documents[cid]
            (first if taken.get(doc, 0) < ranking.per_document else rest).append(cid)
            taken[doc] = taken.get(doc, 0) + 1
        ordered = first + rest
    return [(cid, fused[cid]) for cid in ordered[:k]]
