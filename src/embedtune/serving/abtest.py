"""A/B testing two index versions: assignment, team-draft interleaving, and the statistics of the report.

Two designs:

* **bucket** — each user is assigned to control or treatment by a stable hash of the user id (a user always
  sees the same arm), with a configurable treatment share. Compared per arm: CTR, mean reciprocal rank of
  clicks, abandonment (searches with no click).
* **interleave** — team-draft interleaving (Radlinski, Kurup & Joachims, 2008): both rankings are merged into
  one list, each result credited to the arm that contributed it; the arm whose results get more clicks in a
  search wins it. Far more sensitive than bucket tests (each search compares both arms for the same user and
  query), so a verdict needs fewer searches.

Confidence intervals are percentile bootstraps over searches; the verdict says which arm is better when the
interval excludes "no difference", else how many searches are still needed (from the observed variance).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONTROL, TREATMENT = "control", "treatment"


def bucket(user_id: str, experiment: str, treatment_share: float) -> str:
    """Stable arm for a user: the same user, experiment and share always give the same arm."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return TREATMENT if position < treatment_share else CONTROL


@dataclass(frozen=True)
class Slot:
    doc_id: str
    arm: str  # which arm's ranking contributed this result


def team_draft_interleave(control: Sequence[str], treatment: Sequence[str], k: int, rng: random.Random) -> list[Slot]:
    """Team-draft interleaving of two rankings into ``k`` results without duplicates.

    In each round a coin decides which arm picks first; each arm then adds its highest-ranked document not
    yet in the list. A document is credited to the arm that added it.
    """
    out: list[Slot] = []
    used: set[str] = set()
    lists = {CONTROL: list(control), TREATMENT: list(treatment)}
    pointers = {CONTROL: 0, TREATMENT: 0}

    def take(arm: str) -> bool:
        ranking = lists[arm]
        while pointers[arm] < len(ranking) and ranking[pointers[arm]] in used:
            pointers[arm] += 1
        if pointers[arm] >= len(ranking):
            return False
        doc = ranking[pointers[arm]]
        used.add(doc)
        out.append(Slot(doc, arm))
        return True

    while len(out) < k:
        order = [CONTROL, TREATMENT] if rng.random() < 0.5 else [TREATMENT, CONTROL]
        progressed = False
        for arm in order:
            if len(out) < k and take(arm):
                progressed = True
        if not progressed:
            break
    return out


def interleaving_outcome(slots: Sequence[Slot], clicked: set[str]) -> str:
    """Winner of one interleaved search: the arm with more clicked results ('tie' when equal)."""
    c = sum(1 for s in slots if s.doc_id in clicked and s.arm == CONTROL)
    t = sum(1 for s in slots if s.doc_id in clicked and s.arm == TREATMENT)
    return TREATMENT if t > c else CONTROL if c > t else "tie"


def bootstrap_ci(values: np.ndarray, statistic, n: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    if len(values) == 0:
        return (math.nan, math.nan)
    stats = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(n)]
    return float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2))


def needed_sample(effect: float, std: float, alpha_z: float = 1.96, power_z: float = 0.84) -> int | None:
    """Searches needed to detect ``effect`` with the observed per-search ``std`` (two-sided 5%, 80% power)."""
    if not effect or not math.isfinite(effect) or not math.isfinite(std) or std == 0:
        return None
    return math.ceil(((alpha_z + power_z) * std / abs(effect)) ** 2)


def interleaving_report(outcomes: Sequence[str], seed: int = 0) -> dict:
    """Wins/ties/losses of the treatment, its preference share and a bootstrap CI of the share."""
    wins = sum(o == TREATMENT for o in outcomes)
    losses = sum(o == CONTROL for o in outcomes)
    ties = len(outcomes) - wins - losses
    # per search: +1 treatment win, -1 loss, 0 tie; preference = wins / (wins + losses)
    scores = np.array([1.0 if o == TREATMENT else -1.0 if o == CONTROL else 0.0 for o in outcomes])
    decided = scores[scores != 0]
    share = wins / (wins + losses) if wins + losses else math.nan
    low, high = bootstrap_ci(decided, lambda v: float(np.mean(v > 0)), seed=seed) if len(decided) else (math.nan, math.nan)
    if len(decided) and low > 0.5:
        verdict = "treatment better"
    elif len(decided) and high < 0.5:
        verdict = "treatment worse"
    else:
        verdict = "not yet significant"
    report = {"searches": len(outcomes), "treatment_wins": wins, "treatment_losses": losses, "ties": ties,
              "preference_share": _round(share), "preference_ci95": [_round(low), _round(high)], "verdict": verdict}
    if verdict == "not yet significant":
        need = needed_sample(float(np.mean(scores)) if len(scores) else 0.0, float(np.std(scores)) if len(scores) else 0.0)
        report["searches_needed_estimate"] = need
    return report


def arm_metrics(clicks_per_search: Sequence[Sequence[int]]) -> dict:
    """Per arm: searches, CTR (searches with a click), MRR of the first click, abandonment; bootstrap CIs."""
    n = len(clicks_per_search)
    clicked = np.array([1.0 if ranks else 0.0 for ranks in clicks_per_search])
    rr = np.array([1.0 / min(ranks) if ranks else 0.0 for ranks in clicks_per_search])
    return {
        "searches": n,
        "ctr": _round(float(clicked.mean())) if n else None,
        "ctr_ci95": [_round(x) for x in bootstrap_ci(clicked, np.mean)] if n else None,
        "mrr": _round(float(rr.mean())) if n else None,
        "mrr_ci95": [_round(x) for x in bootstrap_ci(rr, np.mean)] if n else None,
        "abandonment": _round(1.0 - float(clicked.mean())) if n else None,
    }


def bucket_report(control: Sequence[Sequence[int]], treatment: Sequence[Sequence[int]], seed: int = 0) -> dict:
    """Compare arms on MRR of clicks: difference with a bootstrap CI, verdict, searches still needed."""
    c_rr = np.array([1.0 / min(r) if r else 0.0 for r in control])
    t_rr = np.array([1.0 / min(r) if r else 0.0 for r in treatment])
    report = {CONTROL: arm_metrics(control), TREATMENT: arm_metrics(treatment)}
    if len(c_rr) and len(t_rr):
        rng = np.random.default_rng(seed)
        diffs = [t_rr[rng.integers(0, len(t_rr), len(t_rr))].mean() - c_rr[rng.integers(0, len(c_rr), len(c_rr))].mean()
                 for _ in range(2000)]
        low, high = float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))
        diff = float(t_rr.mean() - c_rr.mean())
        verdict = "treatment better" if low > 0 else "treatment worse" if high < 0 else "not yet significant"
        report["mrr_difference"] = _round(diff)
        report["mrr_difference_ci95"] = [_round(low), _round(high)]
        report["verdict"] = verdict
        if verdict == "not yet significant":
            std = float(np.sqrt(c_rr.var() + t_rr.var()))
            need = needed_sample(diff, std)
            report["searches_needed_per_arm_estimate"] = need
    else:
        report["verdict"] = "not yet significant"
    return report


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)
