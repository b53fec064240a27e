"""What is served is what was measured: the served index's answers to the test queries, scored and timed.

HNSW is approximate, so the reindex stage compares the index's top 10 with exact search over the same vectors
(``hnsw_recall@10``), and scores the served hybrid ranking as the evaluation does (it should match the hybrid
stage's figure); latencies are timed through PostgreSQL for each query.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedtune.data.beir import Qrels
from embedtune.embed.views import ExtraViews
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import search as exact_search
from embedtune.serving.search import LexicalIndex, hybrid_search, search


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def measure_served(conn: Any, version: str, fingerprint: str, query_texts: Mapping[str, str], query_vectors: np.ndarray,
                   qrels: Qrels, corpus: tuple[Sequence[str], np.ndarray, ExtraViews | None], *, ef_search: int,
                   lexical_weight: float, k: int = 10) -> tuple[dict[str, Any], dict[str, float]]:
    """Quality figures and latencies (ms) of ``version`` for the judged queries (``query_vectors`` in the
    order of ``sorted(qrels)``); ``corpus`` is (ids, vectors, views) as the embed stage saved them."""
    qids = sorted(qrels)
    ids, vectors, views = corpus
    exact = exact_search(qids, query_vectors, ids, vectors, top_k=k, views=views)
    latencies, overlap = [], []
    for row, qid in enumerate(qids):
        (_, hits), ms = _timed(lambda row=row: search(conn, query_vectors[row], model_fingerprint=fingerprint, k=k,
                                                      ef_search=ef_search, version=version))
        latencies.append(ms)
        overlap.append(len({h.id for h in hits} & set(exact[qid])) / k)
    quality: dict[str, Any] = {"hnsw_recall@10": round(float(np.mean(overlap)), 4), "ef_search": ef_search}
    timings = {"query_p50_ms": round(float(np.percentile(latencies, 50)), 3),
               "query_p95_ms": round(float(np.percentile(latencies, 95)), 3)}
    if lexical_weight > 0:
        lexical, served, hybrid_latencies = LexicalIndex(conn, version), {}, []
        for row, qid in enumerate(qids):
            (_, hits), ms = _timed(lambda row=row, qid=qid: hybrid_search(
                conn, query_vectors[row], query_texts[qid], lexical, model_fingerprint=fingerprint,
                lexical_weight=lexical_weight, k=k, ef_search=ef_search))
            hybrid_latencies.append(ms)
            served[qid] = {h.id: h.score for h in hits}
        figures = summarize(per_query_metrics(qrels, served))
        quality.update({"hybrid_ndcg@10": figures["ndcg@10"], "hybrid_recall@10": figures["recall@10"]})
        timings["hybrid_query_p50_ms"] = round(float(np.percentile(hybrid_latencies, 50)), 3)
    return quality, timings
