"""prepare: validate, normalise, drop empty documents, deduplicate (exact and near) and optionally sample."""

import argparse
from pathlib import Path

from embedtune.data import atomic_directory, read_dataset, write_json_atomic
from embedtune.prepare import prepare_dataset, write_prepared
from embedtune.stage import get, load_params, log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    args = parser.parse_args()
    params = load_params()
    dataset = read_dataset(args.raw)
    prepared, report = prepare_dataset(
        dataset,
        near_duplicate_threshold=get(params, "prepare.near_duplicate_threshold"),
        sample_queries=get(params, "data.sample_queries", 0) or 0,
        sample_documents=get(params, "data.sample_documents", 0) or 0,
        seed=get(params, "seed"),
    )
    with atomic_directory(args.output) as staging:
        write_prepared(staging, prepared, report)
    write_json_atomic(args.metrics, report.counts)
    log.info("prepared: %s", report.counts)


if __name__ == "__main__":
    run_stage(main)
