"""The train stage's parameters (``train`` in params.yaml), checked once so that training never starts on a typo."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from embedtune.errors import ConfigError

LOSSES = ("mnrl", "cached_mnrl", "gist")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The similarity terms an MNRL softmax can contrast (sentence-transformers' ``directions``): query_to_doc is the
# classic InfoNCE term; adding doc_to_query makes it symmetric; all four is GTE's "improved contrastive loss".
DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction")
# Hardness weighting adds strength * stop_grad(cos_sim) to negative logits, so harder negatives weigh more.
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")


def is_whole_number(value: Any, *, minimum: int) -> bool:
    """An int (not a bool, not a float) of at least ``minimum``: YAML turns `yes` into True and 1.5 stays a float."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class TrainConfig:
    """Every field is a key of params.yaml's ``train`` group (conf/config.yaml documents each), but ``seed``,
    which is the pipeline's top-level ``seed``. The loss fields are passed straight to sentence-transformers."""

    epochs: float = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    loss: str = "mnrl"  # mnrl | cached_mnrl (large batches in bounded memory) | gist (the base model guides)
    mini_batch_size: int = 32  # cached_mnrl only: how many texts go through the model at once
    scale: float = 20.0  # MNRL temperature 1/20
    precision: str = "auto"
    seed: int = 42
    logging_steps: int = 5
    # The budget (embedtune.train.budget): ``epochs`` full passes unless ``max_examples`` (examples drawn, the same
    # on every machine) or ``budget_minutes`` (the training loop's wall time here, by a measured step) allow fewer.
    max_examples: int | None = None
    budget_minutes: float | None = 30
    # A checkpoint every this many minutes of training, from which a stopped stage resumes (train.checkpoints).
    checkpoint_minutes: float | None = 10
    directions: tuple[str, ...] = ("query_to_doc",)
    partition_mode: str = "joint"
    hardness_mode: str | None = None  # None: plain MNRL
    hardness_strength: float = 0.0
    # Matryoshka representation learning: the loss summed over these leading slices of each embedding (e.g.
    # [384, 256, 128, 64]), so a truncated vector still ranks well. None: the plain loss.
    matryoshka_dims: tuple[int, ...] | None = None
    # A uniform model soup: ``soup`` runs that differ only in their seed (seed, seed + 1000, ...), saved as the
    # element-wise mean of their weights (``embedtune.train.soup``). 1: one run.
    soup: int = 1
    soup_processes: int | str = "auto"  # runs trained at once, each in its own process (soup.resolve_soup_processes)
    # Workers that train each run together (DDP under torchrun, train.distributed): one per GPU on a GPU box.
    distributed: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, Any], seed: int) -> TrainConfig:
        """The config of params.yaml's ``train`` group, every value checked (a ConfigError names the key)."""
        known = {f.name for f in fields(cls)} - {"seed"}
        unknown = set(params) - known
        if unknown:
            raise ConfigError(f"unknown train parameter(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = {**params, "seed": seed}
        values["directions"] = _directions(values.get("directions", ["query_to_doc"]))
        values["matryoshka_dims"] = _matryoshka_dims(values.get("matryoshka_dims"))
        config = cls(**values)
        config._check_budget()
        config._check_processes()
        config._check_loss_terms()
        return config

    def _check_budget(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not is_whole_number(self.batch_size, minimum=2):
            raise ConfigError("train.batch_size must be a whole number of at least 2 (in-batch negatives need company)")
        if self.max_examples is not None and not is_whole_number(self.max_examples, minimum=self.batch_size):
            raise ConfigError(f"train.max_examples must be null (no cap) or a whole number of at least one batch "
                              f"({self.batch_size}), got {self.max_examples!r}")
        if not _null_or_minutes(self.budget_minutes, minimum_exclusive=True):
            raise ConfigError(f"train.budget_minutes must be null (no time limit) or a number of minutes > 0, "
                              f"got {self.budget_minutes!r}")
        if not _null_or_minutes(self.checkpoint_minutes, minimum_exclusive=False):
            raise ConfigError(f"train.checkpoint_minutes must be null (no checkpoints) or a number of minutes >= 0 "
                              f"(0: after every step), got {self.checkpoint_minutes!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or not self.epochs > 0:
            raise ConfigError(f"train.epochs must be a number > 0, got {self.epochs!r}")

    def _check_processes(self) -> None:
        if not is_whole_number(self.soup, minimum=1):
            raise ConfigError(f"train.soup must be a whole number >= 1 (training runs averaged; 1: one run), "
                              f"got {self.soup!r}")
        if not is_whole_number(self.distributed, minimum=1) or self.batch_size % self.distributed:
            raise ConfigError(f"train.distributed must be a whole number >= 1 that divides train.batch_size "
                              f"({self.batch_size}): each worker takes an equal share of every batch; got "
                              f"{self.distributed!r}")
        if self.soup_processes != "auto" and not is_whole_number(self.soup_processes, minimum=1):
            raise ConfigError(f"train.soup_processes must be 'auto' or a whole number >= 1 (soup runs trained at "
                              f"once), got {self.soup_processes!r}")

    def _check_loss_terms(self) -> None:
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown or "query_to_doc" not in self.directions:
            raise ConfigError(f"train.directions must include query_to_doc and may add {DIRECTIONS[1:]}, "
                              f"got {list(self.directions)!r}")
        if self.partition_mode not in PARTITION_MODES:
            raise ConfigError(f"train.partition_mode must be one of {PARTITION_MODES}, got {self.partition_mode!r}")
        if self.partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(self.directions):
            raise ConfigError("train.partition_mode=per_direction works with query_to_doc and doc_to_query only "
                              "(the other terms have no positive of their own); use joint")
        if self.hardness_mode is not None and self.hardness_mode not in HARDNESS_MODES:
            raise ConfigError(f"train.hardness_mode must be null or one of {HARDNESS_MODES}, got {self.hardness_mode!r}")
        strength = self.hardness_strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
                or strength < 0:
            raise ConfigError(f"train.hardness_strength must be a finite number >= 0, got {strength!r}")
        if self.loss == "gist" and (self.directions != ("query_to_doc",) or self.partition_mode != "joint"
                                    or self.hardness_mode is not None):
            raise ConfigError("train.loss=gist contrasts query_to_doc only, in one softmax, without hardness "
                              "weighting: leave train.directions, train.partition_mode and train.hardness_mode "
                              "at their defaults")
        if (self.hardness_mode is None) != (strength == 0):
            raise ConfigError("train.hardness_mode and train.hardness_strength go together: a mode does nothing "
                              f"with strength 0 and a strength nothing without a mode (one of {HARDNESS_MODES}); "
                              f"got {self.hardness_mode!r} and {strength!r}")


def _null_or_minutes(value: Any, *, minimum_exclusive: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if minimum_exclusive else value >= 0


def _directions(value: Any) -> tuple[str, ...]:
    directions = [value] if isinstance(value, str) else value
    if not isinstance(directions, (list, tuple)) or not all(isinstance(d, str) for d in directions):
        raise ConfigError(f"train.directions must be a list of names from {DIRECTIONS}, got {value!r}")
    return tuple(directions)


def _matryoshka_dims(dims: Any) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if not isinstance(dims, (list, tuple)) or not dims or not all(is_whole_number(d, minimum=8) for d in dims) \
            or len(set(dims)) != len(dims):
        raise ConfigError(f"train.matryoshka_dims must be null or a list of distinct whole numbers >= 8 "
                          f"(e.g. [384, 256, 128, 64]), got {dims!r}")
    return tuple(sorted(dims, reverse=True))

