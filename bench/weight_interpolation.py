"""Score WiSE-FT blends of a fine-tuned model with its base, without training again.

For each weight w, the saved model becomes ``w x fine-tuned + (1 - w) x base`` (what `train.finetuned_weight`
does at the end of training), the corpus is encoded and the queries of each qrels file are scored. Run it on
a dev experiment's outputs (``dvc exp apply NAME`` then ``dvc checkout``, or a `dvc exp run` workspace) so
the weight is chosen on the dev split carved from the training queries; the test split's figures are for
the record only:

    python bench/weight_interpolation.py --weights 1.0 0.8 0.6 --qrels data/split/dev.tsv data/split/test.tsv

A blend of a model trained with `train.finetuned_weight` < 1 is a blend of a blend: point `--model` at a model
trained with the default 1.0, from the base model named in params.yaml (`model.base`). Prints one JSON line
per weight and appends it to ``--output`` if given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from embedtune.data import read_corpus, read_qrels, read_queries
from embedtune.embeddings import encode
from embedtune.evaluation import evaluate_model, summarize
from embedtune.models import load_model
from embedtune.stage import offline_environment
from embedtune.training import interpolate_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"), help="fine-tuned model (w = 1)")
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.8, 0.6])
    parser.add_argument("--qrels", type=Path, nargs="+", default=[Path("data/split/dev.tsv")])
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--output", type=Path, default=None, help="append the JSON lines here")
    args = parser.parse_args()
    if not all(0.0 < w <= 1.0 for w in args.weights):
        parser.error(f"--weights must lie in (0, 1] (1: the model as trained), got {args.weights}")
    offline_environment()
    params = yaml.safe_load(Path("params.yaml").read_text())
    max_seq_length, batch_size = params["model"]["max_seq_length"], params["encode"]["batch_size"]
    precision = params["encode"]["precision"]
    corpus = read_corpus(args.prepared / "corpus.jsonl")
    queries = read_queries(args.prepared / "queries.jsonl")
    ids, texts = list(corpus), [d.full_text for d in corpus.values()]
    query_texts = {q: v.text for q, v in queries.items()}
    base_state = load_model(params["model"]["base"]).state_dict()
    model = load_model(args.model, max_seq_length=max_seq_length)
    tuned_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for weight in args.weights:
        model.load_state_dict(tuned_state)
        interpolate_weights(model, base_state, weight)  # at 1.0 the model as trained
        vectors = encode(model, texts, batch_size=batch_size, precision=precision)
        row: dict = {"model": str(args.model), "finetuned_weight": weight}
        for path in args.qrels:
            per_query, _ = evaluate_model(model, query_texts, read_qrels(path, ids, queries), ids, vectors,
                                          top_k=100, batch_size=batch_size, precision=precision)
            summary = summarize(per_query)
            row[path.stem] = {k: round(summary[k], 4) for k in ("ndcg@10", "recall@10", "mrr@10")}
        print(json.dumps(row), flush=True)
        if args.output:
            with args.output.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
