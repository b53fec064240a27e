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


def test_auto_chooses_the_best_weight_of_the_grid_and_keeps_the_smaller_on_a_tie() -> None:
    from embedtune.lexical import WEIGHT_GRID, choose_weight

    peaked = {0.0: 0.60, 0.1: 0.62, 0.2: 0.64, 0.3: 0.65, 0.5: 0.64, 1.0: 0.60, 2.0: 0.55, 5.0: 0.50}
    weight, scores = choose_weight(peaked.__getitem__)
    assert weight == 0.3 and scores == {str(w): peaked[w] for w in WEIGHT_GRID}
    assert choose_weight(lambda w: 0.7 - w / 10)[0] == 0.0  # BM25 only hurts (code search): the dense model alone
    assert choose_weight(lambda w: 0.5)[0] == 0.0  # a tie: BM25 must earn its place
    assert choose_weight(lambda w: min(w, 1.0))[0] == 1.0
    assert 0.0 in WEIGHT_GRID and max(WEIGHT_GRID) >= 5  # dense alone and BM25-heavy are both candidates


def test_the_served_weight_is_the_number_or_the_hybrid_stages_choice(tmp_path) -> None:
    import json

    from embedtune.lexical import served_weight

    metrics = tmp_path / "hybrid.json"
    assert served_weight(0.3, metrics) == 0.3 and served_weight("auto", metrics) == 0.0  # not chosen yet: dense
    metrics.write_text(json.dumps({"lexical_weight": 0.5}))
    assert served_weight("auto", metrics) == 0.5 and served_weight(0, metrics) == 0.0
    with pytest.raises(ConfigError, match="or auto"):
        served_weight("automatic", metrics)
