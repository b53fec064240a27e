"""prepare: validate, normalise, drop empty documents, deduplicate (exact and near) and optionally sample."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.prepare import prepare_dataset, remap_negatives, write_negatives, write_prepared
from embedtune.data.sources import ClickOptions, read_sources
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    args = parser.parse_args()
    params = load_params()
    dataset, negatives, source_counts = read_sources(args.raw, ClickOptions.from_params(get(params, "prepare.clicks")))
    prepared, report = prepare_dataset(
        dataset,
        near_duplicate_threshold=get(params, "prepare.near_duplicate_threshold"),
        max_document_chars=get(params, "prepare.max_document_chars"),
        sample_queries=get(params, "data.sample_queries", 0) or 0,
        sample_documents=get(params, "data.sample_documents", 0) or 0,
        seed=get(params, "seed"),
    )
    negatives = remap_negatives(negatives, report, prepared)
    report.counts["explicit_negatives"] = sum(len(d) for d in negatives.values())
    with atomic_directory(args.output) as staging:
        write_prepared(staging, prepared, report)
        write_negatives(staging / "negatives.tsv", negatives)
    write_json_atomic(args.metrics, {**report.counts, "sources": source_counts})
    if cut := report.counts["documents_cut_to_max_chars"]:
        log.warning("%d document(s) longer than prepare.max_document_chars=%d characters were cut there", cut,
                    get(params, "prepare.max_document_chars"))
    log.info("prepared: %s", report.counts)


if __name__ == "__main__":
    run_stage(main)
