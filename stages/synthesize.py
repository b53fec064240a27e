"""synthesize: synthetic training queries for documents without any (offline inverse-cloze or an LLM),
kept only when the base model finds their own document (round-trip consistency)."""

import argparse
import random
from collections import Counter
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus, read_qrels
from embedtune.data.origin import SYNTHETIC_TEST_PREFIX
from embedtune.data.synthetic import generator_from_params, ict_positive, round_trip_filter
from embedtune.embed.encoder import encode
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, save_embeddings
from embedtune.errors import ConfigError
from embedtune.io import atomic_directory, write_json_atomic, write_jsonl
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("train_qrels", type=Path)
    parser.add_argument("test_qrels", type=Path, help="the test split: its synthetic queries' documents are left out")
    parser.add_argument("embeddings", type=Path, help="base model corpus embeddings (embed stage)")
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    args = parser.parse_args()
    params = load_params()
    stats: dict[str, object] = {"enabled": bool(get(params, "synthetic.enabled"))}
    records: list[dict] = []
    kept_vectors = None
    if stats["enabled"]:
        corpus = read_corpus(args.corpus)
        judged = {d for docs in read_qrels(args.train_qrels, corpus).values() for d in docs}
        # a document whose synthetic query tests the model must not also train it
        held_out = {d for q, docs in read_qrels(args.test_qrels, corpus).items() if q.startswith(SYNTHETIC_TEST_PREFIX)
                    for d in docs}
        scope = get(params, "synthetic.documents")
        if scope not in ("unjudged", "all"):
            raise ConfigError(f"synthetic.documents must be 'unjudged' or 'all', got {scope!r}")
        docs = [d for d in corpus.values() if d.id not in held_out and (scope == "all" or d.id not in judged)]
        cap = get(params, "synthetic.max_documents") or 0
        rng = random.Random(get(params, "seed"))
        if cap and len(docs) > cap:
            docs = sorted(rng.sample(docs, cap), key=lambda d: d.id)
        generator = generator_from_params(get(params, "synthetic"), get(params, "seed"))
        queries = generator.generate(docs, get(params, "synthetic.per_document"))
        model = load_model(get(params, "model.base"), max_seq_length=get(params, "model.max_seq_length"))
        corpus_ids, corpus_vectors, corpus_meta = load_embeddings(args.embeddings)
        vectors = encode(model, [q.text for q in queries], batch_size=get(params, "encode.batch_size"),
                         precision=matching_precision(get(params, "encode.precision"), corpus_meta))
        kept, _ = round_trip_filter(queries, vectors, corpus_ids, corpus_vectors,
                                        top_k=get(params, "synthetic.round_trip_top_k"))
        keep = {id(q) for q in kept}
        rows = [i for i, q in enumerate(queries) if id(q) in keep]
        kept_vectors = vectors[rows]
        removal = get(params, "synthetic.ict_remove_sentence")
        for n, q in enumerate(kept):
            records.append({"_id": f"syn:{q.doc_id}:{n}", "text": q.text, "doc_id": q.doc_id, "kind": q.kind,
                            "positive_text": ict_positive(corpus[q.doc_id], q, rng, keep_probability=1 - removal)})
        stats.update({
            "documents": len(docs),
            "documents_held_out_for_the_synthetic_test": len(held_out),
            "generated": len(queries),
            "kept_round_trip": len(kept),
            "dropped_round_trip": len(queries) - len(kept),
            "generated_by_kind": dict(Counter(q.kind for q in queries)),
            "kept_by_kind": dict(Counter(q.kind for q in kept)),
        })
    with atomic_directory(args.output) as staging:
        write_jsonl(staging / "queries.jsonl", records)
        if kept_vectors is not None and len(records):
            save_embeddings(staging / "embeddings", [r["_id"] for r in records], kept_vectors,
                            {"model": get(params, "model.base")})
    write_json_atomic(args.metrics, stats)
    log.info("synthesize: %s", stats)


if __name__ == "__main__":
    run_stage(main)
