"""hybrid: the base and fine-tuned models' rankings fused with BM25's, on the test claims (and the dev split).

A search system, not a model: each document scores its dense score (the better of its vectors) plus
`evaluate.lexical_weight` x its BM25 score divided by the query's best BM25 score. `metrics/finetuned.json`
stays the fine-tuned model's own figure; this stage's `metrics/hybrid.json` says what BM25 adds on top of each
model, with BM25 alone beside them. The weight is chosen on dev splits (`metrics/hybrid.json`'s `dev` part with
`split.dev_fraction` > 0), never on the test claims.
"""

import argparse
from pathlib import Path

from embedtune.data import read_corpus, read_qrels, read_queries, write_json_atomic
from embedtune.embeddings import load_embeddings, load_views, matching_precision
from embedtune.evaluation import evaluate_model, per_query_metrics, summarize
from embedtune.lexical import BM25Ranker, LexicalFusion
from embedtune.models import load_model
from embedtune.stage import get, load_params, log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned model directory")
    parser.add_argument("--base-embeddings", type=Path, required=True)
    parser.add_argument("--finetuned-embeddings", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--test-qrels", type=Path, required=True)
    parser.add_argument("--dev-qrels", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    weight = get(params, "evaluate.lexical_weight")
    top_k, batch_size = get(params, "evaluate.top_k"), get(params, "encode.batch_size")
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    texts = {q: v.text for q, v in queries.items()}
    ranker = BM25Ranker([d.full_text for d in corpus.values()])
    models = {"base": (get(params, "model.base"), args.base_embeddings),
              "finetuned": (args.model, args.finetuned_embeddings)}
    report: dict = {"lexical_weight": weight}
    for split, path in (("test", args.test_qrels), ("dev", args.dev_qrels)):
        qrels = read_qrels(path, list(corpus), queries)
        if not qrels:
            report[split] = {"queries": 0}
            continue
        figures: dict = {"queries": len(qrels)}
        lexical_only = LexicalFusion(ranker, list(corpus), texts, weight=1.0)
        figures["bm25"] = summarize(per_query_metrics(qrels, lexical_only.run(sorted(qrels), top_k=top_k)))
        for name, (model_spec, embeddings) in models.items():
            corpus_ids, corpus_vectors, corpus_meta = load_embeddings(embeddings)
            model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
            per_query, _ = evaluate_model(
                model, texts, qrels, corpus_ids, corpus_vectors, top_k=top_k, batch_size=batch_size,
                precision=matching_precision(get(params, "encode.precision"), corpus_meta),
                views=load_views(embeddings, corpus_ids),
                lexical=LexicalFusion(ranker, list(corpus), texts, weight=weight))
            figures[f"{name}+bm25"] = summarize(per_query)
        report[split] = figures
        log.info("%s (%d queries, lexical weight %s): %s", split, len(qrels), weight,
                 {k: v["ndcg@10"] for k, v in figures.items() if isinstance(v, dict)})
    write_json_atomic(args.metrics, report)


if __name__ == "__main__":
    run_stage(main)
