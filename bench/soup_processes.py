"""Do a model soup's training runs go faster side by side (one process each) than one after another?

Times real training steps (the pipeline's loss over the mined rows, backward, AdamW: `bench/training_step.py`,
as `bench/allocator.py --workload train` does) in fresh processes with the stages' allocator setting, in
alternating rounds: one process with every core (how the runs train one after another, `train.soup_processes=1`)
against N processes at once with an equal share of the cores each (`train.soup_processes=auto` on an N-core CPU).
Prints each pass and the time per step of all runs together. Run after `dvc repro`, on a quiet machine:

    python bench/soup_processes.py [--steps 6] [--rounds 2] [--processes 2]

Measured on the 2-core AMD EPYC (2026-12-01, bf16, batch 16, 6 steps, 2 rounds; a VM 1.5x slower than on quiet
days). 08:06, this script: one two-thread process 4.95 / 4.63 s a step; two one-thread processes 40.4 / 41.6 s and
40.9 / 39.8 s for 6 steps each, median 3.44 s a step between them (**28% less time**), 4.4-4.8 GB peak RSS each.
07:05, a first version with the same child code: 4.13 / 4.00 against 3.35 / 3.33 s a step (18% less). In the
pipeline's train stage (two runs of 150 steps) the two layouts took 1192 s and 963 s (19% less), on equally slow VMs.
Also measured (08:02, two one-thread processes, alternating): transformers' eager attention instead of SDPA's math
path (same dropout masks, other rounding) 3.33 / 3.13 s a step against 3.54 / 3.38, ~6%: too little to change the
model's arithmetic for, not a setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from allocator import MEASURE, TRAIN  # the same child code as the allocator benchmark

THREADS = "import os, torch; torch.set_num_threads(int(os.environ['BENCH_THREADS']))\n"


def _start(code: str, child_args: dict, threads: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {
        "HF_HUB_OFFLINE": "1", "BENCH_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(child_args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _result(child: subprocess.Popen) -> dict:
    out, _ = child.communicate()
    if child.returncode != 0:
        sys.exit(f"a benchmark process failed (exit code {child.returncode}); run it alone to see why")
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="runs side by side (default: 2, the soup)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    cores = len(os.sched_getaffinity(0))
    child_args = {"source": params["data"]["source"], "base": params["model"]["base"],
                  "max_seq_length": params["model"]["max_seq_length"], "documents": 0, "steps": args.steps,
                  "precision": args.precision, "batch_size": params["train"]["batch_size"], "mode": "kept"}
    code = THREADS + TRAIN + MEASURE
    per_step: dict[str, list[float]] = {"one after another": [], "side by side": []}
    for _ in range(args.rounds):
        alone = _result(_start(code, child_args, cores))
        per_step["one after another"].append(alone["seconds"] / args.steps)
        print(json.dumps({"layout": "one process", "threads": cores, **alone}), flush=True)
        started = time.perf_counter()
        together = [_result(child) for child in
                    [_start(code, child_args, max(1, cores // args.processes)) for _ in range(args.processes)]]
        # each process's own timed steps (model loading excluded), the slowest of them for all the steps
        slowest = max(r["seconds"] for r in together)
        per_step["side by side"].append(slowest / (args.steps * args.processes))
        print(json.dumps({"layout": f"{args.processes} processes", "threads": max(1, cores // args.processes),
                          "seconds": [r["seconds"] for r in together],
                          "peak_rss_gb": [r["peak_rss_gb"] for r in together],
                          "wall_incl_loading_s": round(time.perf_counter() - started, 1)}), flush=True)
    medians = {layout: statistics.median(values) for layout, values in per_step.items()}
    print("seconds per step of all runs together (median): " + ", ".join(
        f"{layout} {m:.2f}" for layout, m in medians.items())
        + f"; side by side {1 - medians['side by side'] / medians['one after another']:.0%} less time")


if __name__ == "__main__":
    main()
