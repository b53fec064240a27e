"""Load test of the search service on loopback: batched against unbatched query encoding, in one run.

Starts the service in this process on the serving index (hybrid search at params.yaml's
`evaluate.lexical_weight` as served, as `embedtune serve` ranks), once with each query encoded alone (`--max-batch 1`) and
once with concurrent queries batched, and fires `--requests` /search requests per concurrency level from a
separate client process (so the client's threads do not share the service's interpreter). Per variant and level it
writes requests/s, p50/p95 latency and where a request's time went: the service's own Server-Timing parts
(encode, vector search, BM25, logging the impression) and HTTP (what the client waited beyond the service's
total: parsing, routing, serialisation, the socket). The client shares the machine's cores with the service and
with PostgreSQL, as a caller on the same host would. Run after `dvc repro`:

    python benchmarks/serve_load.py [--requests 600] [--levels 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from embedtune.config import get, load_params
from embedtune.data.beir import read_queries
from embedtune.lexical import served_weight
from embedtune.runtime import offline_environment
from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import database_url
from embedtune.serving.service import Experiment, SearchService

PARTS = ("encode", "vector", "bm25", "log", "total")


def _client(url: str, texts: list[str], requests_count: int, level: int) -> dict:
    """In the client process: ``requests_count`` searches from ``level`` threads; latencies and Server-Timing."""
    import requests

    local = threading.local()

    def one(i: int) -> tuple[float, dict[str, float]]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.get(url, params={"q": texts[i % len(texts)], "k": 10, "user": f"load{i}"}, timeout=60)
        response.raise_for_status()
        latency = (time.perf_counter() - started) * 1000
        parts = dict(part.split(";dur=") for part in response.headers["Server-Timing"].split(", "))
        return latency, {name: float(ms) for name, ms in parts.items()}

    for i in range(min(level, 8)):
        one(i)  # warm up connections and the model's first batches
    with ThreadPoolExecutor(level) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(requests_count)))
        seconds = time.perf_counter() - started
    latencies = np.array([r[0] for r in results])
    breakdown = {name: round(float(np.mean([r[1].get(name, 0.0) for r in results])), 2) for name in PARTS}
    breakdown["http"] = round(float(np.mean(latencies)) - breakdown["total"], 2)
    return {"rps": round(requests_count / seconds, 1), "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p95_ms": round(float(np.percentile(latencies, 95)), 1), "mean_ms_by_part": breakdown}


def run_variant(name: str, max_batch: int, texts: list[str], args: argparse.Namespace,
                lexical_weight: float) -> dict:
    service = SearchService(database_url(), Experiment(f"load-test-{name}"), lexical_weight=lexical_weight,
                            max_batch=max_batch)
    server = BackgroundServer(service)
    levels = {}
    try:
        with multiprocessing.get_context("spawn").Pool(1) as client:
            for level in args.levels:
                levels[str(level)] = client.apply(_client, (f"{server.url}/search", texts, args.requests, level))
                print(f"{name:>9} {level:>3} clients: {levels[str(level)]}", flush=True)
        batches = service.query_batches()["control"]
    finally:
        server.stop()
    encoded = sum(size * count for size, count in batches.items())
    return {"max_batch": max_batch, "levels": levels,
            "mean_batch": round(encoded / max(1, sum(batches.values())), 2) if batches else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=64, help="the batched variant's bound")
    parser.add_argument("--output", type=Path, default=Path("reports/benchmarks/serve.json"))
    args = parser.parse_args()
    offline_environment()
    texts = [q.text for q in read_queries(Path("data/prepared/queries.jsonl")).values()]
    lexical_weight = served_weight(get(load_params(), "evaluate.lexical_weight", 0.0))
    report = {"requests_per_level": args.requests, "lexical_weight": lexical_weight,
              "unbatched": run_variant("unbatched", 1, texts, args, lexical_weight),
              "batched": run_variant("batched", args.max_batch, texts, args, lexical_weight)}
    for level in map(str, args.levels):
        ratio = report["batched"]["levels"][level]["rps"] / report["unbatched"]["levels"][level]["rps"]
        report[f"batched_vs_unbatched_rps@{level}"] = round(ratio, 2)
        print(f"{level:>3} clients: batched {ratio:.2f}x the unbatched requests/s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
