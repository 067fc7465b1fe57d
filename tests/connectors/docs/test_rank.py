"""How a collection orders chunks: the BM25 query's words, reciprocal rank fusion with weights, a
document's other candidates raising its chunks, and a cap on one document's share of a result."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shopfloor.connectors.docs import Ranking, fts_query
from shopfloor.connectors.docs._rank import RRF_K, fuse

#: the ranking as it was before its choices: every chunk of a document may rank
PLAIN = Ranking(stop_words=False, candidates=50, per_document=0)
#: chunk id -> document id: chunks 1-3 are one page, 4 and 5 two others
DOCS = {1: 10, 2: 10, 3: 10, 4: 40, 5: 50}


def test_stop_words_leave_the_query_but_python_words_stay() -> None:
    question = "What does the else clause of a try statement do?"
    assert fts_query(question) == (
        '"what" OR "does" OR "the" OR "else" OR "clause" OR "of" OR "a" OR "try" OR "statement" OR "do"'
    )
    assert fts_query(question, stop_words=True) == '"else" OR "clause" OR "try" OR "statement"'
    # keywords and built-in names are meant as Python: all, any, not, in, is, with, for, from, as
    assert (
        fts_query("is any of them not in all", stop_words=True) == '"is" OR "any" OR "not" OR "in" OR "all"'
    )
    # a question of stop words alone keeps them rather than searching nothing
    assert fts_query("what does it do", stop_words=True) == '"what" OR "does" OR "it" OR "do"'


def test_fusion_adds_weighted_reciprocal_ranks() -> None:
    bm25, dense = [4, 1, 5], [1, 5]
    plain = fuse([(bm25, 1.0), (dense, 1.0)], {}, PLAIN, 3)
    assert [cid for cid, _ in plain] == [1, 5, 4]
    assert plain[0][1] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    # a tie goes to the lower id; the weight of a ranking breaks it for that ranking's first chunk
    assert [cid for cid, _ in fuse([([4], 1.0), ([5], 1.0)], {}, PLAIN, 2)] == [4, 5]
    assert [cid for cid, _ in fuse([([4], 1.0), ([5], 2.0)], {}, PLAIN, 2)] == [5, 4]
    # a ranking of weight 0 counts for nothing
    assert fuse([([4], 0.0), ([5], 1.0)], {}, PLAIN, 2) == [(5, pytest.approx(1 / 61)), (4, 0.0)]


def test_a_documents_other_candidates_raise_its_chunks() -> None:
    bm25, dense = [4, 1], [5, 2, 3]
    assert [cid for cid, _ in fuse([(bm25, 1.0), (dense, 1.0)], DOCS, PLAIN, 5)] == [4, 5, 1, 2, 3]
    boosted = dict(fuse([(bm25, 1.0), (dense, 1.0)], DOCS, replace(PLAIN, document_boost=0.5), 5))
    assert sorted(boosted, key=lambda cid: (-boosted[cid], cid)) == [1, 2, 3, 4, 5]
    assert boosted[3] == pytest.approx(1 / 63 + 0.5 * (1 / 62 + 1 / 62)) and boosted[4] == pytest.approx(
        1 / 61
    )


def test_one_document_takes_at_most_its_share_and_the_others_move_up() -> None:
    ranked = [1, 2, 3, 4, 5]
    assert [c for c, _ in fuse([(ranked, 1.0)], DOCS, PLAIN, 3)] == [1, 2, 3]
    assert [c for c, _ in fuse([(ranked, 1.0)], DOCS, replace(PLAIN, per_document=1), 3)] == [1, 4, 5]
    assert [c for c, _ in fuse([(ranked, 1.0)], DOCS, replace(PLAIN, per_document=2), 4)] == [1, 2, 4, 5]
    # fewer documents than places: the capped chunks fill the rest in their order
    assert [c for c, _ in fuse([(ranked[:3], 1.0)], DOCS, replace(PLAIN, per_document=1), 3)] == [1, 2, 3]


def test_the_default_ranking_is_the_one_measured_best() -> None:
    """bench_retrieval_quality on the full documentation: recall@5 0.69 -> 0.90, held-out 0.65 -> 0.82."""
    assert Ranking() == replace(PLAIN, stop_words=True, candidates=100, per_document=1)


@pytest.mark.parametrize(
    "bad",
    [
        {"text_weight": -1.0},
        {"dense_weight": -0.5},
        {"candidates": 0},
        {"per_document": -1},
        {"document_boost": -1},
    ],
)
def test_a_ranking_that_cannot_rank_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="ranking"):
        Ranking(**bad)  # type: ignore[arg-type]
