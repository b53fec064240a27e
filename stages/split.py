"""split: leakage-safe train/test (and optional dev) qrels (source split kept when present, else seeded split by query)."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import read_dataset, write_qrels
from embedtune.data.split import split_queries
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.runtime import log, run_stage, warn_loudly


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prepared", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    args = parser.parse_args()
    params = load_params()
    min_pairs = get(params, "split.min_train_pairs")
    result = split_queries(
        read_dataset(args.prepared),
        test_fraction=get(params, "split.test_fraction"),
        seed=get(params, "seed"),
        near_duplicate_threshold=get(params, "split.near_duplicate_threshold"),
        use_source_split=get(params, "split.use_source_split"),
        leakage_policy=get(params, "split.leakage_policy"),
        min_train_pairs=min_pairs,
        dev_fraction=get(params, "split.dev_fraction"),
    )
    with atomic_directory(args.output) as staging:
        write_qrels(staging / "train.tsv", result.train)
        write_qrels(staging / "test.tsv", result.test)
        write_qrels(staging / "dev.tsv", result.dev)  # empty (header only) when split.dev_fraction is 0
    write_json_atomic(args.metrics, result.stats)
    if not result.train:
        warn_loudly("no labelled training pairs: training will use synthetic queries only (synthetic.enabled) "
                    "or fail at the mine stage")
    elif result.stats["low_train_pairs"]:
        warn_loudly(
            f"only {result.stats['train_pairs']} training pairs (< {min_pairs}): the fine-tuned model may overfit; "
            "add labelled pairs or synthetic queries"
        )
    log.info("split: %s", result.stats)


if __name__ == "__main__":
    run_stage(main)
