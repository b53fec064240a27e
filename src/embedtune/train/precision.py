"""Training's ``precision: auto`` on a CPU: time a few real training steps in fp32 and in bf16 and train in the
faster, because a flag does not say whether bf16 is fast (oneDNN reports it "supported" where it only emulates
it, ~3x slower than fp32; a VM with AMX hidden reports AVX-512 BF16 and still runs bf16 slower)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from embedtune.embed.precision import (
    PROBE_MARGIN,
    autocast,
    cpu_has_fast_bf16,
    faster_precision,
    resolve_precision,
    time_each,
)
from embedtune.train.config import TrainConfig
from embedtune.train.loss import build_loss

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)


def time_training_steps(base_model: str, dataset: HFDataset, config: TrainConfig, *, device: str,
                        max_seq_length: int | None, threads: int,
                        precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict[str, float]:
    """Seconds one training step (forward, backward, AdamW) of ``config``'s loss takes on ``device`` in each of
    ``precisions``, with ``threads`` threads as one run of the stage will have: a warm-up step each, then one
    timed step each, in turn. The batch is ``batch_size`` rows drawn at random (seeded), so its length is a
    typical batch's. The probe's model is thrown away, so the runs' weights do not depend on it."""
    import torch

    from embedtune.models import load_model

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = load_model(base_model, device=device, max_seq_length=max_seq_length)
        guide = None
        if config.loss == "gist":
            guide = load_model(base_model, device=device, max_seq_length=model.max_seq_length).requires_grad_(False)
        loss = build_loss(model, config, guide)
        rows = dataset.shuffle(seed=config.seed).select(range(min(len(dataset), config.batch_size)))
        features = [{k: v.to(device) if hasattr(v, "to") else v for k, v in model.preprocess(rows[column]).items()}
                    for column in rows.column_names]
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        model.train()

        def step(precision: str) -> None:
            with autocast(device, precision):
                value = loss(features, None)
            value.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        return time_each(step, precisions, rounds=1)
    finally:
        torch.set_num_threads(previous_threads)


def choose_train_precision(base_model: str, dataset: HFDataset, config: TrainConfig, device: str, *,
                           max_seq_length: int | None, threads: int) -> tuple[str, dict[str, Any]]:
    """The precision the runs train in and how it was chosen (for the stage's timings file): the configured
    one, or for ``auto`` on a CPU the measured faster of fp32 and bf16 (fp32 without measuring where oneDNN
    has no bf16 at all). A measured choice carries ``step_seconds``, each precision's step, which the training
    budget reuses. On CUDA ``auto`` is bf16 where supported, else fp16."""
    if config.precision != "auto" or device != "cpu":
        chosen = resolve_precision(config.precision, device)
        return chosen, {"precision": chosen, "chosen_by": "config" if config.precision != "auto" else "device"}
    if not cpu_has_fast_bf16():
        return "fp32", {"precision": "fp32", "chosen_by": "no bf16 in oneDNN"}
    seconds = time_training_steps(base_model, dataset, config, device=device, max_seq_length=max_seq_length,
                                  threads=threads)
    chosen = faster_precision(seconds)
    log.info("train precision auto -> %s (one step of %d rows, %d thread(s): fp32 %.2f s, bf16 %.2f s; bf16 "
             "needs %.2fx; pin it with train.precision=%s)", chosen, min(len(dataset), config.batch_size), threads,
             seconds["fp32"], seconds["bf16"], PROBE_MARGIN, chosen)
    return chosen, {"precision": chosen, "chosen_by": "measured", "step_seconds": seconds, "threads": threads}
