"""Training's ``precision: auto`` on a CPU: time a few real training steps in fp32 and in bf16 and train in the
faster, because a flag does not say whether bf16 is fast (oneDNN reports it "supported" where it only emulates
it, ~3x slower than fp32; a VM with AMX hidden reports AVX-512 BF16 and still runs bf16 slower)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from embedtune.embed.precision import PROBE_MARGIN, autocast, cpu_has_fast_bf16, probe_precision, resolve_precision
from embedtune.train.config import TrainConfig
from embedtune.train.loss import build_loss

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)


def probe_training_step(base_model: str, dataset: HFDataset, config: TrainConfig, *, max_seq_length: int | None,
                        threads: int) -> tuple[str, dict[str, float]]:
    """Time one training step (forward, backward, AdamW) of ``config``'s loss on the first batch of ``dataset``
    in fp32 and under bf16 autocast, with ``threads`` threads as one run of the stage will have; returns the
    faster precision (bf16 only when ``PROBE_MARGIN`` times faster) and the best seconds a step of each.
    The probe's model is thrown away, so the runs' weights do not depend on it."""
    import torch

    from embedtune.models import load_model

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = load_model(base_model, device="cpu", max_seq_length=max_seq_length)
        guide = None
        if config.loss == "gist":
            guide = load_model(base_model, device="cpu", max_seq_length=model.max_seq_length).requires_grad_(False)
        loss = build_loss(model, config, guide)
        rows = dataset.select(range(min(len(dataset), config.batch_size)))
        features = [model.tokenize(rows[column]) for column in rows.column_names]
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        model.train()

        def step(precision: str) -> None:
            with autocast("cpu", precision):
                value = loss(features, None)
            value.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return probe_precision(step, rounds=1)
    finally:
        torch.set_num_threads(previous_threads)


def choose_train_precision(base_model: str, dataset: HFDataset, config: TrainConfig, device: str, *,
                           max_seq_length: int | None, threads: int) -> tuple[str, dict[str, Any]]:
    """The precision the runs train in and how it was chosen (for the stage's timings file): the configured
    one, or for ``auto`` on a CPU the measured faster of fp32 and bf16 (fp32 without measuring where oneDNN
    has no bf16 at all). On CUDA ``auto`` is bf16 where supported, else fp16."""
    if config.precision != "auto" or device != "cpu":
        chosen = resolve_precision(config.precision, device)
        return chosen, {"precision": chosen, "chosen_by": "config" if config.precision != "auto" else "device"}
    if not cpu_has_fast_bf16():
        return "fp32", {"precision": "fp32", "chosen_by": "no bf16 in oneDNN"}
    chosen, seconds = probe_training_step(base_model, dataset, config, max_seq_length=max_seq_length,
                                          threads=threads)
    log.info("train precision auto -> %s (one step of %d rows, %d thread(s): fp32 %.2f s, bf16 %.2f s; bf16 "
             "needs %.2fx; pin it with train.precision=%s)", chosen, min(len(dataset), config.batch_size), threads,
             seconds["fp32"], seconds["bf16"], PROBE_MARGIN, chosen)
    return chosen, {"precision": chosen, "chosen_by": "measured", "step_seconds": seconds, "threads": threads}
