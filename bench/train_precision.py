"""Time one training step in fp32 and in bf16 autocast on this CPU, with the pipeline's own loss and batch.

A step here is what the trainer does per batch: the MNRL loss (as configured in params.yaml `train`) over
the first `batch_size` rows of the mined training data (claim, positive, hard negatives), backward, and an
optimizer step. The precisions alternate, after one warm-up step each, so a busy neighbour slows both alike.
Run after `dvc repro` (it reads data/mined and data/prepared):

    python bench/train_precision.py [--rounds 3] [--max-seq-length 128] [--batch-size 32] [--output FILE]

Why: bf16 autocast halved encode time on the AMD EPYC and the AMX Xeon but slowed it 1.4x on a Xeon VM without
AMX, so whether `train.precision: auto` (bf16 on CPUs that report native bf16) is the faster choice depends on
the machine. This prints the answer for the one it runs on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from embedtune.stage import offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mined", type=Path, default=Path("data/mined/train.jsonl"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per precision")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="token limit while training (default: train.max_seq_length, else model.max_seq_length)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default: train.batch_size)")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    offline_environment()
    import torch
    from training_step import TrainingStep

    bench = TrainingStep(mined=args.mined, prepared=args.prepared, max_seq_length=args.max_seq_length)
    size = args.batch_size or bench.config.batch_size
    features = bench.batch(0, size)

    def step(precision: str) -> float:
        started = time.perf_counter()
        bench.run(features, precision)
        return time.perf_counter() - started

    for precision in ("fp32", "bf16"):
        step(precision)
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for precision in ("fp32", "bf16"):
            seconds[precision].append(step(precision))
            print(f"{precision}: {seconds[precision][-1]:.2f} s", flush=True)
    median = {p: statistics.median(v) for p, v in seconds.items()}
    report = {
        "batch": min(size, len(bench.dataset)),
        "columns": len(features),
        "max_seq_length": bench.model.max_seq_length,
        "threads": torch.get_num_threads(),
        "step_seconds": {p: [round(s, 2) for s in v] for p, v in seconds.items()},
        "median_step_s": {p: round(v, 2) for p, v in median.items()},
        "bf16_speedup": round(median["fp32"] / median["bf16"], 2),
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
