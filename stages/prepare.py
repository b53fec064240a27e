"""prepare: validate, normalise, drop empty documents, deduplicate (exact and near) and optionally sample.

A `documents/` folder in the raw data (PDF, DOCX, HTML, Markdown, text) is converted and chunked into corpus
documents first; conversions are cached by file content in --documents-cache, and skipped files are listed in
the metrics (prepare.documents.strict makes them errors).

Documents alone (no query judged by a person) need `synthetic.enabled`: synthetic queries then stand in for the
test split too (`synthetic.test_queries` of them, ids `syn-test:`), and every figure from them is labelled
synthetic."""

import argparse
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.prepare import prepare_dataset, remap_negatives, write_negatives, write_prepared
from embedtune.data.sources import ClickOptions, read_sources
from embedtune.data.synthetic import generator_from_params, has_judged_queries, with_synthetic_test
from embedtune.documents.folder import FOLDER, DocumentOptions, chunker_for_model, read_documents
from embedtune.errors import InputError
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.runtime import log, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--documents-cache", type=Path, default=None, help="conversion cache of the documents folder")
    args = parser.parse_args()
    params = load_params()
    documents, folder_report = {}, None
    if (args.raw / FOLDER).is_dir():
        options = DocumentOptions.from_params(get(params, "prepare.documents"))
        chunker = chunker_for_model(get(params, "model.base"), get(params, "model.max_seq_length"), options)
        documents, folder_report = read_documents(args.raw / FOLDER, chunker, options, args.documents_cache)
        log.info("documents folder: %d file(s) -> %d chunk(s); %d converted, %d from cache, %d skipped",
                 folder_report.files, folder_report.chunks, folder_report.converted, folder_report.from_cache,
                 len(folder_report.skipped))
    dataset, negatives, source_counts = read_sources(args.raw, ClickOptions.from_params(get(params, "prepare.clicks")),
                                                     documents)
    prepared, report = prepare_dataset(
        dataset,
        near_duplicate_threshold=get(params, "prepare.near_duplicate_threshold"),
        max_document_chars=get(params, "prepare.max_document_chars"),
        sample_queries=get(params, "data.sample_queries", 0) or 0,
        sample_documents=get(params, "data.sample_documents", 0) or 0,
        seed=get(params, "seed"),
    )
    negatives = remap_negatives(negatives, report, prepared)
    report.counts["synthetic_test_queries"] = 0
    if not has_judged_queries(prepared):
        if not get(params, "synthetic.enabled"):
            raise InputError("no query is judged relevant to any document (no qrels, pairs or clicks): add some, or "
                             "train and test on synthetic queries with synthetic.enabled=true (its figures are "
                             "then labelled synthetic and the model is not promoted)", path=args.raw)
        prepared = with_synthetic_test(prepared, generator_from_params(get(params, "synthetic"), get(params, "seed")),
                                       get(params, "synthetic.test_queries"), get(params, "seed"))
        report.counts["synthetic_test_queries"] = len(prepared.qrels["test"])
        log.warning("no judged queries: %d synthetic queries stand in for the test split; its figures say little "
                    "about real searches (judge queries on the judging page: docs/serving.md)",
                    report.counts["synthetic_test_queries"])
    report.counts["explicit_negatives"] = sum(len(d) for d in negatives.values())
    with atomic_directory(args.output) as staging:
        write_prepared(staging, prepared, report)
        write_negatives(staging / "negatives.tsv", negatives)
    write_json_atomic(args.metrics, {**report.counts, "sources": source_counts,
                                     **({"documents": folder_report.to_json()} if folder_report else {})})
    if cut := report.counts["documents_cut_to_max_chars"]:
        log.warning("%d document(s) longer than prepare.max_document_chars=%d characters were cut there", cut,
                    get(params, "prepare.max_document_chars"))
    log.info("prepared: %s", report.counts)


if __name__ == "__main__":
    run_stage(main)
