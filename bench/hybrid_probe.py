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

import argparse
import json
import time
from pathlib import Path

import numpy as np
from view_probe import best_of_views, ranking  # bench/ is on sys.path when this script runs

from embedtune.data import read_corpus, read_qrels, read_queries
from embedtune.embeddings import encode, load_embeddings, tail_views
from embedtune.evaluation import per_query_metrics, summarize
from embedtune.lexical import BM25Ranker
from embedtune.models import load_model
from embedtune.stage import offline_environment

WEIGHTS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
RRF_K = (60,)


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every document for every query (ties broken by document order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="workspace", help="label of the JSON line (the experiment's name)")
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"))
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings/finetuned"))
    parser.add_argument("--corpus", type=Path, default=Path("data/prepared/corpus.jsonl"))
    parser.add_argument("--queries", type=Path, default=Path("data/prepared/queries.jsonl"))
    parser.add_argument("--qrels", type=Path, default=Path("data/split/dev.tsv"))
    parser.add_argument("--tail-tokens", type=int, default=128)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    offline_environment()
    started = time.perf_counter()
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    ids, heads, meta = load_embeddings(args.embeddings)
    if ids != list(corpus):
        raise SystemExit(f"{args.embeddings} does not hold the vectors of {args.corpus}: run `dvc checkout`")
    precision, max_seq_length = meta["precision"], int(meta["max_seq_length"])
    model = load_model(str(args.model), max_seq_length=max_seq_length)
    titles, bodies = [corpus[d].title for d in ids], [corpus[d].text for d in ids]
    qrels = read_qrels(args.qrels, ids, queries)
    qids = sorted(qrels)
    query_texts = [queries[q].text for q in qids]
    query_vectors = encode(model, query_texts, precision=precision, show_progress=False)
    owners, texts = tail_views(titles, bodies, model.tokenizer, max_seq_length=max_seq_length,
                               tail_tokens=args.tail_tokens)
    tails = encode(model, texts, precision=precision, show_progress=False)
    maxp = np.maximum(query_vectors @ heads.T, best_of_views(query_vectors, len(ids), np.array(owners), tails))
    lexical = BM25Ranker([corpus[d].full_text for d in ids]).scores(query_texts)
    lexical_01 = lexical / np.maximum(lexical.max(axis=1, keepdims=True), 1e-9)
    variants = {"maxp": maxp, "bm25": lexical}
    for weight in WEIGHTS:
        variants[f"maxp+{weight}*bm25"] = maxp + weight * lexical_01
    dense_ranks, lexical_ranks = rank_positions(maxp), rank_positions(lexical)
    for k in RRF_K:
        variants[f"rrf{k}"] = 1.0 / (k + dense_ranks) + 1.0 / (k + lexical_ranks)
    row = {"name": args.name, "queries": len(qids), "tail_tokens": args.tail_tokens, "precision": precision,
           "seconds": round(time.perf_counter() - started, 1)}
    row.update({label: summarize(per_query_metrics(qrels, ranking(qids, ids, scores)))
                for label, scores in variants.items()})
    line = json.dumps(row)
    print(line)
    if args.output:
        with args.output.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
