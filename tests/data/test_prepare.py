"""prepare: normalisation, empty documents, exact and near-duplicate merging with qrels moved to the kept id."""

from __future__ import annotations

from pathlib import Path

from embedtune.data.beir import read_dataset
from embedtune.data.dedup import near_duplicate_pairs, normalize_text
from embedtune.data.prepare import prepare_dataset, sample_dataset
from tests.conftest import write_beir

LONG = ("Regular aerobic exercise improves insulin sensitivity and glucose control in adults with type 2 diabetes "
        "according to a randomised trial of twelve weeks with three sessions per week and supervised training")


def test_normalize_text() -> None:
    assert normalize_text("  ﬁne\u00a0tuning\u200b is\n\tgood ") == "fine tuning is good"
    assert normalize_text("Ａｌｐｈａ") == "Alpha"


def test_near_duplicate_pairs_are_exact_above_threshold() -> None:
    texts = [LONG, LONG.replace("twelve", "ten"), "something else entirely about cells and proteins"]
    pairs = near_duplicate_pairs(texts, 0.8, 3)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert all(s >= 0.8 for *_, s in pairs)
    assert near_duplicate_pairs(texts, 0.99, 3) == []


def test_prepare_merges_duplicates_and_moves_qrels(tmp_path: Path) -> None:
    corpus = [
        {"_id": "a", "title": "", "text": LONG},
        {"_id": "b", "title": "", "text": "  " + LONG.upper() + "  "},  # exact duplicate after case/space folding
        {"_id": "c", "title": "", "text": LONG.replace("twelve", "ten")},  # near duplicate
        {"_id": "d", "title": "", "text": "   "},  # empty
        {"_id": "e", "title": "Other", "text": "An unrelated abstract about protein folding in yeast cells."},
    ]
    queries = [
        {"_id": "q1", "text": "exercise and insulin"},
        {"_id": "q2", "text": "Exercise  and INSULIN"},  # exact duplicate query
        {"_id": "q3", "text": "protein folding"},
    ]
    root = write_beir(tmp_path / "raw", corpus, queries,
                      {"train": [("q1", "b", 1), ("q2", "c", 2), ("q3", "e", 1), ("q3", "d", 1)], "test": [("q3", "e", 1)]})
    prepared, report = prepare_dataset(read_dataset(root), near_duplicate_threshold=0.8)
    assert set(prepared.corpus) == {"a", "e"}
    assert set(prepared.queries) == {"q1", "q3"}
    assert prepared.qrels["train"] == {"q1": {"a": 2}, "q3": {"e": 1}}
    counts = report.counts
    assert counts["documents_dropped_empty"] == 1
    assert counts["documents_merged_exact"] == 1
    assert counts["documents_merged_near_duplicate"] == 1
    assert counts["queries_merged_exact"] == 1
    assert counts["documents_out"] == 2
    kinds = {(kind, removed, kept) for kind, removed, kept, _ in report.merges}
    assert {("document", "b", "a"), ("document", "c", "a"), ("document", "d", ""), ("query", "q2", "q1")} <= kinds


def test_exact_only_when_threshold_is_null(tmp_path: Path) -> None:
    corpus = [{"_id": "a", "text": LONG}, {"_id": "c", "text": LONG.replace("twelve", "ten")}]
    root = write_beir(tmp_path / "raw", corpus, [{"_id": "q", "text": "x"}], {"train": [("q", "a", 1)]})
    prepared, report = prepare_dataset(read_dataset(root), near_duplicate_threshold=None)
    assert set(prepared.corpus) == {"a", "c"}
    assert report.counts["documents_merged_near_duplicate"] == 0


def test_sample_keeps_positives_and_is_seeded(small_beir: Path) -> None:
    ds = read_dataset(small_beir)
    one = sample_dataset(ds, n_queries=2, n_documents=3, seed=1)
    two = sample_dataset(ds, n_queries=2, n_documents=3, seed=1)
    assert one.qrels == two.qrels and set(one.corpus) == set(two.corpus)
    for qrels in one.qrels.values():
        for docs in qrels.values():
            assert set(docs) <= set(one.corpus)
    assert len(one.corpus) == 3
