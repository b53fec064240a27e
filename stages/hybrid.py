"""hybrid: the base and fine-tuned models' rankings fused with BM25's, on the test claims (and the dev split).

A search system, not a model: each document scores its dense score (the better of its vectors) plus
`evaluate.lexical_weight` x its BM25 score divided by the query's best BM25 score. `metrics/finetuned.json`
stays the fine-tuned model's own figure; this stage's `metrics/hybrid.json` says what BM25 adds on top of each
model, with BM25 alone beside them. The weight is chosen on dev splits (`metrics/hybrid.json`'s `dev` part with
`split.dev_fraction` > 0), never on the test claims.
"""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.data.origin import query_origin
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.errors import InputError
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.io import write_json_atomic
from embedtune.lexical import BM25Ranker, LexicalFusion, check_lexical_weight
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


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
    weight = check_lexical_weight(get(params, "evaluate.lexical_weight"))
    top_k, batch_size = get(params, "evaluate.top_k"), get(params, "encode.batch_size")
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    texts = {q: v.text for q, v in queries.items()}
    corpus_ids = list(corpus)
    ranker = BM25Ranker([d.full_text for d in corpus.values()])
    splits = {name: read_qrels(path, corpus_ids, queries) for name, path in (("test", args.test_qrels),
                                                                              ("dev", args.dev_qrels))}
    report: dict = {"lexical_weight": weight, "test_source": query_origin(splits["test"])}
    for split, qrels in splits.items():
        report[split] = {"queries": len(qrels)}
        if qrels:
            lexical_only = LexicalFusion(ranker, corpus_ids, texts, weight=1.0)
            report[split]["bm25"] = summarize(per_query_metrics(qrels, lexical_only.run(sorted(qrels), top_k=top_k)))
    models = {"base": (get(params, "model.base"), args.base_embeddings),
              "finetuned": (args.model, args.finetuned_embeddings)}
    for name, (model_spec, embeddings) in models.items():
        ids, vectors, meta = load_embeddings(embeddings)
        if ids != corpus_ids:
            raise InputError(f"the vectors are not those of {args.corpus} (other documents or order): rerun the "
                             "embed stage", path=embeddings)
        model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
        views = load_views(embeddings, ids)
        for split, qrels in splits.items():
            if qrels:
                per_query, _ = evaluate_model(
                    model, texts, qrels, ids, vectors, top_k=top_k, batch_size=batch_size,
                    precision=matching_precision(get(params, "encode.precision"), meta), views=views,
                    lexical=LexicalFusion(ranker, corpus_ids, texts, weight=weight))
                report[split][f"{name}+bm25"] = summarize(per_query)
    for split, figures in report.items():
        if isinstance(figures, dict) and figures["queries"]:
            log.info("%s (%d queries, lexical weight %s): %s", split, figures["queries"], weight,
                     {k: v["ndcg@10"] for k, v in figures.items() if isinstance(v, dict)})
    write_json_atomic(args.metrics, report)


if __name__ == "__main__":
    run_stage(main)
