"""Evaluation metrics against hand-computed values, and the base/fine-tuned comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedtune.evaluation.metrics import compare, dev_summary, per_query_metrics, summarize
from embedtune.evaluation.retrieval import search


def test_metrics_match_hand_computation() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}}
    run = {"q1": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.6}, "q2": {"c": 0.5}}
    pq = per_query_metrics(qrels, run)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert pq["q1"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert pq["q1"]["mrr@10"] == pytest.approx(0.5)
    assert pq["q1"]["recall@10"] == pytest.approx(1.0)
    assert pq["q1"]["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert pq["q2"] == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0, "map@100": 1.0}
    assert summarize(pq)["mrr@10"] == pytest.approx(0.75)


def test_mrr_cut_at_ten_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {f"n{i}": 1.0 - i / 100 for i in range(10)} | {"a": 0.5}}
    pq = per_query_metrics(qrels, run)
    assert pq["q1"]["mrr@10"] == 0.0 and pq["q1"]["recall@100"] == 1.0
    assert pq["q2"]["ndcg@10"] == 0.0


def test_search_returns_top_k_by_cosine() -> None:
    corpus = np.eye(4, dtype=np.float32)
    query = np.array([[0.1, 0.9, 0.3, 0.0]], dtype=np.float32)
    run = search(["q"], query, ["a", "b", "c", "d"], corpus, top_k=2)
    assert list(run["q"]) == ["b", "c"]


def test_compare_counts_wins_losses_and_tests_significance() -> None:
    base = {f"q{i}": {m: 0.5 for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")} for i in range(30)}
    fine = {q: {m: v + (0.2 if int(q[1:]) < 25 else -0.1 if int(q[1:]) < 28 else 0.0) for m, v in d.items()}
            for q, d in base.items()}
    result = compare(base, fine)
    assert (result["wins"], result["losses"], result["ties"]) == (25, 3, 2)
    assert result["metrics"]["ndcg@10"]["delta"] == pytest.approx((25 * 0.2 - 3 * 0.1) / 30, abs=1e-4)
    assert result["metrics"]["ndcg@10"]["relative_delta"] == pytest.approx(result["metrics"]["ndcg@10"]["delta"] / 0.5, abs=1e-3)
    assert result["paired_t_test_p"] < 0.001


def test_dev_summary_reports_base_finetuned_and_delta() -> None:
    base = {"q1": {m: 0.5 for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")}}
    tuned = {"q1": {m: 0.75 for m in base["q1"]}}
    report = dev_summary(base, tuned)
    assert report["queries"] == 1 and report["delta"]["ndcg@10"] == 0.25
    assert report["base"]["mrr@10"] == 0.5 and report["finetuned"]["mrr@10"] == 0.75
    assert dev_summary({}, {}) == {"queries": 0}


def test_a_document_scores_as_its_best_view() -> None:
    from embedtune.embed.views import ExtraViews

    corpus = np.eye(4, dtype=np.float32)
    query = np.array([[0.0, 0.6, 0.0, 0.8]], dtype=np.float32)
    # "a" has a second view close to the query (and a third, far one): it ranks by the best of the three
    views = ExtraViews(np.array([0, 0]), np.array([[0.0, 0.8, 0.0, 0.6], [0.0, 0.0, 1.0, 0.0]], dtype=np.float32))
    run = search(["q"], query, ["a", "b", "c", "d"], corpus, top_k=3, views=views)
    assert list(run["q"]) == ["a", "d", "b"] and run["q"]["a"] == pytest.approx(0.96)
    plain = search(["q"], query, ["a", "b", "c", "d"], corpus, top_k=2)
    assert list(plain["q"]) == ["d", "b"]
