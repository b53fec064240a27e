"""Does keeping freed memory (``embedtune.stage.keep_freed_memory``) speed up encoding and training here?

Runs the same work in fresh processes under glibc's allocator settings, in interleaved rounds, and prints
each pass's wall time, minor page faults and kernel time, then the medians. Modes: ``default`` (glibc as it
comes), ``threshold`` (the stages' setting until 2026-11-30: the highest mmap threshold, 32 MB, and no
trimming; larger allocations still get a fresh ``mmap`` each) and ``kept`` (the stages' setting now: that, and
no ``mmap`` for any allocation). Workloads: ``encode`` (corpus documents, as the embed stages do) and ``train``
(real training steps: the pipeline's loss over the mined rows in `data/mined/train.jsonl`, backward, AdamW, as
the train stage does and as `bench/train_precision.py` times them; run after `dvc repro`). Run on a quiet machine:

    python bench/allocator.py [--workload encode|train] [--modes default threshold kept] [--rounds 3]
        [--documents 5183] [--steps 8] [--precision bf16] [--batch-size N]

Measured on the 2-core AMD EPYC (2026-11-29, encode, 1,000 documents, bf16, batch 64, three rounds): default
15.8 s median (0.9-1.8M faults, 2-3 s kernel time), threshold 14.5 s (0.1-0.5M faults, 0.4-1.1 s kernel time).
Training (2026-11-30 07:40, `--workload train --rounds 2 --steps 5`, batch 16, bf16, split 23's mined rows): five
steps took 31.5 s median by default (5.2M faults, 16-18 s kernel time), 28.7 s with the threshold (3.4-3.8M
faults, 11-14 s) and 20.6 s kept (0.1-0.2M faults, 1-2 s; peak RSS 4.6-4.9 GB against 4.2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

SETUP = """
import ctypes, json, resource, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
from embedtune.stage import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, MAX_MMAP_THRESHOLD, keep_freed_memory, offline_environment
args = json.loads(sys.argv[1])
offline_environment()
mode = args["mode"]
kept = keep_freed_memory() if mode == "kept" else False
if mode == "threshold":
    mallopt = ctypes.CDLL(None).mallopt
    kept = bool(mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
"""

ENCODE = SETUP + """
from encode_options import sample_texts  # the same seeded sample as the other encode benchmarks
from embedtune.data import read_dataset
from embedtune.embeddings import encode
from embedtune.models import load_model
texts = sample_texts(read_dataset(Path(args["source"])), args["documents"])
model = load_model(args["base"])
model.max_seq_length = args["max_seq_length"]
def work(warm_up):
    chunk = texts[:64] if warm_up else texts
    encode(model, chunk, batch_size=args["batch_size"], precision=args["precision"], show_progress=False)
    return {"documents": len(chunk)}
"""

TRAIN = SETUP + """
from training_step import TrainingStep  # the same step as bench/train_precision.py times
bench = TrainingStep()
size = args["batch_size"]
batches = [bench.batch(i * size, size) for i in range(args["steps"] + 1)]
def work(warm_up):
    for features in (batches[:1] if warm_up else batches[1:]):
        bench.run(features, args["precision"])
    return {"steps": 1 if warm_up else len(batches) - 1, "batch_size": size}
"""

MEASURE = """
work(True)
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
info = work(False)
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"mode": mode, "kept": kept, **info, "seconds": round(seconds, 2),
                  "minor_faults": after.ru_minflt - before.ru_minflt,
                  "kernel_s": round(after.ru_stime - before.ru_stime, 2),
                  "peak_rss_gb": round(after.ru_maxrss / 2**20, 2)}))
"""

MODES = ("default", "threshold", "kept")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["encode", "train"], default="encode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--documents", type=int, default=1000, help="encode: corpus documents per pass")
    parser.add_argument("--steps", type=int, default=8, help="train: timed optimizer steps per pass")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: params.yaml encode.batch_size (encode) or train.batch_size (train)")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    section = "encode" if args.workload == "encode" else "train"
    child_args = {"source": params["data"]["source"], "base": params["model"]["base"],
                  "max_seq_length": params["model"]["max_seq_length"], "documents": args.documents,
                  "steps": args.steps, "precision": args.precision,
                  "batch_size": args.batch_size or params[section]["batch_size"]}
    code = (ENCODE if args.workload == "encode" else TRAIN) + MEASURE
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {"HF_HUB_OFFLINE": "1"}
    passes: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for _ in range(args.rounds):
        for mode, seconds in passes.items():
            child = [sys.executable, "-c", code, json.dumps(child_args | {"mode": mode})]
            result = json.loads(subprocess.run(child, env=env, check=True, capture_output=True,
                                               text=True).stdout.splitlines()[-1])
            seconds.append(result["seconds"])
            print(json.dumps(result), flush=True)
    medians = {mode: statistics.median(seconds) for mode, seconds in passes.items()}
    first = args.modes[0]
    print("median: " + ", ".join(f"{mode} {m:.2f} s ({1 - m / medians[first]:+.1%} vs {first})"
                                 for mode, m in medians.items()))


if __name__ == "__main__":
    main()
