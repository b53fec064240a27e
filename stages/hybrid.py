"""hybrid: the base and fine-tuned models' rankings fused with BM25's, on the test claims (and the dev split).

A search system, not a model: each document scores its dense score (the better of its vectors) plus a lexical
weight x its BM25 score divided by the query's best BM25 score. `metrics/finetuned.json` stays the fine-tuned
model's own figure; this stage's `metrics/hybrid.json` says what BM25 adds on top of each model, with BM25 alone
beside them.

`evaluate.lexical_weight: auto` (the default) chooses the weight for this run from `lexical.WEIGHT_GRID` (0, the
dense model alone, up to BM25-heavy weights) by scoring only, never on the test claims: on the dev split with the
fine-tuned model when there is one (`split.dev_fraction` > 0), else on (up to 500 of) the training queries with
the base model, which has not seen them. Domains differ: BM25 adds +0.02 on SciFact's claims and takes -0.03
away on CoSQA's code search at the same weight. The choice and every weight's score are recorded
(`lexical_weight_choice`); the reindex stage, the CLI and the service use the chosen weight.
"""

import argparse
import random
from collections.abc import Callable
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.data.origin import query_origin
from embedtune.embed.encoder import encode
from embedtune.embed.precision import matching_precision
from embedtune.embed.store import load_embeddings, load_views
from embedtune.errors import InputError
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import evaluate_model, search
from embedtune.io import write_json_atomic
from embedtune.lexical import AUTO, CHOICE_QUERIES, BM25Ranker, LexicalFusion, check_lexical_weight, choose_weight
from embedtune.models import load_model
from embedtune.runtime import log, run_stage


def _load_systems(args: argparse.Namespace, params: dict, corpus_ids: list[str]) -> dict[str, tuple]:
    """The base and fine-tuned models with their corpus vectors, views and query precision."""
    models = {"base": (get(params, "model.base"), args.base_embeddings),
              "finetuned": (args.model, args.finetuned_embeddings)}
    loaded = {}
    for name, (model_spec, embeddings) in models.items():
        ids, vectors, meta = load_embeddings(embeddings)
        if ids != corpus_ids:
            raise InputError(f"the vectors are not those of {args.corpus} (other documents or order): rerun the "
                             "embed stage", path=embeddings)
        model = load_model(model_spec, max_seq_length=get(params, "model.max_seq_length"))
        loaded[name] = (model, vectors, load_views(embeddings, ids),
                        matching_precision(get(params, "encode.precision"), meta))
    return loaded


def _choose_weight(train_qrels: Path, dev: dict, loaded: dict, texts: dict[str, str], corpus_ids: list[str],
                   fused: Callable[[float], LexicalFusion | None], params: dict) -> tuple[float, dict]:
    """``auto``: the grid's best weight on the dev split (fine-tuned model), else on up to ``CHOICE_QUERIES``
    training queries (base model: it has never seen them), else 0 (the dense model alone) when there are neither
    (documents only: synthetic queries would choose for BM25, being sentences of their documents); and the
    record of the choice."""
    primary, top_k = get(params, "evaluate.primary_metric"), get(params, "evaluate.top_k")
    if dev:
        on, system, chosen_on = "dev split", "finetuned", dev
    else:
        on, system = "training queries", "base"
        train = read_qrels(train_qrels, corpus_ids, texts)
        sample = sorted(train) if len(train) <= CHOICE_QUERIES else sorted(
            random.Random(get(params, "seed")).sample(sorted(train), CHOICE_QUERIES))
        chosen_on = {q: train[q] for q in sample}
    if not chosen_on:  # documents only: nothing judged to choose on, so the ranking the gate measured (dense)
        log.warning("lexical weight auto -> 0: no training or dev queries to choose on (synthetic queries only); "
                    "set evaluate.lexical_weight to a number to search with BM25 too")
        return 0.0, {"on": "nothing: no training or dev queries", "system": None, "queries": 0, "metric": primary,
                     "by_weight": {}, "bm25": None}
    model, vectors, views, precision = loaded[system]
    ids = sorted(chosen_on)
    query_vectors = encode(model, [texts[q] for q in ids], batch_size=get(params, "encode.batch_size"),
                           precision=precision, show_progress=False)

    def score(weight: float) -> float:
        run = search(ids, query_vectors, corpus_ids, vectors, top_k, views=views, lexical=fused(weight))
        return summarize(per_query_metrics(chosen_on, run))[primary]

    weight, by_weight = choose_weight(score)
    bm25 = summarize(per_query_metrics(chosen_on, fused(1.0).run(ids, top_k=top_k)))[primary]
    log.info("lexical weight auto -> %s (%s model on %d %s, %s by weight: %s; BM25 alone %s)", weight, system,
             len(ids), on, primary, by_weight, bm25)
    return weight, {"on": on, "system": system, "queries": len(ids), "metric": primary, "by_weight": by_weight,
                    "bm25": bm25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned model directory")
    parser.add_argument("--base-embeddings", type=Path, required=True)
    parser.add_argument("--finetuned-embeddings", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--train-qrels", type=Path, required=True, help="scored to choose the weight without a dev split")
    parser.add_argument("--test-qrels", type=Path, required=True)
    parser.add_argument("--dev-qrels", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    setting = check_lexical_weight(get(params, "evaluate.lexical_weight"), allow_auto=True)
    top_k, batch_size = get(params, "evaluate.top_k"), get(params, "encode.batch_size")
    corpus = read_corpus(args.corpus)
    queries = read_queries(args.queries)
    texts = {q: v.text for q, v in queries.items()}
    corpus_ids = list(corpus)
    ranker = BM25Ranker([d.full_text for d in corpus.values()])
    splits = {name: read_qrels(path, corpus_ids, queries) for name, path in (("test", args.test_qrels),
                                                                              ("dev", args.dev_qrels))}
    loaded = _load_systems(args, params, corpus_ids)

    def fused(weight: float) -> LexicalFusion | None:
        return LexicalFusion(ranker, corpus_ids, texts, weight=weight) if weight > 0 else None

    report: dict = {"test_source": query_origin(splits["test"])}
    weight = setting
    if setting == AUTO:
        weight, report["lexical_weight_choice"] = _choose_weight(args.train_qrels, splits["dev"], loaded, texts,
                                                                 corpus_ids, fused, params)
    report = {"lexical_weight": weight, **report}
    for split, qrels in splits.items():
        report[split] = {"queries": len(qrels)}
        if qrels:
            report[split]["bm25"] = summarize(per_query_metrics(qrels, fused(1.0).run(sorted(qrels), top_k=top_k)))
    for name, (model, vectors, views, precision) in loaded.items():
        for split, qrels in splits.items():
            if qrels:
                per_query, _ = evaluate_model(model, texts, qrels, corpus_ids, vectors, top_k=top_k,
                                              batch_size=batch_size, precision=precision, views=views,
                                              lexical=fused(weight))
                report[split][f"{name}+bm25"] = summarize(per_query)
    for split, figures in report.items():
        if split in splits and figures["queries"]:
            log.info("%s (%d queries, lexical weight %s): %s", split, figures["queries"], weight,
                     {k: v["ndcg@10"] for k, v in figures.items() if isinstance(v, dict)})
    write_json_atomic(args.metrics, report)


if __name__ == "__main__":
    run_stage(main)
