"""evaluate: the baseline's evaluation on the fine-tuned model, with deltas and per-query wins/losses."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_qrels, read_queries
from embedtune.data.origin import query_origin
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.evaluation.metrics import compare, summarize
from embedtune.evaluation.reports import (
    comparison_rows,
    plot_comparison,
    read_per_query,
    write_comparison_csv,
    write_per_query,
    write_wins_losses,
)
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.io import write_json_atomic
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned model directory")
    parser.add_argument("--embeddings", type=Path, required=True, help="its corpus embeddings (embed stage)")
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--test-qrels", type=Path, required=True)
    parser.add_argument("--baseline-per-query", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--comparison", type=Path, required=True)
    parser.add_argument("--reports", type=Path, required=True, help="directory for per-query tables and the plot")
    args = parser.parse_args()
    params = load_params()
    corpus_ids, corpus_vectors, corpus_meta = load_embeddings(args.embeddings)
    queries = read_queries(args.queries)
    qrels = read_qrels(args.test_qrels, corpus_ids, queries)
    model = load_model(args.model)
    per_query, _ = evaluate_model(
        model, {q: v.text for q, v in queries.items()}, qrels, corpus_ids, corpus_vectors,
        top_k=get(params, "evaluate.top_k"), batch_size=get(params, "encode.batch_size"),
        precision=matching_precision(get(params, "encode.precision"), corpus_meta),
        views=load_views(args.embeddings, corpus_ids),
    )
    baseline = read_per_query(args.baseline_per_query)
    primary = get(params, "evaluate.primary_metric")
    comparison = {**compare(baseline, per_query, primary=primary), "test_source": query_origin(qrels)}
    rows = comparison_rows(baseline, per_query, queries, primary)
    write_per_query(args.reports / "finetuned_per_query.csv", per_query, queries)
    write_comparison_csv(args.reports / "per_query_comparison.csv", rows, primary)
    write_wins_losses(args.reports / "wins_losses.md", comparison, rows)
    plot_comparison(args.reports / "comparison.png", comparison, rows)
    write_json_atomic(args.comparison, comparison)
    summary = {**summarize(per_query), "test_source": comparison["test_source"]}
    write_json_atomic(args.metrics, summary)
    log.info("fine-tuned (%s test queries): %s", comparison["test_source"], summary)
    log.info("wins %d, losses %d, ties %d (paired t-test p=%s)", comparison["wins"], comparison["losses"],
             comparison["ties"], comparison["paired_t_test_p"])


if __name__ == "__main__":
    run_stage(main)
