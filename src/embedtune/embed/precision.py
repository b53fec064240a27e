"""Which arithmetic a model runs in: fp32, or bf16 / fp16 autocast, chosen by measuring rather than by a flag.

A CPU flag does not tell whether bf16 is fast: oneDNN reports bf16 "supported" on CPUs that only emulate it
(and there it runs slower than fp32), and a VM may hide AMX while still reporting AVX-512 BF16. So ``auto``
times both on the work at hand (``probe_precision``) wherever the answer is not obvious.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

from embedtune.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROBE_MARGIN = 1.15  # bf16 must be this much faster than fp32 to be chosen: ties go to the exact one


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN says the CPU computes bf16 (AVX-512 BF16 / AMX); a hint only, see the module's docstring."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` without measuring: bf16 on CUDA with bf16 support or on a CPU that reports bf16, fp16 on other
    CUDA, else fp32. Encoding measures on top of this (``encoder.choose_encode_precision``)."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def time_each(run: Callable[[str], object], choices: Sequence[str], *, rounds: int = 2) -> dict[str, float]:
    """Best seconds of ``run(choice)`` for each choice over ``rounds`` rounds, after one warm-up call each; the
    choices alternate within a round, so a machine that slows down mid-way slows them alike."""
    for choice in choices:
        run(choice)
    best = dict.fromkeys(choices, math.inf)
    for _ in range(rounds):
        for choice in choices:
            started = time.perf_counter()
            run(choice)
            best[choice] = min(best[choice], time.perf_counter() - started)
    return {k: round(v, 3) for k, v in best.items()}


def faster_precision(seconds: dict[str, float], margin: float = PROBE_MARGIN) -> str:
    """bf16 when it was timed at least ``margin`` times faster than fp32, else fp32: ties go to the exact one."""
    return "bf16" if seconds["fp32"] >= margin * seconds["bf16"] else "fp32"


def probe_precision(run: Callable[[str], object], *, rounds: int = 2,
                    margin: float = PROBE_MARGIN) -> tuple[str, dict[str, float]]:
    """Time ``run("fp32")`` and ``run("bf16")`` (``time_each``) and return the precision to use with the
    timings. bf16 wins only when at least ``margin`` times faster."""
    seconds = time_each(run, ("fp32", "bf16"), rounds=rounds)
    return faster_precision(seconds, margin), seconds


def matching_precision(configured: str, corpus_meta: dict) -> str:
    """Precision for queries searched against stored corpus vectors: with ``auto``, the one the corpus was
    encoded with (its meta.json), so queries and documents go through the same arithmetic."""
    if configured == "auto" and corpus_meta.get("precision") in PRECISIONS:
        return str(corpus_meta["precision"])
    return configured


def autocast(device: str, precision: str):
    """The autocast context for ``precision`` on ``device`` (a null context for fp32)."""
    import torch

    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if device_type == "cpu" and precision == "fp16":
        raise ConfigError("encode.precision fp16 is for CUDA; on CPU use bf16 or fp32")
    return torch.autocast(device_type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
