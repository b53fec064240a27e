"""Simulated A/B test on the demo domain: base model (control) vs the pipeline's fine-tuned model (treatment).

Indexes the base model's corpus vectors as a version (if not yet), serves both arms with team-draft
interleaving (or bucket mode) on loopback, lets simulated users (embedtune.serving.simulate) search the held-out test
queries and click relevant documents, and prints `embedtune ab report`. Run after `dvc repro`:

    python benchmarks/ab_simulation.py [--mode interleave|bucket] [--searches 900] [--output reports/benchmarks/ab_simulation.json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import yaml

from embedtune.data.beir import read_corpus, read_qrels, read_queries
from embedtune.embed.store import load_embeddings, load_views
from embedtune.embed.views import view_layout
from embedtune.models import model_fingerprint, resolve_model_path
from embedtune.runtime import offline_environment
from embedtune.serving.ablog import report
from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import connect, database_url
from embedtune.serving.service import Experiment, SearchService
from embedtune.serving.simulate import simulate
from embedtune.serving.versions import get_version, load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="interleave", choices=["interleave", "bucket"])
    parser.add_argument("--searches", type=int, default=900)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    offline_environment()
    params = yaml.safe_load(Path("params.yaml").read_text())
    corpus = read_corpus(Path("data/prepared/corpus.jsonl"))
    queries = read_queries(Path("data/prepared/queries.jsonl"))
    test = read_qrels(Path("data/split/test.tsv"), corpus, queries)
    base_dir = resolve_model_path(params["model"]["base"]).resolve()
    url = database_url()
    with connect(url, migrate_schema=True) as conn:
        ids, vectors, meta = load_embeddings(Path("data/embeddings/base"))
        control = load_version(conn, fingerprint=model_fingerprint(base_dir), model_path=str(base_dir),
                                     ids=ids, vectors=vectors, titles=[corpus[i].title for i in ids],
                                     texts=[corpus[i].text for i in ids], views=load_views(Path("data/embeddings/base"), ids),
                                     layout=view_layout(meta)).version
        treatment = json.loads(Path("metrics/reindex.json").read_text())["version"]  # what the reindex stage loaded
        get_version(conn, treatment)  # refuses one pruned since
    name = f"sim-{args.mode}-{uuid.uuid4().hex[:6]}"
    server = BackgroundServer(SearchService(url, Experiment(name, args.mode, control, treatment, 0.5)))
    pool = [(queries[q].text, {d for d, s in docs.items() if s > 0}) for q, docs in sorted(test.items())]
    started = time.perf_counter()
    stats = simulate(server.url, pool, args.searches, users=200, seed=1)
    seconds = time.perf_counter() - started
    server.stop()
    with connect(url, migrate_schema=True) as conn:
        result = report(conn, name)
    result["simulation"] = {**stats, "seconds": round(seconds, 1), "test_queries": len(pool)}
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
