"""The learning curve: test quality against the number of training pairs, to say whether more labels are worth it.

The same training recipe runs on nested random shares of the training queries (a draw's 25% is inside its 50%, so
the curve's steps are the labels added, not another sample), each share drawn more than once; the full data's
point is the pipeline's own model, and zero pairs is the base model. The spread of a point is shown two ways: the
draws themselves (what another set of labels of that size would have given) and a bootstrap interval over the test
queries (how far the test split itself can be trusted). The slope per doubling of pairs, fitted over every draw,
is the figure a team asks for: what the next batch of labels should buy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedtune.errors import ConfigError
from embedtune.mining import MinedExample

METRIC = "ndcg@10"
BOOTSTRAP_SAMPLES = 2000


def subsample(examples: Sequence[MinedExample], fraction: float, *, draw: int, seed: int) -> list[MinedExample]:
    """The examples of a random ``fraction`` of the distinct training queries (all of a query's examples together),
    at least one query. The queries come from one seeded order per (``seed``, ``draw``), so a draw's smaller share
    is inside its larger one."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"learning_curve.fractions must lie in (0, 1], got {fraction!r}")
    queries = sorted({e.query_id for e in examples})
    random.Random(f"learning-curve:{seed}:{draw}").shuffle(queries)
    kept = set(queries[:max(1, math.ceil(fraction * len(queries)))])
    return [e for e in examples if e.query_id in kept]


def bootstrap_interval(values: Sequence[float], *, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` (per-query scores), resampling the queries."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(BOOTSTRAP_SAMPLES, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def summarize_curve(points: Sequence[Mapping[str, Any]], *, base: Mapping[str, float],
                    full: Mapping[str, Any]) -> dict[str, Any]:
    """The curve from its points (``pairs``, ``fraction``, ``draw``, ``per_query``: query id -> score), the base
    model's per-query scores (zero pairs) and the full data's point (the pipeline's model). Each row: the pairs,
    every draw's score, their mean and range, and a bootstrap interval of the mean over the test queries; plus the
    gain per doubling of pairs (least squares of score on log2 pairs over every trained draw)."""
    rows = [_row(0.0, [{"pairs": 0, "per_query": base}])]
    for fraction in sorted({float(p["fraction"]) for p in points} | {1.0}):
        draws = [p for p in points if float(p["fraction"]) == fraction] + ([full] if fraction == 1.0 else [])
        if draws:
            rows.append(_row(fraction, draws))
    trained = [(d["pairs"], d[METRIC]) for row in rows[1:] for d in row["draws"]]
    slope = None
    if len({pairs for pairs, _ in trained}) >= 2:
        x = np.log2([pairs for pairs, _ in trained])
        slope = round(float(np.polyfit(x, [score for _, score in trained], 1)[0]), 4)
    return {"metric": METRIC, "rows": rows, "gain_per_doubling": slope}


def _row(fraction: float, draws: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    scores = [float(np.mean(list(d["per_query"].values()))) for d in draws]
    queries = sorted(set.intersection(*(set(d["per_query"]) for d in draws)))
    mean_per_query = [float(np.mean([d["per_query"][q] for d in draws])) for q in queries]
    low, high = bootstrap_interval(mean_per_query)
    return {"fraction": fraction, "pairs": round(float(np.mean([d["pairs"] for d in draws]))),
            METRIC: round(float(np.mean(scores)), 4), "min": round(min(scores), 4), "max": round(max(scores), 4),
            "ci95": [round(low, 4), round(high, 4)],
            "draws": [{"draw": d.get("draw", 0), "pairs": d["pairs"], METRIC: round(s, 4)}
                      for d, s in zip(draws, scores)]}


def plot_curve(path: Path, curve: Mapping[str, Any], *, title: str) -> None:
    """``ndcg@10`` against training pairs: each draw as a dot, the mean as a line, the bootstrap interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = curve["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pairs = [r["pairs"] for r in rows]
    ax.fill_between(pairs, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows], alpha=0.2,
                    label="95% bootstrap interval (test queries)")
    ax.plot(pairs, [r[METRIC] for r in rows], marker="o", label="mean of the draws")
    for r in rows:
        ax.scatter([d["pairs"] for d in r["draws"]], [d[METRIC] for d in r["draws"]], color="black", s=10, zorder=3)
    ax.set_xlabel("training pairs (0: the base model)")
    ax.set_ylabel(f"test {METRIC}")
    slope = curve.get("gain_per_doubling")
    ax.set_title(title + (f"\n{slope:+.4f} {METRIC} per doubling of pairs" if slope is not None else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
