"""The promotion gate: a fine-tuned model serves only when it measurably beats the base model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    delta: float | None
    p_value: float | None


# what a team can do when its model does not clear the gate (the low-data regime is the usual cause)
ADVICE = ("to gain more: add training pairs or judged queries (qrels/train.tsv), turn on synthetic queries for the "
          "unjudged documents (synthetic.enabled=true), or serve it anyway with reindex.force=true")
# what a team starting from documents alone does next: a test split judged by people
SYNTHETIC_TEST_ADVICE = ("judge a hundred queries on the judging page (embedtune serve with EMBEDTUNE_JUDGE_TOKEN, "
                         "/judge; docs/serving.md), put `embedtune judge export` beside the corpus and rerun, or serve "
                         "it anyway with reindex.force=true")


def decide(comparison: Mapping[str, Any], *, min_improvement: float, max_p_value: float | None = None,
           force: bool = False) -> GateDecision:
    """Promote when the primary metric improves by at least ``min_improvement`` (absolute) and, if
    ``max_p_value`` is set, the paired t-test over per-query scores is significant at that level.

    Both by default: on a domain with a few hundred training pairs a fine-tuned model can gain +0.0075 ndcg@10
    at p = 0.74, a draw that another seed reverses, and serving it would be a change no one can defend. The
    t-test rather than a bootstrap interval: it is deterministic (no resampling seed), it is the test the
    comparison already reports, and over a hundred or more queries the mean of per-query differences is close to
    normal. A refusal says what to try (``ADVICE``).

    A comparison on synthetic test queries (``test_source: synthetic``: the dataset had no judged query) never
    promotes without ``force``: a model trained on queries generated the way its test queries were is scored on
    its own kind of data, and the figure says little about real searches."""
    primary = comparison["primary_metric"]
    delta = comparison["metrics"][primary]["delta"]
    p_value = comparison.get("paired_t_test_p")
    detail = f"{primary} {comparison['metrics'][primary]['baseline']:.4f} -> {comparison['metrics'][primary]['finetuned']:.4f} " \
             f"(delta {delta:+.4f}, paired t-test p={p_value})"
    if force:
        return GateDecision(True, f"forced (reindex.force): {detail}", delta, p_value)
    if comparison.get("test_source") == "synthetic":
        return GateDecision(False, f"not promoted: {detail} was measured on synthetic test queries only (no query "
                            f"was judged by a person); {SYNTHETIC_TEST_ADVICE}", delta, p_value)
    if delta < min_improvement:
        return GateDecision(False, f"not promoted: {detail} is below the required +{min_improvement:.4f}; {ADVICE}",
                            delta, p_value)
    if max_p_value is not None and (p_value is None or p_value > max_p_value):
        return GateDecision(False, f"not promoted: {detail} is not significant at p <= {max_p_value}; {ADVICE}",
                            delta, p_value)
    return GateDecision(True, f"promoted: {detail}", delta, p_value)


def publish(conn: Any, version: str, decision: GateDecision, *, keep_last: int) -> None:
    """Serve ``version`` if the gate said so (else keep serving what serves), then prune old versions."""
    from embedtune.serving.versions import promote, prune, serving_version

    if decision.promote:
        previous = promote(conn, version, decision.reason)
        log.info("serving %s (was %s): %s", version, previous, decision.reason)
    else:
        log.warning("%s; serving index unchanged (%s)", decision.reason, serving_version(conn))
    dropped = prune(conn, keep_last)
    if dropped:
        log.info("pruned old versions: %s", ", ".join(dropped))
