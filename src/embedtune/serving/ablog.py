"""Reading the A/B logs back: an experiment's report (per arm, interleaving, verdict) and its clicks as a click log.

The logs are the service's append-only impressions and clicks (schema.sql); the statistics are in ``abtest``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedtune.serving import abtest
from embedtune.serving.service import NotFound


def _impressions(conn, experiment: str) -> Iterator[tuple]:
    yield from conn.execute(
        "SELECT i.id, i.at, i.user_id, i.query, i.mode, i.arm, i.results, "
        "coalesce(array_agg(c.doc_id ORDER BY c.at) FILTER (WHERE c.doc_id IS NOT NULL), '{}') "
        "FROM embedtune_impressions i LEFT JOIN embedtune_clicks c ON c.impression_id = i.id "
        "WHERE i.experiment = %s GROUP BY i.id ORDER BY i.at", (experiment,))


def report(conn, experiment: str) -> dict:
    """The A/B report of an experiment: the arms' index versions (``versions``), per arm metrics (``control``,
    ``treatment``: bucket mode), the interleaving outcome (interleave mode), a verdict."""
    row = conn.execute("SELECT mode, control, treatment, treatment_share, started_at, lexical_weight "
                       "FROM embedtune_experiments WHERE name = %s", (experiment,)).fetchone()
    if row is None:
        raise NotFound(f"unknown experiment {experiment!r}")
    mode, control, treatment, share, started, lexical_weight = row
    out: dict[str, Any] = {"experiment": experiment, "mode": mode,
                           "versions": {"control": control, "treatment": treatment}, "treatment_share": share, "started_at": started.isoformat(), "lexical_weight": lexical_weight}
    outcomes, per_arm = [], {"control": [], "treatment": []}
    for _, _, _, _, imp_mode, arm, results, clicked in _impressions(conn, experiment):
        clicked = set(clicked)
        if imp_mode == "interleave":
            slots = [abtest.Slot(r["doc_id"], r["arm"]) for r in results]
            outcomes.append(abtest.interleaving_outcome(slots, clicked) if clicked else "no click")
            for name, ranks in per_arm.items():
                ranks.append([r["rank"] for r in results if r["doc_id"] in clicked and r["arm"] == name])
        else:
            per_arm[arm or "control"].append([r["rank"] for r in results if r["doc_id"] in clicked])
    if mode == "interleave":
        decided = [o for o in outcomes if o != "no click"]
        out["interleaving"] = abtest.interleaving_report(decided)
        out["interleaving"]["searches_without_click"] = len(outcomes) - len(decided)
        out["impressions"] = len(outcomes)
        out["verdict"] = out["interleaving"]["verdict"]
    else:
        out.update(abtest.bucket_report(per_arm["control"], per_arm["treatment"]))
        out["impressions"] = len(per_arm["control"]) + len(per_arm["treatment"])
    return out


def export_clicks(conn, experiment: str, path: Path) -> int:
    """Write the experiment's searches in the click-log format (:mod:`embedtune.data.sources`) for retraining."""
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _, at, user, query, _, _, results, clicked in _impressions(conn, experiment):
            shown = [r["doc_id"] for r in sorted(results, key=lambda r: r["rank"])]
            handle.write(json.dumps({"query": query, "shown": shown, "clicked": [d for d in dict.fromkeys(clicked)],
                                     "timestamp": at.isoformat(), "session": user}) + "\n")
            n += 1
    return n


