"""mine: hard negatives for every training pair from the base model's ranking (reusing its corpus vectors),
BM25's, or both fused (``mine.ranker``)."""

import argparse
import random
from dataclasses import replace
from pathlib import Path

from embedtune.data import (
    atomic_directory,
    iter_jsonl,
    read_corpus,
    read_qrels,
    read_queries,
    write_json_atomic,
    write_jsonl,
)
from embedtune.embeddings import encode, load_embeddings, matching_precision
from embedtune.lexical import BM25Ranker
from embedtune.mining import examples_to_records, mine_hard_negatives, mining_options, weight_examples
from embedtune.models import load_model
from embedtune.prepare import read_negatives
from embedtune.stage import get, load_params, log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("embeddings", type=Path, help="base model corpus embeddings (embed stage)")
    parser.add_argument("corpus", type=Path, help="prepared corpus.jsonl (BM25 rankings, mine.ranker bm25/fused)")
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
    bm25 = None
    if options["ranker"] != "dense":
        corpus = read_corpus(args.corpus)
        bm25 = BM25Ranker([corpus[d].full_text for d in corpus_ids])

    def rank_lexically(texts: list[str]) -> list[list[int]] | None:
        return bm25.rank(texts, depth=options["range_max"]) if bm25 else None

    explicit = read_negatives(args.negatives)
    labelled, stats = mine_hard_negatives(
        qrels, query_ids, query_vectors, corpus_ids, corpus_vectors, explicit_negatives=explicit,
        lexical_rankings=rank_lexically([queries[q].text for q in query_ids]),
        **options)
    synthetic = [r for _, r in iter_jsonl(args.synthetic / "queries.jsonl")]
    synthetic_examples = []
    if synthetic:
        syn_ids, syn_vectors, _ = load_embeddings(args.synthetic / "embeddings")
        by_id = {r["_id"]: r for r in synthetic}
        syn_qrels = {r["_id"]: {r["doc_id"]: 1} for r in synthetic}
        mined, syn_stats = mine_hard_negatives(
            syn_qrels, syn_ids, syn_vectors, corpus_ids, corpus_vectors,
            lexical_rankings=rank_lexically([by_id[q]["text"] for q in syn_ids]),
            **options)
        synthetic_examples = [replace(e, source="synthetic", query_text=by_id[e.query_id]["text"],
                                      positive_text=by_id[e.query_id].get("positive_text")) for e in mined]
        stats = {"labelled": stats, "synthetic": syn_stats}
    else:
        stats = {"labelled": stats}
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
