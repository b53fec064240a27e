"""Exact retrieval for evaluation: cosine search over the stored unit vectors, dense or fused with BM25.

Brute force (one matrix product per block of queries) rather than an approximate index, so a figure measures the
model and nothing else; ``embedtune.serving`` searches pgvector's HNSW index and checks its recall against this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embedtune.data.beir import Qrels
from embedtune.embed.views import ExtraViews
from embedtune.evaluation.metrics import Run, per_query_metrics

if TYPE_CHECKING:
    from embedtune.lexical import LexicalFusion


def search(
    query_ids: Sequence[str],
    query_vectors: np.ndarray,
    corpus_ids: Sequence[str],
    corpus_vectors: np.ndarray,
    top_k: int,
    batch_size: int = 256,
    views: ExtraViews | None = None,
    lexical: LexicalFusion | None = None,
) -> Run:
    """Top-k documents per query by dot product (cosine on unit vectors).

    With ``views`` (more vectors per document, e.g. the tail of a long one), a document scores as the best of
    its vectors (MaxP). With ``lexical`` (hybrid search), each document's weighted BM25 score is added."""
    import torch

    corpus = torch.from_numpy(np.ascontiguousarray(corpus_vectors, dtype=np.float32))
    if views is not None and len(views):
        owners = torch.from_numpy(np.asarray(views.owners, dtype=np.int64))
        extra = torch.from_numpy(np.ascontiguousarray(views.vectors, dtype=np.float32))
    if lexical is not None and lexical.corpus_ids != list(corpus_ids):
        raise ValueError("the BM25 index was built over other documents (or another order) than the vectors")
    k = min(top_k, corpus.shape[0])
    run: Run = {}
    for start in range(0, len(query_ids), batch_size):
        block = torch.from_numpy(np.ascontiguousarray(query_vectors[start : start + batch_size], dtype=np.float32))
        scores = block @ corpus.T
        if views is not None and len(views):
            scores.scatter_reduce_(1, owners.expand(block.shape[0], -1), block @ extra.T, "amax")
        if lexical is not None:
            scores += torch.from_numpy(lexical.scores(query_ids[start : start + batch_size]))
        scores, indices = torch.topk(scores, k=k, dim=1)
        for row, qid in enumerate(query_ids[start : start + batch_size]):
            run[qid] = {corpus_ids[i]: float(s) for s, i in zip(scores[row].tolist(), indices[row].tolist())}
    return run


def evaluate_model(
    model,
    queries: Mapping[str, str],
    qrels: Qrels,
    corpus_ids: Sequence[str],
    corpus_vectors: np.ndarray,
    *,
    top_k: int = 100,
    batch_size: int = 64,
    precision: str = "fp32",
    views: ExtraViews | None = None,
    lexical: LexicalFusion | None = None,
) -> tuple[dict[str, dict[str, float]], Run]:
    """Encode the judged queries with ``model``, search the given corpus vectors (and ``views``; with ``lexical``
    BM25 too), score every query."""
    from embedtune.embed.encoder import encode

    query_ids = [q for q in sorted(qrels) if q in queries]
    vectors = encode(model, [queries[q] for q in query_ids], batch_size=batch_size, precision=precision,
                     show_progress=False)
    run = search(query_ids, vectors, corpus_ids, corpus_vectors, top_k=top_k, views=views, lexical=lexical)
    return per_query_metrics(qrels, run), run


