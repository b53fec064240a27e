"""Human-facing evaluation reports: per-query tables, wins/losses, and a picture of the comparison."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from embedtune.data.beir import Query
from embedtune.evaluation.metrics import METRICS

PerQuery = Mapping[str, Mapping[str, float]]


def write_per_query(path: Path, per_query: PerQuery, queries: Mapping[str, Query]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["query_id", *METRICS, "query"])
        for qid in sorted(per_query):
            writer.writerow([qid, *(f"{per_query[qid][m]:.5f}" for m in METRICS), queries[qid].text if qid in queries else ""])


def read_per_query(path: Path) -> dict[str, dict[str, float]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["query_id"]: {m: float(row[m]) for m in METRICS} for row in csv.DictReader(handle)}


def comparison_rows(baseline: PerQuery, finetuned: PerQuery, queries: Mapping[str, Query], metric: str) -> list[dict]:
    """One row per query, sorted from biggest loss to biggest win on ``metric``."""
    rows = []
    for qid in sorted(set(baseline) & set(finetuned)):
        b, f = baseline[qid][metric], finetuned[qid][metric]
        rows.append({"query_id": qid, "baseline": round(b, 5), "finetuned": round(f, 5), "delta": round(f - b, 5),
                     "query": queries[qid].text if qid in queries else ""})
    rows.sort(key=lambda r: (r["delta"], r["query_id"]))
    return rows


def write_comparison_csv(path: Path, rows: list[dict], metric: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["query_id", "metric", "baseline", "finetuned", "delta", "query"])
        for r in rows:
            writer.writerow([r["query_id"], metric, f"{r['baseline']:.5f}", f"{r['finetuned']:.5f}", f"{r['delta']:.5f}", r["query"]])


def write_wins_losses(path: Path, comparison: Mapping, rows: list[dict], top: int = 15) -> None:
    metric = comparison["primary_metric"]
    lines = [
        f"# Fine-tuned vs base model, per query ({metric})",
        "",
        (f"{comparison['queries']} test queries: **{comparison['wins']} better**, **{comparison['losses']} worse**, "
         f"{comparison['ties']} unchanged. Paired t-test p = {comparison.get('paired_t_test_p')}, "
         f"Wilcoxon p = {comparison.get('wilcoxon_p')}."),
        "",
        "| metric | baseline | fine-tuned | delta | relative |",
        "|---|---|---|---|---|",
    ]
    for m, d in comparison["metrics"].items():
        rel = f"{d['relative_delta']:+.1%}" if d["relative_delta"] is not None else "n/a"
        lines.append(f"| {m} | {d['baseline']:.4f} | {d['finetuned']:.4f} | {d['delta']:+.4f} | {rel} |")
    for title, chosen in (("Biggest wins", [r for r in reversed(rows) if r["delta"] > 0][:top]),
                          ("Biggest losses", [r for r in rows if r["delta"] < 0][:top])):
        lines += ["", f"## {title}", "", "| query id | baseline | fine-tuned | delta | query |", "|---|---|---|---|---|"]
        for r in chosen:
            text = r["query"].replace("|", "\\|")
            lines.append(f"| {r['query_id']} | {r['baseline']:.3f} | {r['finetuned']:.3f} | {r['delta']:+.3f} | {text} |")
        if not chosen:
            lines.append("| (none) | | | | |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_comparison(path: Path, comparison: Mapping, rows: list[dict]) -> None:
    """Left: each metric, base vs fine-tuned. Right: per-query change on the primary metric, sorted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(comparison["metrics"])
    base = [comparison["metrics"][m]["baseline"] for m in metrics]
    fine = [comparison["metrics"][m]["finetuned"] for m in metrics]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    x = range(len(metrics))
    left.bar([i - 0.2 for i in x], base, width=0.4, label="base model", color="#9aa5b1")
    left.bar([i + 0.2 for i in x], fine, width=0.4, label="fine-tuned", color="#2f6fdf")
    for i, (b, f) in enumerate(zip(base, fine)):
        left.text(i + 0.2, f + 0.01, f"{f - b:+.3f}", ha="center", fontsize=8)
    left.set_xticks(list(x), metrics, rotation=20)
    left.set_ylim(0, 1.05)
    left.set_title("Test-split retrieval quality")
    left.legend(loc="lower right")
    deltas = [r["delta"] for r in rows]
    colors = ["#c0392b" if d < 0 else "#27ae60" if d > 0 else "#9aa5b1" for d in deltas]
    right.bar(range(len(deltas)), deltas, color=colors, width=1.0)
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xlabel("test queries, sorted by change")
    right.set_ylabel(f"Δ {comparison['primary_metric']}")
    right.set_title(f"Per query: {comparison['wins']} better, {comparison['losses']} worse, {comparison['ties']} same")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
