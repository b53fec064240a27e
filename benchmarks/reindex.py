"""Benchmark the pgvector index: bulk-load rate, HNSW build time, query latency and recall vs ef_search.

Runs against a throw-away embedded PostgreSQL (or EMBEDTUNE_DATABASE_URL) using the pipeline's fine-tuned
corpus vectors and real test queries, so run `dvc repro` first. Prints a table; writes nothing to the
project's index. Usage:

    python benchmarks/reindex.py [--load-rows 200000] [--ef 10 20 40 80 160]

The load rate is measured on the corpus vectors repeated up to --load-rows rows (one SciFact load is over in
a blink, too short to time). Recall@10 is HNSW's top 10 against exact search over the same vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.encoder import encode
from embedtune.embed.store import load_embeddings
from embedtune.evaluation.retrieval import search as exact_search
from embedtune.models import load_model
from embedtune.runtime import offline_environment
from embedtune.serving.db import DATABASE_URL_ENV, connect, embedded_database_url
from embedtune.serving.search import search
from embedtune.serving.versions import load_version


def _copy_throughput(conn, ids: list[str], vectors: np.ndarray, rows: int) -> dict[str, float]:
    """Rows per second of a binary COPY into a scratch table (the corpus's vectors repeated, ids unique)."""
    reps = max(1, rows // len(ids))
    big_ids = [f"{r}:{i}" for r in range(reps) for i in ids]
    big = np.tile(vectors, (reps, 1))
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(f"CREATE TABLE bench_load (id text PRIMARY KEY, embedding vector({vectors.shape[1]}))")
        with conn.cursor() as cur, cur.copy("COPY bench_load (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "vector"])
            for i, id_ in enumerate(big_ids):
                copy.write_row((id_, big[i]))
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE bench_load")
    return {"load_rows": len(big_ids), "load_rows_per_s": round(len(big_ids) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"))
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings/finetuned"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--test-qrels", type=Path, default=Path("data/split/test.tsv"))
    parser.add_argument("--load-rows", type=int, default=200_000)
    parser.add_argument("--ef", type=int, nargs="+", default=[10, 20, 40, 80, 160])
    parser.add_argument("--repeats", type=int, default=5, help="query passes per ef_search setting")
    args = parser.parse_args()
    offline_environment()

    ids, vectors, _ = load_embeddings(args.embeddings)
    corpus = read_corpus(args.prepared / "corpus.jsonl")
    queries = read_queries(args.prepared / "queries.jsonl")
    qids = sorted(read_qrels(args.test_qrels, ids, queries))
    model = load_model(args.model)
    qvecs = encode(model, [queries[q].text for q in qids], show_progress=False)
    exact = exact_search(qids, qvecs, ids, vectors, top_k=10)

    url = os.environ.get(DATABASE_URL_ENV)
    tmp = tempfile.TemporaryDirectory(prefix=".bench-pg-", dir=".")  # pgserver opens up its parents: stay in the project
    if not url:
        url = embedded_database_url(Path(tmp.name) / "pgdata")
    report: dict[str, object] = {"rows": len(ids), "dim": int(vectors.shape[1]), "queries": len(qids)}
    with connect(url, migrate_schema=True) as conn:
        report.update(_copy_throughput(conn, ids, vectors, args.load_rows))

        # 2. the real corpus: load + HNSW build, as the reindex stage does it
        loaded = load_version(conn, fingerprint="f" * 64, model_path=str(args.model), ids=ids, vectors=vectors,
                              titles=[corpus[i].title for i in ids], texts=[corpus[i].text for i in ids])
        report["index_build_s"] = round(loaded.index_seconds, 3)

        # 3. latency and recall against exact search, per ef_search
        sweep = []
        for ef in args.ef:
            latencies, overlap = [], []
            for _ in range(args.repeats):
                for row, qid in enumerate(qids):
                    started = time.perf_counter()
                    _, hits = search(conn, qvecs[row], model_fingerprint="f" * 64, k=10, ef_search=ef,
                                     version=loaded.version)
                    latencies.append((time.perf_counter() - started) * 1000)
                    overlap.append(len({h.id for h in hits} & set(exact[qid])) / 10)
            sweep.append({"ef_search": ef, "recall@10": round(float(np.mean(overlap)), 4),
                          "p50_ms": round(float(np.percentile(latencies, 50)), 3),
                          "p95_ms": round(float(np.percentile(latencies, 95)), 3)})
        report["ef_search_sweep"] = sweep
        plan = conn.execute(
            f"EXPLAIN SELECT id FROM {loaded.version} ORDER BY embedding <=> %s LIMIT 10", (qvecs[0],)).fetchall()
        report["uses_hnsw_index"] = any("hnsw" in str(line[0]) for line in plan)

    print(f"rows {report['rows']}  dim {report['dim']}  test queries {report['queries']}")
    print(f"COPY BINARY load: {report['load_rows_per_s']:,.0f} rows/s ({report['load_rows']:,} rows)")
    print(f"HNSW build (m=16, ef_construction=64): {report['index_build_s']:.2f} s; planner uses HNSW: "
          f"{report['uses_hnsw_index']}")
    print(f"{'ef_search':>9} {'recall@10':>10} {'p50 ms':>8} {'p95 ms':>8}")
    for row in sweep:
        print(f"{row['ef_search']:>9} {row['recall@10']:>10.4f} {row['p50_ms']:>8.3f} {row['p95_ms']:>8.3f}")
    print(json.dumps(report))
    tmp.cleanup()


if __name__ == "__main__":
    main()
