"""train: contrastive fine-tuning (MNRL over in-batch and mined hard negatives); saves the model with a card."""

import argparse
import hashlib
import json
from pathlib import Path

from embedtune.data import atomic_directory, iter_jsonl, read_corpus, read_queries
from embedtune.embeddings import resolve_precision
from embedtune.mining import mining_options, records_to_examples
from embedtune.models import pick_device
from embedtune.stage import get, load_params, log, run_stage
from embedtune.training import TrainConfig, build_training_dataset, remine_with_model, train_soup, write_model_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mined", type=Path, help="train.jsonl from the mine stage")
    parser.add_argument("prepared", type=Path, help="prepared dataset directory (corpus and queries)")
    parser.add_argument("output", type=Path, help="where the fine-tuned model is saved")
    parser.add_argument("live", type=Path, help="dvclive directory for training curves")
    args = parser.parse_args()
    params = load_params()
    config = TrainConfig.from_params(get(params, "train"), seed=get(params, "seed"))
    base_model = get(params, "model.base")
    examples = records_to_examples([r for _, r in iter_jsonl(args.mined)])
    corpus = read_corpus(args.prepared / "corpus.jsonl")
    queries = read_queries(args.prepared / "queries.jsonl")
    dataset = build_training_dataset(examples, corpus, queries)
    log.info("training on %d examples (%d columns)", len(dataset), len(dataset.column_names))
    remined: dict = {}

    def remine(model):  # train.remine_epochs: the last epochs train on negatives from the model's own ranking
        rows, remined["remine"] = remine_with_model(
            model, examples, corpus, queries, mining_options(get(params, "mine"), seed=get(params, "seed")),
            batch_size=get(params, "encode.batch_size"), precision=resolve_precision(config.precision, pick_device()))
        return rows

    with atomic_directory(args.output) as staging:
        stats = train_soup(base_model, dataset, config, staging, args.live,
                            max_seq_length=get(params, "model.max_seq_length"), remine=remine)
        stats.update(remined)
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
    log.info("trained: %s", json.dumps(stats))


if __name__ == "__main__":
    run_stage(main)
