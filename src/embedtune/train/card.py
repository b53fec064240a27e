"""The model card written beside the fine-tuned weights: README.md for people, embedtune.json for programs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedtune.train.trainer import TIMING_STATS


def write_model_card(
    output_dir: Path,
    *,
    base_model: str,
    data: Mapping[str, Any],
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    model_path: Path | None = None,
) -> None:
    """README.md (human) and embedtune.json (machine) describing how the model was made.

    ``model_path`` is where users load the model from (default ``output_dir``; a stage writing into a staging
    directory passes its final path). Only what the weights depend on is written: the timings in ``metrics``
    (``TIMING_STATS``) are left out, so retraining the same weights leaves the directory byte-identical and DVC
    sees nothing new downstream.
    """
    metrics = {k: v for k, v in metrics.items() if k not in TIMING_STATS}
    negatives = ("in-batch negatives only" if data.get("hard negatives per example") == 0
                 else "in-batch and mined hard negatives")
    runs = int((params.get("train") or {}).get("soup", 1))
    budget = metrics.get("budget")
    soup = "" if runs <= 1 else (f" The weights are the mean of {runs} training runs that differ only in their "
                                 "seed (a model soup).")
    card = [
        "# Fine-tuned embedding model (embedtune)",
        "",
        (f"Base model: `{base_model}`, fine-tuned with contrastive learning (MultipleNegativesRankingLoss over "
         f"{negatives}) by the embedtune pipeline (`dvc repro`).{soup}"),
        "",
        "## Data",
        "",
        *[f"- **{k}**: {v}" for k, v in data.items()],
        "",
        "## Parameters",
        "",
        "```json",
        json.dumps(params, indent=2, sort_keys=True),
        "```",
        "",
        "## Training metrics",
        "",
        *([data_seen(budget), ""] if budget else []),
        *[f"- **{k}**: {v}" for k, v in metrics.items()],
        "",
        ("Retrieval quality on the held-out test split is measured by the `evaluate` stage and kept in "
         "`metrics/finetuned.json` (compared with `metrics/baseline.json` in `metrics/comparison.json`)."),
        "",
        "## Use",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f"model = SentenceTransformer({str(model_path or output_dir)!r})",
        "embeddings = model.encode(['a query'], normalize_embeddings=True)",
        "```",
        "",
    ]
    (output_dir / "README.md").write_text("\n".join(card), encoding="utf-8")
    meta = {"base_model": base_model, "data": dict(data), "params": dict(params), "training_metrics": dict(metrics)}
    (output_dir / "embedtune.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def data_seen(budget: Mapping[str, Any]) -> str:
    """The card's sentence on how much of the training data each run saw, and what set the number of steps."""
    why = {"epochs": "every epoch of train.epochs in full",
           "max_examples": "cut short by train.max_examples",
           "budget_minutes": "cut short by train.budget_minutes on the machine that trained it"}[budget["limited_by"]]
    return (f"Each run took {budget['steps']:,} optimizer steps of the {budget['full_steps']:,} a full run would take "
            f"({why}): {budget['examples_seen']:,} examples drawn, {budget['passes']:.2f} passes over the "
            f"{budget['examples']:,} training examples, {budget['share_seen']:.0%} of them seen at least once.")
