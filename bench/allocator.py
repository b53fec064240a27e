"""Does keeping freed memory (``embedtune.stage.keep_freed_memory``) speed up encoding on this machine?

Encodes the same corpus documents in fresh processes, with glibc's default allocator settings and with
the stages' setting, in interleaved rounds; prints each pass's wall time, minor page faults and kernel
time, then the medians. Run on a quiet machine:

    python bench/allocator.py [--documents 5183] [--rounds 3] [--precision bf16] [--batch-size 64]

Measured on the 2-core AMD EPYC (2026-11-29, 1,000 documents, bf16, batch 64, three rounds): default
15.8 s median (0.9-1.8M faults, 2-3 s kernel time), kept 14.5 s (0.1-0.5M faults, 0.4-1.1 s kernel time).
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

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
from encode_options import sample_texts  # the same seeded sample as the other encode benchmarks
from embedtune.data import read_dataset
from embedtune.embeddings import encode
from embedtune.models import load_model
from embedtune.stage import keep_freed_memory, offline_environment
mode, source, base, max_len, documents, precision, batch_size = sys.argv[1:8]
offline_environment()
kept = keep_freed_memory() if mode == "kept" else False
texts = sample_texts(read_dataset(Path(source)), int(documents))
model = load_model(base)
model.max_seq_length = int(max_len)
encode(model, texts[:64], batch_size=int(batch_size), precision=precision, show_progress=False)
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
encode(model, texts, batch_size=int(batch_size), precision=precision, show_progress=False)
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"mode": mode, "kept": kept, "documents": len(texts), "seconds": round(seconds, 2),
                  "minor_faults": after.ru_minflt - before.ru_minflt,
                  "kernel_s": round(after.ru_stime - before.ru_stime, 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch-size", type=int, default=None, help="default: params.yaml encode.batch_size")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    batch_size = args.batch_size or params["encode"]["batch_size"]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {"HF_HUB_OFFLINE": "1"}
    passes: dict[str, list[float]] = {"default": [], "kept": []}
    for _ in range(args.rounds):
        for mode, seconds in passes.items():
            child = [sys.executable, "-c", CHILD, mode, params["data"]["source"], params["model"]["base"],
                     str(params["model"]["max_seq_length"]), str(args.documents), args.precision, str(batch_size)]
            result = json.loads(subprocess.run(child, env=env, check=True, capture_output=True,
                                               text=True).stdout.splitlines()[-1])
            seconds.append(result["seconds"])
            print(json.dumps(result), flush=True)
    medians = {mode: statistics.median(seconds) for mode, seconds in passes.items()}
    print(f"median: default {medians['default']:.2f} s, kept {medians['kept']:.2f} s "
          f"({1 - medians['kept'] / medians['default']:+.1%} faster)")


if __name__ == "__main__":
    main()
