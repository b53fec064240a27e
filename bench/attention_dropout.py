"""What does attention dropout cost a training step, per head or shared by the heads?

Times real training steps (the pipeline's loss over the mined rows, backward, AdamW: ``bench/training_step.py``)
with three attention paths, alternating their order each round after one warm-up step each:

* ``sdpa``: the model's own (transformers' SDPA attention). With dropout on, PyTorch cannot use its fused CPU
  kernel and takes the unfused math path, drawing one Bernoulli mask per (head, query, key).
* ``eager``: the same per-head masks on transformers' eager attention (a reference, not a setting).
* ``shared``: ``train.attention_dropout_heads=shared``, one mask per (example, query, key) shared by the heads.

    python bench/attention_dropout.py [--steps 4] [--rounds 3] [--batch-size 16]

Run after `dvc repro` (it reads data/mined and data/prepared) on a quiet machine. Measured on the 2-core AMD
EPYC, 2026-11-30 17:15, batch 16, bf16, 4 steps x 3 rounds, on that day's slow VM: seconds a step, median
sdpa 3.89, eager 3.40, shared 2.57 (a first version of this script at 16:37: 3.88, 3.44, 2.59). Those
runs timed ``eager`` with a copy of transformers' eager attention; it is the library's own now (one step, 18:08:
sdpa 4.82, eager 3.58, shared 2.76).
"""

from __future__ import annotations

import argparse
import statistics
import time

from embedtune.stage import keep_freed_memory, offline_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    args = parser.parse_args()
    offline_environment()
    keep_freed_memory()  # as the stages run
    from training_step import TrainingStep  # bench/ is on sys.path when run as a script

    from embedtune.training import use_shared_attention_dropout

    bench = TrainingStep()
    config = bench.model[0].auto_model.config
    own = config._attn_implementation
    use_shared_attention_dropout(bench.model)
    paths = {"sdpa": own, "eager": "eager", "shared": config._attn_implementation}  # eager: transformers' own
    batches = [bench.batch(i * args.batch_size, args.batch_size) for i in range(args.steps)]
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for round_number in range(args.rounds):
        for name in (list(paths) if round_number % 2 == 0 else list(paths)[::-1]):
            config._attn_implementation = paths[name]
            bench.run(batches[0], args.precision)  # warm-up
            started = time.perf_counter()
            for features in batches:
                bench.run(features, args.precision)
            seconds[name].append(round((time.perf_counter() - started) / len(batches), 3))
            print(f"round {round_number + 1} {name:6s} {seconds[name][-1]:6.3f} s a step", flush=True)
    print("median s a step:", {name: statistics.median(values) for name, values in seconds.items()})


if __name__ == "__main__":
    main()
