"""BM25 scores for hybrid search: the index's score matrix, its 0..weight scaling, and its fusion in search."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.errors import ConfigError
from embedtune.evaluation.retrieval import search
from embedtune.lexical import BM25Ranker, LexicalFusion

DOCUMENTS = ["Aspirin lowers the risk of stroke in adults.",
             "Statins reduce cholesterol and cardiovascular events.",
             "Aspirin and statins together after a heart attack."]
QUERIES = {"q-aspirin": "aspirin stroke", "q-statin": "statins", "q-none": "the and of", "q-unknown": "zebrafish"}


@pytest.fixture(scope="module")
def ranker() -> BM25Ranker:
    return BM25Ranker(DOCUMENTS)


def test_scores_follow_the_terms_shared_and_unmatched_queries_score_zero(ranker: BM25Ranker) -> None:
    scores = ranker.scores(list(QUERIES.values()))
    assert scores.shape == (4, 3) and scores.dtype == np.float32
    assert scores[0, 0] > scores[0, 2] > 0 == scores[0, 1]  # both terms > one term > none
    assert not scores[2].any() and not scores[3].any()  # only stop words; a word no document has


def test_fusion_scales_each_query_to_its_best_document(ranker: BM25Ranker) -> None:
    fusion = LexicalFusion(ranker, ["d0", "d1", "d2"], QUERIES, weight=0.2)
    scores = fusion.scores(["q-aspirin", "q-statin", "q-none"])
    assert scores[0].max() == pytest.approx(0.2) and scores[1].max() == pytest.approx(0.2)
    assert 0 < scores[0, 2] < 0.2 and not scores[2].any()
    assert fusion.run(["q-aspirin", "q-none"], top_k=10) == {
        "q-aspirin": {"d0": pytest.approx(float(ranker.scores(["aspirin stroke"])[0, 0])),
                      "d2": pytest.approx(float(ranker.scores(["aspirin stroke"])[0, 2]))},
        "q-none": {}}


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf"), True, "0.2", None])
def test_a_bad_weight_is_a_config_error(ranker: BM25Ranker, weight) -> None:
    with pytest.raises(ConfigError, match="evaluate.lexical_weight"):
        LexicalFusion(ranker, ["d0", "d1", "d2"], QUERIES, weight=weight)


def test_hybrid_search_adds_the_weighted_bm25_score_to_the_dense_one(ranker: BM25Ranker) -> None:
    ids = ["d0", "d1", "d2"]
    corpus = np.eye(3, dtype=np.float32)
    query = np.array([[0.1, 0.55, 0.5]], dtype=np.float32)  # dense: d1 0.55 > d2 0.5 > d0 0.1
    dense = search(["q-aspirin"], query, ids, corpus, top_k=3)["q-aspirin"]
    assert list(dense) == ["d1", "d2", "d0"]
    fused = search(["q-aspirin"], query, ids, corpus, top_k=3,
                   lexical=LexicalFusion(ranker, ids, QUERIES, weight=0.2))["q-aspirin"]
    bm25 = LexicalFusion(ranker, ids, QUERIES, weight=0.2).scores(["q-aspirin"])[0]
    assert fused == pytest.approx({d: float(query[0, i] + bm25[i]) for i, d in enumerate(ids)}, abs=1e-6)
    assert list(fused) == ["d2", "d1", "d0"]  # d2 shares "aspirin"; d1 shares nothing
    off = search(["q-aspirin"], query, ids, corpus, top_k=3, lexical=LexicalFusion(ranker, ids, QUERIES, weight=0))
    assert off == {"q-aspirin": dense}


def test_an_index_over_other_documents_is_refused(ranker: BM25Ranker) -> None:
    with pytest.raises(ValueError, match="2 corpus ids"):
        LexicalFusion(ranker, ["d0", "d1"], QUERIES, weight=0.2)
    with pytest.raises(ValueError, match="other documents"):
        search(["q-aspirin"], np.ones((1, 3), dtype=np.float32), ["d2", "d1", "d0"], np.eye(3, dtype=np.float32),
               top_k=3, lexical=LexicalFusion(ranker, ["d0", "d1", "d2"], QUERIES, weight=0.2))
