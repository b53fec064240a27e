"""One training step as the train stage takes it, for benchmarks that time steps outside the trainer.

The pipeline's loss (as configured in params.yaml `train`) over rows of the mined training data (claim,
positive, hard negatives), backward and an AdamW step. The learning rate is tiny (1e-12): the optimizer does
its full work, but the weights hardly move, so repeated steps over the same rows cost the same. Used by
`bench/train_precision.py` (fp32 against bf16) and `bench/allocator.py --workload train` (glibc's allocator
settings). Run after `dvc repro`: it reads data/mined and data/prepared.
"""

from __future__ import annotations

from pathlib import Path

from embedtune.data import iter_jsonl, read_corpus, read_queries
from embedtune.mining import records_to_examples
from embedtune.models import load_model
from embedtune.stage import get, load_params
from embedtune.training import TrainConfig, build_loss, build_training_dataset


class TrainingStep:
    """The base model, the pipeline's loss and an optimizer, ready to time steps on batches of mined rows."""

    def __init__(self, *, mined: Path = Path("data/mined/train.jsonl"), prepared: Path = Path("data/prepared"),
                 max_seq_length: int | None = None) -> None:
        import torch

        self._torch = torch
        params = load_params()
        self.config = TrainConfig.from_params(get(params, "train"), seed=get(params, "seed"))
        examples = records_to_examples([r for _, r in iter_jsonl(mined)])
        self.dataset = build_training_dataset(examples, read_corpus(prepared / "corpus.jsonl"),
                                              read_queries(prepared / "queries.jsonl"))
        self.model = load_model(get(params, "model.base"), device="cpu",
                                max_seq_length=get(params, "model.max_seq_length"))
        # As the train stage: train.max_seq_length if set, else the encoding length; an explicit limit wins.
        self.model.max_seq_length = max_seq_length or self.config.max_seq_length or self.model.max_seq_length
        self.model.train()
        torch.manual_seed(self.config.seed)
        self.loss = build_loss(self.model, self.config)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-12, weight_decay=self.config.weight_decay)

    def batch(self, start: int, size: int) -> list[dict]:
        """Tokenized columns (anchor, positive, negatives) of rows ``start`` to ``start + size`` (fewer at the end)."""
        rows = self.dataset.select(range(start, min(start + size, len(self.dataset))))
        return [self.model.preprocess(rows[column]) for column in rows.column_names]

    def run(self, features: list[dict], precision: str) -> None:
        """Forward (under bf16 autocast if ``precision`` is bf16), backward, optimizer step."""
        with self._torch.autocast("cpu", dtype=self._torch.bfloat16, enabled=precision == "bf16"):
            value = self.loss([dict(f) for f in features], None)
        value.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
