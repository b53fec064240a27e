"""The embed stage's output: corpus vectors with their ids, and the tail views' vectors beside them.

A directory holds ``embeddings.npy`` and ``ids.json`` (one row per document), ``meta.json`` (model, precision,
length: only what the vectors depend on, so encoding again to the same vectors leaves the directory's hash
unchanged) and, when documents got a tail view, ``views.npy`` with their owners' ids in ``view_ids.json``.
Mining, evaluation, hybrid search and reindexing all read it, so no stage encodes the corpus a second time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedtune.embed.views import ExtraViews
from embedtune.errors import InputError


def save_embeddings(directory: Path, ids: Sequence[str], vectors: np.ndarray, meta: dict,
                    views: ExtraViews | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "embeddings.npy", vectors)
    (directory / "ids.json").write_text(json.dumps(list(ids)), encoding="utf-8")
    meta = {**meta, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1])}
    if views is not None and len(views):
        np.save(directory / "views.npy", np.asarray(views.vectors, dtype=np.float32))
        (directory / "view_ids.json").write_text(json.dumps([ids[i] for i in views.owners]), encoding="utf-8")
        meta["views"] = len(views)
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_embeddings(directory: Path) -> tuple[list[str], np.ndarray, dict]:
    directory = Path(directory)
    try:
        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
        vectors = np.load(directory / "embeddings.npy")
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"embeddings are incomplete ({exc.filename} missing): rerun the embed stage", path=directory) from None
    if len(ids) != vectors.shape[0]:
        raise InputError(f"{len(ids)} ids but {vectors.shape[0]} vectors: rerun the embed stage", path=directory)
    return ids, vectors.astype(np.float32, copy=False), meta


def load_views(directory: Path, ids: Sequence[str]) -> ExtraViews | None:
    """The extra (tail) views saved beside the corpus vectors, or None when the embed stage made none."""
    directory = Path(directory)
    if not (directory / "views.npy").exists():
        return None
    try:
        view_ids = json.loads((directory / "view_ids.json").read_text(encoding="utf-8"))
        vectors = np.load(directory / "views.npy").astype(np.float32, copy=False)
    except FileNotFoundError as exc:
        raise InputError(f"embeddings are incomplete ({exc.filename} missing): rerun the embed stage", path=directory) from None
    row = {d: i for i, d in enumerate(ids)}
    unknown = [d for d in view_ids if d not in row]
    if unknown or len(view_ids) != vectors.shape[0]:
        raise InputError(f"views do not match the corpus vectors ({len(unknown)} unknown ids, {len(view_ids)} ids for "
                         f"{vectors.shape[0]} vectors): rerun the embed stage", path=directory)
    return ExtraViews(np.array([row[d] for d in view_ids], dtype=np.int64), vectors)