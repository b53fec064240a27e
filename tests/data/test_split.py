"""split: source split kept, own split by query, and no query or near-duplicate on both sides."""

from __future__ import annotations

import pytest

from embedtune.data.beir import Dataset, Document, Query
from embedtune.data.split import split_queries
from embedtune.errors import ConfigError, InputError

CLAIMS = [
    "Aspirin reduces the risk of myocardial infarction in adults",
    "Aspirin increases the risk of myocardial infarction in adults",  # near duplicate of the first
    "Statins lower LDL cholesterol in patients with diabetes",
    "Vitamin D supplementation prevents hip fractures in elderly women",
    "Exercise improves insulin sensitivity",
    "Smoking cessation reduces lung cancer incidence over ten years",
]


def _dataset(splits: dict[str, list[int]], n_docs: int = 6) -> Dataset:
    corpus = {f"d{i}": Document(f"d{i}", "", f"document number {i}") for i in range(n_docs)}
    queries = {f"q{i}": Query(f"q{i}", text) for i, text in enumerate(CLAIMS)}
    qrels = {name: {f"q{i}": {f"d{i}": 1} for i in ids} for name, ids in splits.items()}
    return Dataset(corpus=corpus, queries=queries, qrels=qrels)


def test_source_split_kept_and_leaking_train_queries_dropped() -> None:
    result = split_queries(_dataset({"train": [0, 2, 3, 4], "test": [1, 5]}), test_fraction=0.2, seed=0,
                           near_duplicate_threshold=0.7)
    assert set(result.test) == {"q1", "q5"}  # the source's test split is never changed
    assert set(result.train) == {"q2", "q3", "q4"}  # q0 near-duplicates test query q1
    assert result.stats["train_queries_dropped_for_leakage"] == 1
    assert result.stats["source_split"] is True


def test_an_empty_source_test_split_names_its_file() -> None:
    with pytest.raises(InputError, match=r"qrels/test.tsv: judges no query .* no test queries"):
        split_queries(_dataset({"train": [0, 2, 3, 4], "test": []}), test_fraction=0.2, seed=0,
                      near_duplicate_threshold=0.7)


def test_leakage_report_only() -> None:
    result = split_queries(_dataset({"train": [0, 2, 3, 4], "test": [1, 5]}), test_fraction=0.2, seed=0,
                           near_duplicate_threshold=0.7, leakage_policy="report")
    assert "q0" in result.train
    assert result.stats["train_queries_near_duplicate_of_test"] == 1


def test_own_split_by_query_keeps_near_duplicates_together() -> None:
    for seed in range(20):
        result = split_queries(_dataset({"train": list(range(6))}), test_fraction=0.34, seed=seed,
                               near_duplicate_threshold=0.7)
        assert not set(result.train) & set(result.test)
        assert {"q0", "q1"} <= set(result.train) or {"q0", "q1"} <= set(result.test)
        assert result.stats["low_train_pairs"] is True
    same = [split_queries(_dataset({"train": list(range(6))}), test_fraction=0.34, seed=3,
                          near_duplicate_threshold=0.7).test for _ in range(2)]
    assert same[0] == same[1]


def test_bad_split_params() -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        split_queries(_dataset({"train": [0, 1]}), test_fraction=1.5, seed=0, near_duplicate_threshold=0.7)
    with pytest.raises(ConfigError, match="leakage_policy"):
        split_queries(_dataset({"train": [0, 1]}), test_fraction=0.5, seed=0, near_duplicate_threshold=0.7,
                      leakage_policy="ignore")


def test_dev_split_is_carved_from_training_queries_only() -> None:
    for seed in range(20):
        result = split_queries(_dataset({"train": [0, 1, 2, 3, 4], "test": [5]}), test_fraction=0.2, seed=seed,
                               near_duplicate_threshold=0.7, leakage_policy="report", dev_fraction=0.4)
        assert set(result.test) == {"q5"}  # the test split is never touched
        assert result.dev and not set(result.dev) & set(result.train)
        assert set(result.dev) | set(result.train) == {"q0", "q1", "q2", "q3", "q4"}
        assert {"q0", "q1"} <= set(result.train) or {"q0", "q1"} <= set(result.dev)  # near-duplicates together
        assert result.stats["dev_queries"] == len(result.dev) and result.stats["train_queries"] == len(result.train)
    runs = [split_queries(_dataset({"train": [0, 2, 3, 4], "test": [5]}), test_fraction=0.2, seed=7,
                          near_duplicate_threshold=0.7, dev_fraction=0.25).dev for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 1
    none = split_queries(_dataset({"train": [0, 2, 3, 4], "test": [5]}), test_fraction=0.2, seed=7,
                         near_duplicate_threshold=0.7)
    assert none.dev == {} and none.stats["dev_queries"] == 0
    with pytest.raises(ConfigError, match="dev_fraction"):
        split_queries(_dataset({"train": [0, 1]}), test_fraction=0.5, seed=0, near_duplicate_threshold=0.7,
                      dev_fraction=1.0)
