"""mine: rank window, judged documents never negatives, false-negative margin."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.errors import ConfigError
from embedtune.mining import mine_hard_negatives


def _unit(angle_deg: float) -> list[float]:
    a = np.deg2rad(angle_deg)
    return [float(np.cos(a)), float(np.sin(a))]


# One query along the x axis; documents at growing angles, so their rank equals their index.
CORPUS_IDS = [f"d{i}" for i in range(8)]
CORPUS = np.array([_unit(a) for a in (0, 5, 10, 20, 30, 40, 50, 60)], dtype=np.float32)
QUERY = np.array([_unit(0)], dtype=np.float32)


def test_positives_and_judged_docs_are_never_negatives() -> None:
    qrels = {"q": {"d3": 1, "d0": 0}}  # d0 judged non-relevant still cannot be mined (it was judged)
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=2, range_min=0,
                                          range_max=8, relative_margin=None)
    assert examples[0].negative_ids == ("d1", "d2")
    assert stats["pairs"] == 1 and stats["negatives_selected"] == 2


def test_range_window_and_margin() -> None:
    qrels = {"q": {"d2": 1}}  # positive score cos(10°) = 0.985
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=2, range_min=1,
                                          range_max=6, relative_margin=0.05)
    # ranking without d2: d0, d1, d3, d4, d5, d6 ... window [1, 6) -> d1, d3, d4, d5, d6
    # margin: keep score <= 0.985 * 0.95 = 0.936 -> d1 (0.996) and d3 (0.940) dropped
    assert examples[0].negative_ids == ("d4", "d5")
    assert stats["candidates_dropped_margin"] == 2
    assert all(s <= examples[0].positive_score * 0.95 for s in examples[0].negative_scores)


def test_short_of_negatives_repeats_and_counts() -> None:
    qrels = {"q": {"d0": 1}}
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=3, range_min=5,
                                          range_max=7, relative_margin=None)
    assert len(examples[0].negative_ids) == 3
    assert stats["pairs_short_of_negatives"] == 1


def test_bad_params() -> None:
    with pytest.raises(ConfigError):
        mine_hard_negatives({}, [], QUERY[:0], CORPUS_IDS, CORPUS, range_min=10, range_max=5)
    with pytest.raises(ConfigError):
        mine_hard_negatives({}, [], QUERY[:0], CORPUS_IDS, CORPUS, sampling="best")
    with pytest.raises(ConfigError, match="mine.num_negatives"):
        mine_hard_negatives({}, [], QUERY[:0], CORPUS_IDS, CORPUS, num_negatives=-1)


def test_window_extends_when_positive_ranks_low() -> None:
    qrels = {"q": {"d6": 1}}  # positive at 50°: every candidate in the window scores above it
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=1, range_min=0,
                                          range_max=3, relative_margin=0.05)
    assert examples[0].negative_ids == ("d7",)
    assert stats["pairs_window_extended"] == 1 and stats["pairs_skipped_no_negative"] == 0
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=1, range_min=0,
                                          range_max=3, relative_margin=0.05, extend_window=False)
    assert examples == [] and stats["pairs_skipped_no_negative"] == 1


def test_zero_negatives_keeps_every_pair_without_negatives() -> None:
    """num_negatives=0 trains on (query, positive) pairs: no pair is dropped for lack of a safe negative."""
    from embedtune.data.beir import Document, Query
    from embedtune.train.trainer import build_training_dataset

    qrels = {"q": {"d6": 1, "d0": 1}}  # d6 ranks low: with negatives and no window extension it would be dropped
    examples, stats = mine_hard_negatives(qrels, ["q"], QUERY, CORPUS_IDS, CORPUS, num_negatives=0,
                                          extend_window=False)
    assert [(e.positive_id, e.negative_ids) for e in examples] == [("d0", ()), ("d6", ())]
    assert stats["pairs"] == 2 and stats["negatives_selected"] == 0 and stats["pairs_skipped_no_negative"] == 0
    corpus = {d: Document(id=d, title="", text=f"text {d}") for d in CORPUS_IDS}
    dataset = build_training_dataset(examples, corpus, {"q": Query(id="q", text="query")})
    assert dataset.column_names == ["anchor", "positive"]
















def test_mining_options_name_a_missing_parameter() -> None:
    from embedtune.mining import mining_options

    with pytest.raises(ConfigError, match="mine.range_max"):
        mining_options({"num_negatives": 1, "range_min": 5}, seed=1)
