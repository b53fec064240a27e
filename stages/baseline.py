"""baseline: BEIR-style evaluation of the base model on the test split, before any training."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_qrels, read_queries
from embedtune.data.origin import query_origin
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.evaluation.metrics import summarize
from embedtune.evaluation.reports import write_per_query
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.io import write_json_atomic
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("embeddings", type=Path, help="base model corpus embeddings (embed stage)")
    parser.add_argument("queries", type=Path)
    parser.add_argument("test_qrels", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("per_query", type=Path)
    args = parser.parse_args()
    params = load_params()
    corpus_ids, corpus_vectors, corpus_meta = load_embeddings(args.embeddings)
    queries = read_queries(args.queries)
    qrels = read_qrels(args.test_qrels, corpus_ids, queries)
    model = load_model(get(params, "model.base"), max_seq_length=get(params, "model.max_seq_length"))
    per_query, _ = evaluate_model(
        model, {q: v.text for q, v in queries.items()}, qrels, corpus_ids, corpus_vectors,
        top_k=get(params, "evaluate.top_k"), batch_size=get(params, "encode.batch_size"),
        precision=matching_precision(get(params, "encode.precision"), corpus_meta),
        views=load_views(args.embeddings, corpus_ids),
    )
    summary = {**summarize(per_query), "test_source": query_origin(qrels)}
    write_per_query(args.per_query, per_query, queries)
    write_json_atomic(args.metrics, summary)
    log.info("baseline (%s test queries): %s", summary["test_source"], summary)


if __name__ == "__main__":
    run_stage(main)
