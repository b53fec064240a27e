"""BEIR's metrics through pytrec_eval, per query, and the comparison of two systems query by query.

The metrics keep BEIR's names: ``ndcg@10``, ``recall@10``, ``recall@100``, ``mrr@10``, ``map@100``. Per-query
scores are kept so the fine-tuned model can be compared with the base model on the same queries, with a
paired significance test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from embedtune.data.beir import Qrels

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
Run = dict[str, dict[str, float]]


def _truncate(run: Run, k: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: kv[1], reverse=True)[:k]) for q, docs in run.items()}


def per_query_metrics(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """Metric values for every judged query (a query missing from the run scores 0)."""
    import pytrec_eval

    judged = {q: docs for q, docs in qrels.items() if any(s > 0 for s in docs.values())}
    full = {q: run.get(q, {}) for q in judged}
    # pytrec_eval needs at least one entry per query; an empty ranking scores 0 everywhere.
    padded = {q: (docs or {"__none__": 0.0}) for q, docs in full.items()}
    main = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.10", "recall.100", "map_cut.100"})
    rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"})
    scores = main.evaluate(padded)
    rr_scores = rr.evaluate(_truncate(padded, 10))
    out: dict[str, dict[str, float]] = {}
    for q in judged:
        s = scores.get(q, {})
        out[q] = {
            "ndcg@10": s.get("ndcg_cut_10", 0.0),
            "recall@10": s.get("recall_10", 0.0),
            "recall@100": s.get("recall_100", 0.0),
            "mrr@10": rr_scores.get(q, {}).get("recip_rank", 0.0),
            "map@100": s.get("map_cut_100", 0.0),
        }
    return out


def summarize(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over queries, rounded for stable diffs."""
    n = len(per_query)
    return {m: round(sum(v[m] for v in per_query.values()) / n, 5) if n else 0.0 for m in METRICS}


def compare(
    baseline: Mapping[str, Mapping[str, float]],
    finetuned: Mapping[str, Mapping[str, float]],
    *,
    primary: str = "ndcg@10",
    tie_tolerance: float = 1e-9,
) -> dict:
    """Absolute and relative deltas per metric, wins/losses on the primary metric and a paired test."""
    from scipy import stats

    queries = sorted(set(baseline) & set(finetuned))
    base_summary, fine_summary = summarize({q: baseline[q] for q in queries}), summarize({q: finetuned[q] for q in queries})
    deltas = {}
    for metric in METRICS:
        b, f = base_summary[metric], fine_summary[metric]
        deltas[metric] = {
            "baseline": b,
            "finetuned": f,
            "delta": round(f - b, 5),
            "relative_delta": round((f - b) / b, 5) if b else None,
        }
    diff = np.array([finetuned[q][primary] - baseline[q][primary] for q in queries])
    wins, losses = int((diff > tie_tolerance).sum()), int((diff < -tie_tolerance).sum())
    result = {
        "primary_metric": primary,
        "queries": len(queries),
        "metrics": deltas,
        "wins": wins,
        "losses": losses,
        "ties": len(queries) - wins - losses,
    }
    if len(queries) > 1 and np.any(diff != 0):
        t = stats.ttest_rel([finetuned[q][primary] for q in queries], [baseline[q][primary] for q in queries])
        w = stats.wilcoxon(diff[np.abs(diff) > tie_tolerance]) if wins + losses > 0 else None
        result["paired_t_test_p"] = _finite(t.pvalue)
        result["wilcoxon_p"] = _finite(w.pvalue) if w is not None else None
    else:
        result["paired_t_test_p"] = None
        result["wilcoxon_p"] = None
    return result


def _finite(value: float) -> float | None:
    """Three significant digits (a p-value of 3e-9 must not print as 0.0); None when undefined."""
    value = float(value)
    return float(f"{value:.3g}") if math.isfinite(value) else None


def dev_summary(
    baseline: Mapping[str, Mapping[str, float]],
    finetuned: Mapping[str, Mapping[str, float]],
) -> dict:
    """Base and fine-tuned means on the dev split (carved from the training queries) and their difference.

    This is what experiments are compared on: choosing a setting by its test score would tune on the test set.
    An empty dev split (``split.dev_fraction: 0``) gives ``{"queries": 0}``.
    """
    if not finetuned:
        return {"queries": 0}
    base, tuned = summarize(baseline), summarize(finetuned)
    return {"queries": len(finetuned), "base": base, "finetuned": tuned,
            "delta": {m: round(tuned[m] - base[m], 5) for m in METRICS}}
