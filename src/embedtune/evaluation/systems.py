"""Every search system on one test split, side by side: BM25 alone, the base model, the fine-tuned model, hybrid
search with each, and further general-purpose models scored as they come (``evaluate.general_models``).

The table answers the question a team asks before adopting a fine-tuned small model: does it beat a general model
several times its size on *our* queries? Every row is read the same way (the same test split, documents longer
than the window scored by their better view), so the rows compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("ndcg@10", "recall@10", "mrr@10")


def system_rows(baseline: Mapping[str, Any], finetuned: Mapping[str, Any], hybrid: Mapping[str, Any],
                general: Mapping[str, Mapping[str, Any]], *, base_name: str) -> list[dict[str, Any]]:
    """The rows of the table, from the stages' metrics files (``metrics/baseline.json``, ``finetuned.json``,
    ``hybrid.json``) and the general models' figures (name -> metrics with ``parameters``)."""
    test = hybrid.get("test", {})
    weight = hybrid.get("lexical_weight")
    rows = [{"system": "BM25 alone", "kind": "lexical", **test.get("bm25", {})},
            {"system": f"{base_name}, not fine-tuned", "kind": "base", **baseline},
            *({"system": f"{name}, not fine-tuned", "kind": "general", **figures} for name, figures in general.items()),
            {"system": f"{base_name}, fine-tuned", "kind": "fine-tuned", **finetuned}]
    if weight:
        rows += [{"system": f"base + {weight} x BM25", "kind": "hybrid", **test.get("base+bm25", {})},
                 {"system": f"fine-tuned + {weight} x BM25 (served)", "kind": "hybrid",
                  **test.get("finetuned+bm25", {})}]
    return [row for row in rows if all(c in row for c in COLUMNS)]


def write_systems_table(path: Path, rows: Sequence[Mapping[str, Any]], *, queries: int) -> None:
    """The rows as a markdown table, best ``ndcg@10`` first, with model sizes where known."""
    lines = [f"# Every system on the test split ({queries} queries)", "",
             "| system | " + " | ".join(f"`{c}`" for c in COLUMNS) + " | parameters |",
             "|---|" + "---|" * (len(COLUMNS) + 1)]
    for row in sorted(rows, key=lambda r: -r["ndcg@10"]):
        size = f"{row['parameters'] / 1e6:.0f}M" if row.get("parameters") else ""
        lines.append(f"| {row['system']} | " + " | ".join(f"{row[c]:.4f}" for c in COLUMNS) + f" | {size} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_systems(path: Path, rows: Sequence[Mapping[str, Any]], *, title: str) -> None:
    """A horizontal bar per system (``ndcg@10``), coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"lexical": "#999999", "base": "#7fa7d9", "general": "#d9a87f", "fine-tuned": "#2f6db5",
               "hybrid": "#3a9a5b"}
    ordered = sorted(rows, key=lambda r: r["ndcg@10"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ordered) + 1.2))
    ax.barh([r["system"] for r in ordered], [r["ndcg@10"] for r in ordered],
            color=[colours.get(r["kind"], "#555555") for r in ordered])
    for y, row in enumerate(ordered):
        ax.text(row["ndcg@10"], y, f" {row['ndcg@10']:.3f}", va="center", fontsize=8)
    ax.set_xlabel("test ndcg@10")
    ax.set_xlim(0, max(r["ndcg@10"] for r in ordered) * 1.15)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
