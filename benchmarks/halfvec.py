"""What storing vectors as pgvector's ``halfvec`` (16-bit) instead of ``vector`` (32-bit) costs, on every domain.

    python benchmarks/halfvec.py [--domains scifact arguana cranfield cosqa] [--output reports/benchmarks/halfvec.json]

For each domain of ``../shared/datasets``: the base model encodes the corpus as the embed stage does (documents and
their tail views) and the test queries; both vector types are loaded into a throw-away embedded PostgreSQL as the
reindex stage loads them (HNSW, the pipeline's m / ef_construction / ef_search), and every test query is searched
through the served path. Per type it reports the served top 10 against exact fp32 search (``hnsw_recall@10``),
`ndcg@10` and `recall@10` against the judgements, the size of the table and its index, and the build time. The
base model's vectors stand in for a fine-tuned model's: the question is how 16-bit storage and the graph treat a
384-dimension unit-vector cloud, not how good the model is. Rule (written before the runs): halfvec becomes the
default if its `recall@10` against the judgements stays within 0.005 of vector's on every domain.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.corpus import embed_corpus
from embedtune.embed.encoder import encode
from embedtune.evaluation.metrics import per_query_metrics, summarize
from embedtune.evaluation.retrieval import search as exact_search
from embedtune.models import load_model
from embedtune.runtime import offline_environment
from embedtune.serving.db import DATABASE_URL_ENV, connect, embedded_database_url
from embedtune.serving.search import search
from embedtune.serving.versions import VECTOR_TYPES, load_version

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
FINGERPRINT = "f" * 64


def encode_domain(name: str, params: dict) -> dict:
    """The base model's corpus vectors (with tail views), test queries and judgements of one domain."""
    model = load_model(params["model"]["base"], max_seq_length=params["model"]["max_seq_length"])
    corpus = {i: d for i, d in read_corpus(DATASETS / name / "corpus.jsonl").items() if d.full_text.strip()}
    queries = read_queries(DATASETS / name / "queries.jsonl")
    qrels = read_qrels(DATASETS / name / "qrels" / "test.tsv", corpus, queries)
    encoded = embed_corpus(model, corpus, params["encode"])
    qids = sorted(qrels)
    qvecs = encode(model, [queries[q].text for q in qids], precision=encoded.precision, show_progress=False)
    return {"corpus": corpus, "ids": encoded.ids, "vectors": encoded.vectors, "views": encoded.views, "qids": qids,
            "qvecs": qvecs, "qrels": qrels}


def measure(conn, data: dict, vector_type: str, reindex: dict) -> dict:
    """Load ``data`` as ``vector_type`` as the reindex stage does, search every test query, score and size it."""
    ids, corpus = data["ids"], data["corpus"]
    loaded = load_version(conn, fingerprint=FINGERPRINT, model_path="base", ids=ids, vectors=data["vectors"],
                          titles=[corpus[i].title for i in ids], texts=[corpus[i].text for i in ids],
                          views=data["views"], layout="tail" if data["views"] is not None else "",
                          hnsw_m=reindex["hnsw_m"], hnsw_ef_construction=reindex["hnsw_ef_construction"],
                          maintenance_work_mem=reindex["maintenance_work_mem"], vector_type=vector_type)
    exact = exact_search(data["qids"], data["qvecs"], ids, data["vectors"], top_k=10, views=data["views"])
    served, overlap, latencies = {}, [], []
    for row, qid in enumerate(data["qids"]):
        started = time.perf_counter()
        _, hits = search(conn, data["qvecs"][row], model_fingerprint=FINGERPRINT, k=10,
                         ef_search=reindex["ef_search"], version=loaded.version)
        latencies.append((time.perf_counter() - started) * 1000)
        served[qid] = {h.id: h.score for h in hits}
        overlap.append(len(set(served[qid]) & set(exact[qid])) / 10)
    figures = summarize(per_query_metrics(data["qrels"], served))
    table_mb, index_mb = (conn.execute(f"SELECT pg_table_size('{loaded.version}') / 1e6, "
                                       f"pg_relation_size('{loaded.version}_hnsw') / 1e6").fetchone())
    plan = conn.execute(f"EXPLAIN SELECT id FROM {loaded.version} ORDER BY embedding <=> %s LIMIT 10",
                        (data["qvecs"][0],)).fetchall()
    return {"hnsw_recall@10": round(float(np.mean(overlap)), 4), "ndcg@10": figures["ndcg@10"],
            "recall@10": figures["recall@10"], "table_mb": round(float(table_mb), 2),
            "index_mb": round(float(index_mb), 2), "index_build_s": round(loaded.index_seconds, 2),
            "query_p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "uses_hnsw_index": any("hnsw" in str(line[0]) for line in plan), "rows": loaded.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=sorted(p.name for p in DATASETS.iterdir() if p.is_dir()))
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "benchmarks" / "halfvec.json")
    args = parser.parse_args()
    offline_environment()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tmp = tempfile.TemporaryDirectory(prefix=".bench-pg-", dir=REPO)  # pgserver opens up its parents: stay here
    url = os.environ.get(DATABASE_URL_ENV) or embedded_database_url(Path(tmp.name) / "pgdata")
    report = {"model": params["model"]["base"], "reindex": params["reindex"], "domains": {}}
    with connect(url, migrate_schema=True) as conn:
        for name in args.domains:
            data = encode_domain(name, params)
            report["domains"][name] = {"documents": len(data["ids"]), "queries": len(data["qids"]),
                                       **{t: measure(conn, data, t, params["reindex"]) for t in VECTOR_TYPES}}
            print(json.dumps({name: report["domains"][name]}))
    tmp.cleanup()
    print(f"{'domain':<10}{'type':>9}{'hnsw_recall@10':>16}{'ndcg@10':>9}{'recall@10':>10}{'table MB':>10}"
          f"{'index MB':>10}{'build s':>9}")
    for name, result in report["domains"].items():
        for vector_type in VECTOR_TYPES:
            r = result[vector_type]
            print(f"{name:<10}{vector_type:>9}{r['hnsw_recall@10']:>16.4f}{r['ndcg@10']:>9.4f}{r['recall@10']:>10.4f}"
                  f"{r['table_mb']:>10.2f}{r['index_mb']:>10.2f}{r['index_build_s']:>9.2f}")
    deltas = {n: round(r["halfvec"]["recall@10"] - r["vector"]["recall@10"], 4) for n, r in report["domains"].items()}
    report["halfvec_minus_vector_recall@10"] = deltas
    report["halfvec_within_0.005_everywhere"] = all(abs(d) <= 0.005 for d in deltas.values())
    print(f"halfvec - vector recall@10: {deltas}; within 0.005 on every domain: "
          f"{report['halfvec_within_0.005_everywhere']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
