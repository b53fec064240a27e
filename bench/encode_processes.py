"""Corpus encode in one process with all threads, or in several forked processes (``encode.processes``)?

Encodes the same corpus documents (the seeded sample the other encode benchmarks use) with
``embedtune.embeddings.encode`` in this process and with ``encode_corpus(processes=N)``, alternating which goes
first in each round, and prints each pass's wall time (fork and result transfer included), the medians, and
whether the vectors are equal to the bit (they must be: the processes encode the batches one process would).

    python bench/encode_processes.py [--documents 1000] [--rounds 5] [--processes 2] [--precision bf16]
        [--batch-size 64] [--output FILE.json]

Measured on the 2-core AMD EPYC, 2026-11-30 16:10, on a slow day for that VM (1,000 documents in ~23 s against
14-16 s on quiet days), bf16, batch 64, the machine otherwise idle: the whole corpus (``--documents 5183 --rounds 2``)
in one process 117.3 / 115.8 s, in two processes 109.2 / 111.7 s: **1.055x**, the same vectors to the bit.
Run on a quiet machine: anything else on the cores changes the times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import yaml
from encode_options import sample_texts  # bench/ is on sys.path when run as a script

from embedtune.data import read_dataset
from embedtune.embeddings import encode, encode_corpus
from embedtune.models import load_model
from embedtune.stage import keep_freed_memory, offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1000, help="corpus documents to encode (5183: all of SciFact)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    offline_environment()
    keep_freed_memory()  # as the stages run
    import torch

    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    texts = sample_texts(read_dataset(Path(params["data"]["source"])), args.documents)
    model = load_model(params["model"]["base"], max_seq_length=params["model"]["max_seq_length"])
    encode(model, texts[:args.batch_size], batch_size=args.batch_size, precision=args.precision, show_progress=False)

    runs = {
        "one": lambda: encode(model, texts, batch_size=args.batch_size, precision=args.precision, show_progress=False),
        "processes": lambda: encode_corpus(model, texts, batch_size=args.batch_size, precision=args.precision,
                                           processes=args.processes, show_progress=False),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    vectors: dict[str, np.ndarray] = {}
    for round_number in range(args.rounds):
        for name in (("one", "processes") if round_number % 2 == 0 else ("processes", "one")):
            started = time.perf_counter()
            vectors[name] = runs[name]()
            seconds[name].append(round(time.perf_counter() - started, 2))
            print(f"round {round_number + 1} {name:9s} {seconds[name][-1]:7.2f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "documents": len(texts), "precision": args.precision, "batch_size": args.batch_size,
        "processes": args.processes, "threads": torch.get_num_threads(), "seconds": seconds,
        "median_s": medians, "speedup": round(medians["one"] / medians["processes"], 3),
        "same_vectors_to_the_bit": bool(np.array_equal(vectors["one"], vectors["processes"])),
    }
    print(json.dumps({k: result[k] for k in ("median_s", "speedup", "same_vectors_to_the_bit")}))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
