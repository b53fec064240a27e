"""reindex: load the fine-tuned model's corpus vectors into pgvector and promote them if the gate passes.

The vectors come from the embed stage (no second encode). The served index is then checked with the real test
queries (``serving.check``): HNSW recall@10 against exact search and, with hybrid search on (the lexical weight
the hybrid stage chose or was given, `metrics/hybrid.json`, above 0), the served hybrid ranking's `ndcg@10` /
`recall@10`, which should match the hybrid stage's figure. Load, build and query times go to the timings file.
"""

import argparse
import json
import subprocess
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.encoder import encode
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.embed.views import view_layout
from embedtune.io import write_json_atomic
from embedtune.models import load_model, model_fingerprint
from embedtune.runtime import log, run_stage
from embedtune.serving.check import measure_served
from embedtune.serving.db import connect
from embedtune.serving.promotion import decide, publish
from embedtune.serving.versions import load_version, serving_version


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "embeddings", "corpus", "queries", "test-qrels", "comparison", "hybrid", "metrics",
                 "timings"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    ids, vectors, corpus_meta = load_embeddings(args.embeddings)
    views, corpus = load_views(args.embeddings, ids), read_corpus(args.corpus)
    comparison = json.loads(args.comparison.read_text(encoding="utf-8"))
    served_weight = json.loads(args.hybrid.read_text(encoding="utf-8"))["lexical_weight"]  # the hybrid stage's choice
    decision = decide(comparison, min_improvement=get(params, "reindex.min_improvement"),
                      max_p_value=get(params, "reindex.max_p_value"), force=get(params, "reindex.force"))
    # queries are encoded as the corpus was, as in evaluation (the CLI and service read this from the version)
    precision = matching_precision(get(params, "encode.precision"), corpus_meta)
    fingerprint = model_fingerprint(args.model)
    with connect(migrate_schema=True) as conn:
        loaded = load_version(
            conn, fingerprint=fingerprint, model_path=str(args.model.resolve()), ids=ids, vectors=vectors,
            titles=[corpus[i].title for i in ids], texts=[corpus[i].text for i in ids], views=views,
            metadata=[corpus[i].metadata for i in ids],
            layout=view_layout(corpus_meta), source_commit=_commit(),
            metrics={"comparison": comparison["metrics"], "gate": decision.reason}, query_precision=precision,
            hnsw_m=get(params, "reindex.hnsw_m"), hnsw_ef_construction=get(params, "reindex.hnsw_ef_construction"),
            maintenance_work_mem=get(params, "reindex.maintenance_work_mem"),
            vector_type=get(params, "reindex.vector_type"))
        log.info("%s %s: %d rows", "loaded" if loaded.created else "already complete:", loaded.version, loaded.rows)
        publish(conn, loaded.version, decision, keep_last=get(params, "reindex.keep_last"))
        queries = read_queries(args.queries)
        qrels = read_qrels(args.test_qrels, ids, queries)
        query_vectors = encode(load_model(args.model), [queries[q].text for q in sorted(qrels)],
                               batch_size=get(params, "encode.batch_size"), precision=precision, show_progress=False)
        quality, timings = measure_served(
            conn, loaded.version, fingerprint, {q: v.text for q, v in queries.items()}, query_vectors, qrels,
            (ids, vectors, views), ef_search=get(params, "reindex.ef_search"),
            lexical_weight=served_weight)
        serving = serving_version(conn)
    result = {"version": loaded.version, "rows": loaded.rows, "documents": len(ids), "promoted": decision.promote,
              "serving": serving == loaded.version, "gate": decision.reason, "lexical_weight": served_weight, **quality}
    write_json_atomic(args.metrics, result)
    write_json_atomic(args.timings, {"created": loaded.created, "load_rows_per_s": round(loaded.load_rows_per_s, 1),
                                     "index_build_s": round(loaded.index_seconds, 3), **timings})
    log.info("reindex: %s", result)


if __name__ == "__main__":
    run_stage(main)
