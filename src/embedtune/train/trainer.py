"""One contrastive fine-tuning run with sentence-transformers' trainer: rows in, a saved model and curves out."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.data.beir import Document, Query
from embedtune.embed.precision import resolve_precision
from embedtune.errors import ConfigError
from embedtune.mining import MinedExample
from embedtune.train.budget import full_steps, plan_steps
from embedtune.train.checkpoints import checkpoint_callback, last_checkpoint
from embedtune.train.config import TrainConfig
from embedtune.train.distributed import is_main, world_size
from embedtune.train.live import live_callback
from embedtune.train.loss import build_loss, check_rows
from embedtune.train.precision import choose_train_precision
from embedtune.workers import cpu_cores

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)

# Wall-clock measurements in the training stats (``train_model``'s, and the precision probe's in ``train_soup``'s):
# they differ between two runs that train the same weights, so they stay out of the model directory (whose hash then
# changes only with the weights); the stage writes them to its timings file.
TIMING_STATS = ("train_seconds", "train_interval", "precision_choice", "step_plan")


def build_training_dataset(
    examples: Sequence[MinedExample],
    corpus: Mapping[str, Document],
    queries: Mapping[str, Query],
) -> HFDataset:
    """Columns ``anchor, positive, negative_1..n``: the layout MNRL reads (first column is the query)."""
    from datasets import Dataset as HFDataset

    if not examples:
        raise ConfigError("no training examples: the train split is empty or mining kept no negatives")
    n_neg = len(examples[0].negative_ids)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{k + 1}": [] for k in range(n_neg)}}
    for example in examples:
        columns["anchor"].append(example.query_text or queries[example.query_id].text)
        columns["positive"].append(example.positive_text or corpus[example.positive_id].full_text)
        for k, neg in enumerate(example.negative_ids):
            columns[f"negative_{k + 1}"].append(corpus[neg].full_text)
    return HFDataset.from_dict(columns)


def precision_flags(precision: str, device: str) -> dict[str, bool]:
    """The trainer's mixed-precision arguments for ``train.precision`` on ``device``."""
    precision = resolve_precision(precision, device)
    if precision == "fp16" and device != "cuda":
        raise ConfigError("train.precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return {"bf16": True} if precision == "bf16" else {"fp16": True} if precision == "fp16" else {}


def column_prompts(model: Any, columns: Sequence[str]) -> dict[str, str] | None:
    """The model's own prompts for the training columns (``anchor``: its query prompt; ``positive`` and the
    negatives: its document prompt), so it trains on texts as it will encode them; None without prompts."""
    from embedtune.embed.encoder import prompt_text

    query, document = prompt_text(model, "query"), prompt_text(model, "document")
    if not (query or document):
        return None
    prompts = {name: query if name == "anchor" else document for name in columns}
    return {name: prompt for name, prompt in prompts.items() if prompt}


def training_arguments(config: TrainConfig, scratch: Path, device: str, max_steps: int, show_progress: bool,
                       prompts: dict[str, str] | None = None) -> Any:
    """sentence-transformers' training arguments for one run (``max_steps`` -1: ``epochs`` in full; ``prompts``:
    per column, see ``column_prompts``)."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(scratch),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,  # even a run shorter than logging_steps has a curve
        save_strategy="no",  # checkpoints, when asked for, by wall time (checkpoints.checkpoint_callback)
        save_total_limit=1,
        report_to="none",
        use_cpu=device == "cpu",
        dataloader_drop_last=False,
        disable_tqdm=not show_progress,
        prompts=prompts,
        # under DDP every worker reads the same global batches and takes its share of each (distributed.py)
        accelerator_config={"split_batches": world_size() > 1},
        **precision_flags(config.precision, device),
    )


def train_model(
    base_model: str,
    dataset: HFDataset,
    config: TrainConfig,
    output_dir: Path,
    live_dir: Path,
    *,
    max_seq_length: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    show_progress: bool = True,
    steps: int | None = None,
    checkpoints: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_model`` on ``dataset``, save it to ``output_dir`` and its curves to ``live_dir``; returns
    training statistics. ``threads``: CPU threads for the arithmetic (default: every core this process may use).
    ``train.precision: auto`` is measured here (``choose_train_precision``) unless the caller resolved it.
    ``steps``: the optimizer steps the caller planned (``budget.plan_training``); None plans without a step
    time, by ``epochs`` and ``max_examples`` alone. ``checkpoints``: a directory under which the run (by its seed)
    saves a checkpoint every ``train.checkpoint_minutes`` and after its last step, and from whose last checkpoint
    it resumes (``embedtune.train.checkpoints``); None: no checkpoints.
    """
    check_rows(config, dataset.column_names)
    import torch
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import set_seed

    from embedtune.models import load_model, pick_device

    device = pick_device(device)
    if config.precision == "auto":
        config = replace(config, precision=choose_train_precision(
            base_model, dataset, config, device, max_seq_length=max_seq_length, threads=threads or cpu_cores())[0])
    set_seed(config.seed)  # the same in every DDP worker: the same batches, in the same order
    torch.set_num_threads(threads or max(1, cpu_cores() // world_size()))
    model = load_model(base_model, device=device, max_seq_length=max_seq_length)
    guide = None
    if config.loss == "gist":
        guide = load_model(base_model, device=device, max_seq_length=model.max_seq_length).eval().requires_grad_(False)
    full = full_steps(len(dataset), config)
    steps = steps if steps is not None else plan_steps(len(dataset), config).steps
    # Without checkpoints the trainer's scratch directory lives inside the output, so a failed or interrupted stage
    # removes it with the staging directory (atomic_directory) instead of leaving it beside the model.
    run_dir = Path(checkpoints) / f"seed{config.seed}" if checkpoints is not None else None
    scratch = run_dir or output_dir / ".trainer"
    callbacks = [live_callback(live_dir)] if is_main() else []  # curves: one writer
    if run_dir is not None:
        callbacks.append(checkpoint_callback(config.checkpoint_minutes or 0.0))
    resume = last_checkpoint(run_dir)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer = SentenceTransformerTrainer(
        model=model, args=training_arguments(config, scratch, device, steps if steps < full else -1, show_progress,
                                             prompts=column_prompts(model, dataset.column_names)),
        train_dataset=dataset, loss=build_loss(model, config, guide), callbacks=callbacks)
    started, started_at = time.perf_counter(), time.time()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds, ended_at = time.perf_counter() - started, time.time()
    if is_main():
        model.save(str(output_dir))
    (live_dir / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # declared output, even with no curve
    if run_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "train_seconds": round(seconds, 1),
        "train_interval": (started_at, ended_at),  # wall-clock, to add up runs that train side by side
        "steps": int(result.global_step),
        "examples": len(dataset),
        "final_loss": round(float(history[-1]["loss"]), 5) if history else None,
        "mean_loss": round(float(result.training_loss), 5),
        "device": device,
    }
