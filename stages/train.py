"""train: contrastive fine-tuning (MNRL over in-batch and mined hard negatives); saves the model with a card.

Checkpoints go beside the model (``models/.finetuned-checkpoints``) every ``train.checkpoint_minutes``, so a stage
that is stopped or killed resumes on the next ``dvc repro``; they are removed once training has finished.
The model directory holds only what the weights depend on, so retraining the same weights leaves its hash
unchanged; how long training took goes to the timings file instead."""

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from embedtune.config import get, load_params
from embedtune.data.beir import iter_jsonl, read_corpus, read_queries
from embedtune.io import atomic_directory, write_json_atomic
from embedtune.mining import records_to_examples
from embedtune.runtime import log, run_stage
from embedtune.train.card import write_model_card
from embedtune.train.checkpoints import checkpoint_root
from embedtune.train.config import TrainConfig
from embedtune.train.distributed import is_main, launch
from embedtune.train.soup import train_soup
from embedtune.train.trainer import TIMING_STATS, build_training_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mined", type=Path, help="train.jsonl from the mine stage")
    parser.add_argument("prepared", type=Path, help="prepared dataset directory (corpus and queries)")
    parser.add_argument("output", type=Path, help="where the fine-tuned model is saved")
    parser.add_argument("live", type=Path, help="dvclive directory for training curves")
    parser.add_argument("timings", type=Path, help="how long training took (JSON; not part of the model's hash)")
    args = parser.parse_args()
    params = load_params()
    config = TrainConfig.from_params(get(params, "train"), seed=get(params, "seed"))
    if launch(config.distributed, sys.argv):  # train.distributed > 1: the torchrun workers did the work
        return
    base_model = get(params, "model.base")
    examples = records_to_examples([r for _, r in iter_jsonl(args.mined)])
    dataset = build_training_dataset(examples, read_corpus(args.prepared / "corpus.jsonl"),
                                     read_queries(args.prepared / "queries.jsonl"))
    options = {"checkpoints": checkpoint_root(args.output), "max_seq_length": get(params, "model.max_seq_length")}
    if not is_main():  # a DDP worker besides rank 0 trains along; rank 0 writes every output
        with tempfile.TemporaryDirectory(prefix=".train-worker.") as scratch:
            train_soup(base_model, dataset, config, Path(scratch) / "model", Path(scratch) / "live", **options)
        return
    log.info("training on %d examples (%d columns)", len(dataset), len(dataset.column_names))
    with atomic_directory(args.output) as staging:
        stats = train_soup(base_model, dataset, config, staging, args.live, **options)
        write_model_card(
            staging,
            base_model=base_model,
            data={
                "dataset": get(params, "data.name"),
                "source": get(params, "data.source"),
                "training examples": len(dataset),
                "training queries": len({e.query_id for e in examples}),
                "hard negatives per example": len(examples[0].negative_ids),
                "mined examples md5": hashlib.md5(args.mined.read_bytes()).hexdigest(),
            },
            params={"model": get(params, "model"), "train": get(params, "train"), "seed": get(params, "seed")},
            metrics=stats,
            model_path=args.output,
        )
    runs_in_sequence = stats["step_plan"]["runs_in_sequence"]  # a step's time, whether the runs share the time or not
    write_json_atomic(args.timings, {"train_seconds": stats["train_seconds"], "steps": stats["steps"],
                                     "seconds_per_step": round(stats["train_seconds"] / max(1, stats["steps"] * runs_in_sequence), 3),
                                     "soup_processes": stats.get("soup_processes", 1), "device": stats["device"],
                                     "precision": stats["precision_choice"], "step_plan": stats["step_plan"]})
    log.info("trained: %s", {k: v for k, v in stats.items() if k not in TIMING_STATS})


if __name__ == "__main__":
    run_stage(main)
