"""Score one fine-tuned model's dev queries by its dense score fused with BM25's, without training again.

Why: BM25 (stemmed, English stop words) scores `ndcg@10` 0.686 on SciFact's test claims, above the base model,
and it fails differently from a dense model (it matches rare terms exactly: gene names, drugs, numbers). Fusing
the two rankings is what many search systems do; this probe measures what it adds on top of the fine-tuned model.
The model and the queries stay fixed, so the variants' figures are paired:

* ``maxp``: the default document score (the better of the document's vector and its tail view);
* ``maxp+W*bm25``: that plus W x the document's BM25 score divided by the query's best BM25 score (0..1);
* ``rrfK``: reciprocal rank fusion (1 / (K + rank)) of the dense and BM25 rankings.

Run it on a dev experiment's outputs (``dvc exp apply NAME`` then ``dvc checkout``), as ``bench/view_probe.py``;
prints one JSON line and appends it to ``--output`` if given:

    python bench/hybrid_probe.py --name dev-bs16-s25 --output /tmp/hybrid.jsonl
"""

from __future__ import annotations

import numpy as np
from view_probe import best_of_views, load_probe  # bench/ is on sys.path when this script runs

from embedtune.embeddings import tail_views
from embedtune.lexical import BM25Ranker

WEIGHTS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
RRF_K = (60,)


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every document for every query (ties broken by document order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def main() -> None:
    probe = load_probe(__doc__)
    corpus, queries, ids, heads, model, qids = probe.corpus, probe.queries, probe.ids, probe.heads, probe.model, probe.qids
    titles, bodies = [corpus[d].title for d in ids], [corpus[d].text for d in ids]
    query_texts = [queries[q].text for q in qids]
    query_vectors = probe.embed(query_texts)
    owners, texts = tail_views(titles, bodies, model.tokenizer, max_seq_length=probe.max_seq_length,
                               tail_tokens=probe.args.tail_tokens)
    tails = probe.embed(texts)
    maxp = np.maximum(query_vectors @ heads.T, best_of_views(query_vectors, len(ids), np.array(owners), tails))
    lexical = BM25Ranker([corpus[d].full_text for d in ids]).scores(query_texts)
    lexical_01 = lexical / np.maximum(lexical.max(axis=1, keepdims=True), 1e-9)
    variants = {"maxp": maxp, "bm25": lexical}
    for weight in WEIGHTS:
        variants[f"maxp+{weight}*bm25"] = maxp + weight * lexical_01
    dense_ranks, lexical_ranks = rank_positions(maxp), rank_positions(lexical)
    for k in RRF_K:
        variants[f"rrf{k}"] = 1.0 / (k + dense_ranks) + 1.0 / (k + lexical_ranks)
    probe.report(variants)


if __name__ == "__main__":
    main()
