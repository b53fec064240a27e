"""Load test of `embedtune serve` on loopback: requests/s and latency at 1, 8 and 32 concurrent clients.

Starts the service in-process (serving index, no experiment, so each search embeds once), fires a bounded
number of /search requests per concurrency level from a thread pool, and writes reports/benchmarks/serve.json with
`rps`, `p50_ms`, `p95_ms` per level. Run after `dvc repro`:

    python benchmarks/serve_load.py [--requests 300] [--levels 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from embedtune.data.beir import read_queries
from embedtune.runtime import offline_environment
from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import database_url
from embedtune.serving.service import Experiment, SearchService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--output", type=Path, default=Path("reports/benchmarks/serve.json"))
    args = parser.parse_args()
    offline_environment()
    texts = [q.text for q in read_queries(Path("data/prepared/queries.jsonl")).values()]
    server = BackgroundServer(SearchService(database_url(), Experiment("load-test")))
    url = f"{server.url}/search"
    local = threading.local()

    def one(i: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        session.get(url, params={"q": texts[i % len(texts)], "k": 10, "user": f"load{i}"}, timeout=60).raise_for_status()
        return (time.perf_counter() - started) * 1000

    one(0)  # warm up
    result = {}
    for level in args.levels:
        with ThreadPoolExecutor(level) as pool:
            started = time.perf_counter()
            latencies = list(pool.map(one, range(args.requests)))
            seconds = time.perf_counter() - started
        result[str(level)] = {"rps": round(args.requests / seconds, 1),
                              "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                              "p95_ms": round(float(np.percentile(latencies, 95)), 1)}
        print(f"{level:>3} clients: {result[str(level)]}", flush=True)
    server.stop()
    args.output.write_text(json.dumps({"requests_per_level": args.requests, "levels": result,
                                       **{f"rps@{k}": v["rps"] for k, v in result.items()},
                                       **{f"p50_ms@{k}": v["p50_ms"] for k, v in result.items()},
                                       **{f"p95_ms@{k}": v["p95_ms"] for k, v in result.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
