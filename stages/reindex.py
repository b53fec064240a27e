"""reindex: load the fine-tuned model's corpus vectors into pgvector and promote them if the gate passes.

The vectors come from the embed stage (no second encode). Also measures load rate, index build time, query
latency with the real test queries and HNSW recall@10 against exact search, and, with hybrid search on
(`evaluate.lexical_weight` > 0), the served hybrid ranking's `ndcg@10` / `recall@10` on the test claims (to match
the hybrid stage's figure: what is served is what was measured), into metrics/reindex.json.
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from embedtune import index
from embedtune.data import read_corpus, read_qrels, read_queries, write_json_atomic
from embedtune.embeddings import encode, load_embeddings, load_views, matching_precision, view_layout
from embedtune.evaluation import per_query_metrics, summarize
from embedtune.evaluation import search as exact_search
from embedtune.models import load_model
from embedtune.promotion import decide
from embedtune.stage import get, load_params, log, run_stage


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--test-qrels", type=Path, required=True)
    parser.add_argument("--comparison", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    ids, vectors, corpus_meta = load_embeddings(args.embeddings)
    views = load_views(args.embeddings, ids)
    corpus = read_corpus(args.corpus)
    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    fingerprint = index.model_fingerprint(args.model)
    decision = decide(comparison, min_improvement=get(params, "reindex.min_improvement"),
                      max_p_value=get(params, "reindex.max_p_value"), force=get(params, "reindex.force"))
    k, ef_search = 10, get(params, "reindex.ef_search")

    with index.connect() as conn:
        loaded = index.load_version(
            conn, fingerprint=fingerprint, model_path=str(args.model.resolve()), ids=ids, vectors=vectors,
            titles=[corpus[i].title for i in ids], texts=[corpus[i].text for i in ids],
            metrics={"comparison": comparison["metrics"], "gate": decision.reason,
                     # queries are encoded as the corpus was, as in evaluation (the CLI and service read this)
                     "query_precision": matching_precision(get(params, "encode.precision"), corpus_meta)},
            source_commit=_commit(), hnsw_m=get(params, "reindex.hnsw_m"),
            hnsw_ef_construction=get(params, "reindex.hnsw_ef_construction"),
            maintenance_work_mem=get(params, "reindex.maintenance_work_mem"),
            views=views, layout=view_layout(corpus_meta),
        )
        log.info("%s %s: %d rows", "loaded" if loaded.created else "already complete:", loaded.version, loaded.rows)
        if decision.promote:
            previous = index.promote(conn, loaded.version, decision.reason)
            log.info("serving %s (was %s): %s", loaded.version, previous, decision.reason)
        else:
            log.warning("%s; serving index unchanged (%s)", decision.reason, index.serving_version(conn))
        dropped = index.prune(conn, get(params, "reindex.keep_last"))
        if dropped:
            log.info("pruned old versions: %s", ", ".join(dropped))

        # Measure with the real test queries: latency through pgvector, recall of HNSW against exact search.
        queries = read_queries(args.queries)
        qrels = read_qrels(args.test_qrels, ids, queries)
        qids = sorted(qrels)
        model = load_model(args.model)
        qvecs = encode(model, [queries[q].text for q in qids], batch_size=get(params, "encode.batch_size"),
                       precision=matching_precision(get(params, "encode.precision"), corpus_meta),
                       show_progress=False)
        exact = exact_search(qids, qvecs, ids, vectors, top_k=k, views=views)
        latencies, overlap = [], []
        for row, qid in enumerate(qids):
            started = time.perf_counter()
            _, hits = index.search(conn, qvecs[row], model_fingerprint=fingerprint, k=k, ef_search=ef_search,
                                   version=loaded.version)
            latencies.append((time.perf_counter() - started) * 1000)
            overlap.append(len({h.id for h in hits} & set(exact[qid])) / k)
        # Hybrid search as served (evaluate.lexical_weight): its ranking should score as the hybrid stage measured.
        weight = get(params, "evaluate.lexical_weight")
        hybrid: dict = {}
        if weight > 0:
            lexical = index.LexicalIndex(conn, loaded.version)
            served, hybrid_latencies = {}, []
            for row, qid in enumerate(qids):
                started = time.perf_counter()
                _, hits = index.hybrid_search(conn, qvecs[row], queries[qid].text, lexical, model_fingerprint=fingerprint,
                                              lexical_weight=weight, k=k, ef_search=ef_search)
                hybrid_latencies.append((time.perf_counter() - started) * 1000)
                served[qid] = {h.id: h.score for h in hits}
            figures = summarize(per_query_metrics(qrels, served))
            hybrid = {"hybrid_ndcg@10": figures["ndcg@10"], "hybrid_recall@10": figures["recall@10"],
                      "hybrid_query_p50_ms": round(float(np.percentile(hybrid_latencies, 50)), 3)}
        serving = index.serving_version(conn)
    result = {
        "rows": loaded.rows,
        "documents": len(ids),
        "version": loaded.version,
        "created": loaded.created,
        "load_rows_per_s": round(loaded.load_rows_per_s, 1),
        "index_build_s": round(loaded.index_seconds, 3),
        "query_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "query_p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "hnsw_recall@10": round(float(np.mean(overlap)), 4),
        "ef_search": ef_search,
        "promoted": decision.promote,
        "serving": serving == loaded.version,
        "gate": decision.reason,
        **hybrid,
    }
    write_json_atomic(args.metrics, result)
    log.info("reindex: %s", result)


if __name__ == "__main__":
    run_stage(main)
