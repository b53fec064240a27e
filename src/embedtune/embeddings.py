"""Encoding texts and storing the corpus embeddings as a stage output.

The corpus is encoded once per model per run; the arrays (with their ids) are DVC outputs that mining,
evaluation and reindexing all read, so no stage encodes the corpus a second time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedtune.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROBE_MARGIN = 1.15  # bf16 must be this much faster than fp32 to be chosen: ties go to the exact one
PROBE_TEXTS = 16

log = logging.getLogger(__name__)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 / AMX), so autocast pays off."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` without measuring: bf16 on CUDA with bf16 support or on a CPU with native bf16 instructions,
    fp16 on other CUDA, else fp32. Encoding measures instead (``choose_encode_precision``): native bf16
    instructions do not make bf16 faster on every CPU."""
    import torch

    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def probe_precision(run: Callable[[str], object], *, rounds: int = 2,
                    margin: float = PROBE_MARGIN) -> tuple[str, dict[str, float]]:
    """Time ``run("fp32")`` and ``run("bf16")`` (after one warm-up call each, alternating, best of ``rounds``)
    and return the precision to use with the timings. bf16 wins only when at least ``margin`` times faster.

    Why measure: bf16 autocast encoded SciFact 2x faster than fp32 on an AMD EPYC with AVX-512 BF16 and on an
    Intel Xeon with AMX, but 1.5x *slower* on the same Xeon model with AMX hidden from the VM, although it still
    reports AVX-512 BF16 (2026-11-27). The CPU flags do not tell these apart; a few seconds of timing does.
    """
    for precision in ("fp32", "bf16"):
        run(precision)
    best = {"fp32": math.inf, "bf16": math.inf}
    for _ in range(rounds):
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            run(precision)
            best[precision] = min(best[precision], time.perf_counter() - started)
    choice = "bf16" if best["fp32"] >= margin * best["bf16"] else "fp32"
    return choice, {k: round(v, 3) for k, v in best.items()}


def choose_encode_precision(model: SentenceTransformer, texts: Sequence[str], precision: str) -> str:
    """The precision to encode ``texts`` with: the configured one, or for ``auto`` on a CPU with bf16
    instructions, whichever of fp32 and bf16 encodes a sample of these texts faster (``probe_precision``).
    The sample is ``PROBE_TEXTS`` texts of median length, so the probe costs a few seconds."""
    if precision not in PRECISIONS:
        raise ConfigError(f"encode.precision must be one of {PRECISIONS}, got {precision!r}")
    device = str(model.device)
    if precision != "auto" or device.startswith("cuda") or not cpu_has_fast_bf16() or len(texts) < 2 * PROBE_TEXTS:
        return resolve_precision(precision, device)
    by_length = sorted(texts, key=len)
    middle = len(by_length) // 2
    sample = by_length[middle - PROBE_TEXTS // 2: middle + PROBE_TEXTS // 2]

    def run(candidate: str) -> None:
        encode(model, sample, batch_size=PROBE_TEXTS, precision=candidate, show_progress=False)

    choice, seconds = probe_precision(run)
    log.info("encode precision auto -> %s (%d median-length texts: fp32 %.2f s, bf16 %.2f s; bf16 needs %.2fx)",
             choice, len(sample), seconds["fp32"], seconds["bf16"], PROBE_MARGIN)
    return choice


def matching_precision(configured: str, corpus_meta: dict) -> str:
    """Precision for queries searched against stored corpus vectors: with ``auto``, the one the corpus was
    encoded with (its meta.json), so queries and documents go through the same arithmetic."""
    if configured == "auto" and corpus_meta.get("precision") in PRECISIONS:
        return str(corpus_meta["precision"])
    return configured


def _autocast(model: SentenceTransformer, precision: str):
    import torch

    precision = resolve_precision(precision, str(model.device))
    if precision not in PRECISIONS:
        raise ConfigError(f"encode.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = "cuda" if str(model.device).startswith("cuda") else "cpu"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device_type == "cpu" and dtype == torch.float16:
        raise ConfigError("encode.precision fp16 is for CUDA; on CPU use bf16 or fp32")
    return torch.autocast(device_type, dtype=dtype)


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> np.ndarray:
    """Unit-normalised float32 embeddings, one row per text (length-sorted batching is done by the library)."""
    import torch

    with torch.inference_mode(), _autocast(model, precision):
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    return np.asarray(vectors, dtype=np.float32)


def save_embeddings(directory: Path, ids: Sequence[str], vectors: np.ndarray, meta: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "embeddings.npy", vectors)
    (directory / "ids.json").write_text(json.dumps(list(ids)), encoding="utf-8")
    meta = {**meta, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1])}
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
