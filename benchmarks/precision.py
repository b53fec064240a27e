"""Measure encoding precision: wall time and retrieval quality of fp32 vs bf16 (CPU autocast).

For each model (default: the base model and the pipeline's fine-tuned model) and precision, encodes the
prepared corpus and the test queries, then reports corpus-encode seconds, ndcg@10 / recall@10 on the test
split, and the mean cosine between the fp32 and bf16 corpus vectors. Run after `dvc repro`:

    python benchmarks/precision.py [--precisions fp32 bf16] [--batch-size 64]

The default precision is the faster one if it loses at most 0.005 ndcg@10.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.encoder import encode
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import search
from embedtune.models import load_model
from embedtune.runtime import offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="model specs (default: base and models/finetuned)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--test-qrels", type=Path, default=Path("data/split/test.tsv"))
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    offline_environment()
    params = yaml.safe_load(Path("params.yaml").read_text())
    models = args.models or [params["model"]["base"], "models/finetuned"]
    batch_size = args.batch_size or params["encode"]["batch_size"]
    corpus = read_corpus(args.prepared / "corpus.jsonl")
    queries = read_queries(args.prepared / "queries.jsonl")
    qrels = read_qrels(args.test_qrels, corpus, queries)
    qids = sorted(qrels)
    ids, texts = list(corpus), [d.full_text for d in corpus.values()]
    results = []
    for spec in models:
        model = load_model(spec, max_seq_length=params["model"]["max_seq_length"])
        reference = None
        for precision in args.precisions:
            started = time.perf_counter()
            vectors = encode(model, texts, batch_size=batch_size, precision=precision)
            seconds = time.perf_counter() - started
            qvecs = encode(model, [queries[q].text for q in qids], batch_size=batch_size, precision=precision,
                           show_progress=False)
            summary = summarize(per_query_metrics(qrels, search(qids, qvecs, ids, vectors, top_k=100)))
            cosine = float(np.mean(np.sum(vectors * reference, axis=1))) if reference is not None else 1.0
            reference = vectors if reference is None else reference
            row = {"model": str(spec), "precision": precision, "encode_s": round(seconds, 1),
                   "ndcg@10": summary["ndcg@10"], "recall@10": summary["recall@10"],
                   "cosine_to_first": round(cosine, 6)}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'model':<40}{'precision':>10}{'encode s':>10}{'ndcg@10':>9}{'recall@10':>10}{'cos':>10}")
    for r in results:
        print(f"{r['model'][-40:]:<40}{r['precision']:>10}{r['encode_s']:>10.1f}{r['ndcg@10']:>9.4f}"
              f"{r['recall@10']:>10.4f}{r['cosine_to_first']:>10.6f}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
