"""mine: hard negatives for every training pair from the base model's ranking (reusing its corpus vectors)."""

import argparse
import random
from dataclasses import replace
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import iter_jsonl, read_qrels, read_queries
from embedtune.data.prepare import read_negatives
from embedtune.embed.encoder import encode
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings
from embedtune.io import atomic_directory, write_json_atomic, write_jsonl
from embedtune.mining import examples_to_records, mine_hard_negatives, mining_options, weight_examples
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("embeddings", type=Path, help="base model corpus embeddings (embed stage)")
    parser.add_argument("queries", type=Path)
    parser.add_argument("negatives", type=Path, help="explicit negatives from the data (prepare stage)")
    parser.add_argument("train_qrels", type=Path)
    parser.add_argument("synthetic", type=Path, help="synthesize stage output (may hold no queries)")
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    args = parser.parse_args()
    params = load_params()
    corpus_ids, corpus_vectors, corpus_meta = load_embeddings(args.embeddings)
    queries = read_queries(args.queries)
    qrels = read_qrels(args.train_qrels, corpus_ids, queries)
    query_ids = sorted(qrels)
    model = load_model(get(params, "model.base"), max_seq_length=get(params, "model.max_seq_length"))
    query_vectors = encode(model, [queries[q].text for q in query_ids], batch_size=get(params, "encode.batch_size"),
                           precision=matching_precision(get(params, "encode.precision"), corpus_meta))
    options = mining_options(get(params, "mine"), seed=get(params, "seed"))
    labelled, stats = mine_hard_negatives(qrels, query_ids, query_vectors, corpus_ids, corpus_vectors,
                                          explicit_negatives=read_negatives(args.negatives), **options)
    stats = {"labelled": stats}
    synthetic = [r for _, r in iter_jsonl(args.synthetic / "queries.jsonl")]
    synthetic_examples = []
    if synthetic:
        syn_ids, syn_vectors, _ = load_embeddings(args.synthetic / "embeddings")
        by_id = {r["_id"]: r for r in synthetic}
        mined, stats["synthetic"] = mine_hard_negatives({r["_id"]: {r["doc_id"]: 1} for r in synthetic}, syn_ids,
                                                        syn_vectors, corpus_ids, corpus_vectors, **options)
        synthetic_examples = [replace(e, source="synthetic", query_text=by_id[e.query_id]["text"],
                                      positive_text=by_id[e.query_id].get("positive_text")) for e in mined]
    rng = random.Random(get(params, "seed"))
    examples = weight_examples(labelled, get(params, "sources.labelled"), rng) + weight_examples(
        synthetic_examples, get(params, "sources.synthetic"), rng)
    stats["training_examples"] = {"labelled": sum(e.source == "labelled" for e in examples),
                                  "synthetic": sum(e.source == "synthetic" for e in examples),
                                  "total": len(examples)}
    with atomic_directory(args.output) as staging:
        write_jsonl(staging / "train.jsonl", examples_to_records(examples))
    write_json_atomic(args.metrics, stats)
    log.info("mined: %s", stats)


if __name__ == "__main__":
    run_stage(main)
