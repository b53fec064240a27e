"""The learning curve's parts: nested shares of the training queries, the spread of a point, the slope."""

from __future__ import annotations

import math

import pytest

from embedtune.errors import ConfigError
from embedtune.learning_curve import bootstrap_interval, plot_curve, subsample, summarize_curve
from embedtune.mining import MinedExample


def _examples(queries: int, per_query: int = 2) -> list[MinedExample]:
    return [MinedExample(f"q{q}", f"d{q}-{k}", ("n",), 0.5, (0.4,)) for q in range(queries) for k in range(per_query)]


def test_a_share_keeps_whole_queries_and_a_draws_smaller_share_is_inside_its_larger_one() -> None:
    examples = _examples(40)
    quarter = subsample(examples, 0.25, draw=1, seed=42)
    half = subsample(examples, 0.5, draw=1, seed=42)
    assert len({e.query_id for e in quarter}) == 10 and len(quarter) == 20  # both pairs of each query kept
    assert {e.query_id for e in quarter} <= {e.query_id for e in half}
    assert {e.query_id for e in subsample(examples, 0.25, draw=2, seed=42)} != {e.query_id for e in quarter}
    assert subsample(examples, 0.25, draw=1, seed=42) == quarter  # seeded
    assert subsample(examples, 1.0, draw=3, seed=42) == examples
    assert len({e.query_id for e in subsample(_examples(3), 0.01, draw=1, seed=1)}) == 1  # at least one query
    with pytest.raises(ConfigError, match="learning_curve.fractions"):
        subsample(examples, 0.0, draw=1, seed=42)


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_queries() -> None:
    few = [0.0, 1.0] * 10
    many = [0.0, 1.0] * 500
    low, high = bootstrap_interval(few)
    assert low < 0.5 < high
    assert (bootstrap_interval(many)[1] - bootstrap_interval(many)[0]) < (high - low)
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_the_curve_has_the_base_model_every_share_and_the_full_model_and_a_slope_per_doubling(tmp_path) -> None:
    queries = [f"t{i}" for i in range(30)]

    def scores(value: float) -> dict[str, float]:
        return {q: value + (0.1 if i % 2 else -0.1) for i, q in enumerate(queries)}

    points = [{"fraction": 0.25, "draw": 1, "pairs": 100, "per_query": scores(0.50)},
              {"fraction": 0.25, "draw": 2, "pairs": 100, "per_query": scores(0.52)},
              {"fraction": 0.5, "draw": 1, "pairs": 200, "per_query": scores(0.56)},
              {"fraction": 0.5, "draw": 2, "pairs": 200, "per_query": scores(0.58)}]
    curve = summarize_curve(points, base=scores(0.45), full={"draw": 0, "pairs": 400, "per_query": scores(0.63)})
    rows = curve["rows"]
    assert [r["pairs"] for r in rows] == [0, 100, 200, 400]
    assert [r["ndcg@10"] for r in rows] == [0.45, 0.51, 0.57, 0.63]
    assert (rows[1]["min"], rows[1]["max"]) == (0.5, 0.52) and len(rows[1]["draws"]) == 2
    assert rows[1]["ci95"][0] < 0.51 < rows[1]["ci95"][1]
    assert curve["gain_per_doubling"] == pytest.approx(0.06, abs=1e-3)  # +0.06 from 100 to 200 to 400 pairs
    plot_curve(tmp_path / "curve.png", curve, title="test")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
