"""evaluate_dev: base and fine-tuned models on the dev split carved from the training queries.

Experiments are compared on `metrics/dev.json`, never on the test split. With `split.dev_fraction: 0` (the
default: train on every labelled query) the dev split is empty and the stage writes `{"queries": 0}`.
"""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_qrels, read_queries
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.evaluation.metrics import dev_summary
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.io import write_json_atomic
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned model directory")
    parser.add_argument("--base-embeddings", type=Path, required=True)
    parser.add_argument("--finetuned-embeddings", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--dev-qrels", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    queries = read_queries(args.queries)
    texts = {q: v.text for q, v in queries.items()}
    settings = {"top_k": get(params, "evaluate.top_k"), "batch_size": get(params, "encode.batch_size")}
    per_model = {}
    for name, model_spec, embeddings in (
        ("base", get(params, "model.base"), args.base_embeddings),
        ("finetuned", args.model, args.finetuned_embeddings),
    ):
        corpus_ids, corpus_vectors, corpus_meta = load_embeddings(embeddings)
        qrels = read_qrels(args.dev_qrels, corpus_ids, queries)
        if not qrels:
            per_model[name] = {}
            continue
        model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
        per_model[name], _ = evaluate_model(model, texts, qrels, corpus_ids, corpus_vectors, **settings,
                                            precision=matching_precision(get(params, "encode.precision"), corpus_meta),
                                            views=load_views(embeddings, corpus_ids))
    summary = dev_summary(per_model["base"], per_model["finetuned"])
    write_json_atomic(args.metrics, summary)
    log.info("dev: %s", summary)


if __name__ == "__main__":
    run_stage(main)
