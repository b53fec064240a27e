"""The training budget: how many optimizer steps a run takes.

Users think of a budget in minutes on their machine or in examples seen, not in optimizer steps, and a fixed
step cap serves nobody: it cuts a large domain off after a fraction of one pass over its pairs, and it wastes a
GPU that could see every pair several times in the same minutes. So a run takes ``train.epochs`` full passes
over its examples, unless ``train.max_examples`` (the same on every machine) or ``train.budget_minutes`` (wall
time of the training loop on the machine at hand, turned into steps by a measured step time) allows fewer.
The learning-rate schedule is then laid over the steps actually planned, so a budgeted run still warms up and
decays to zero instead of being stopped mid-schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embedtune.errors import ConfigError
from embedtune.train.config import TrainConfig
from embedtune.train.distributed import world_size
from embedtune.train.precision import time_training_steps

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

# A soup run's measured step (one batch, alone on the machine) against the same step in the training loop, where
# batches differ in length, the trainer logs and collates, and side-by-side runs share memory bandwidth: measured
# 1.03x on an Intel Xeon; the margin keeps a budgeted stage inside its minutes on a machine that varies more.
STEP_TIME_MARGIN = 1.1
STEP_DIGITS = 2  # budgeted steps are rounded down to this many significant digits, so timing noise rarely moves them


@dataclass(frozen=True)
class StepPlan:
    """The steps each run takes and why: ``limited_by`` is ``epochs`` (every pass in full), ``max_examples`` or
    ``budget_minutes``. ``step_seconds`` is the measured step the budget was divided by (None: not needed)."""

    steps: int
    full_steps: int
    limited_by: str
    examples: int
    batch_size: int
    step_seconds: float | None = None
    runs_in_sequence: int = 1
    epochs: float = 1.0

    @property
    def examples_seen(self) -> int:
        """Training examples the run draws: steps x batch size, but no more than ``epochs`` full passes hold (an
        epoch's last batch may be short)."""
        return min(self.steps * self.batch_size, math.ceil(self.examples * self.epochs))

    @property
    def passes(self) -> float:
        """Passes over the training examples (epochs actually trained)."""
        return self.examples_seen / max(1, self.examples)

    @property
    def share_seen(self) -> float:
        """The share of the distinct training examples the run sees at least once (1.0 after one pass)."""
        return min(1.0, self.passes)

    def summary(self) -> dict[str, Any]:
        """What the model card and the timings file record of the plan."""
        return {**asdict(self), "examples_seen": self.examples_seen, "passes": round(self.passes, 3),
                "share_seen": round(self.share_seen, 4)}


def full_steps(num_examples: int, config: TrainConfig) -> int:
    """Optimizer steps for ``epochs`` full passes: one step per batch (the last may be smaller), at least one;
    ``epochs`` may be fractional, as in transformers. Under DDP sentence-transformers drops each epoch's last
    partial batch (an uneven one could hang the workers), so an epoch is the full batches only."""
    batches = num_examples / config.batch_size
    if world_size() > 1 and batches < 1:
        raise ConfigError(f"train.distributed: {num_examples} training examples do not fill one batch of "
                          f"{config.batch_size}, and DDP trains on full batches only; train in one process")
    per_epoch = max(1, math.floor(batches) if world_size() > 1 else math.ceil(batches))
    return max(1, math.ceil(per_epoch * config.epochs))


def budget_steps(budget_minutes: float, step_seconds: float, runs_in_sequence: int = 1) -> int:
    """The steps a run may take when ``runs_in_sequence`` runs (a soup trained one after another) share
    ``budget_minutes`` and a step takes ``step_seconds`` (times ``STEP_TIME_MARGIN``); rounded down to
    ``STEP_DIGITS`` significant digits (272 -> 270, 3,089 -> 3,000: at most 10% fewer), and at least one."""
    if step_seconds <= 0 or not math.isfinite(step_seconds):
        raise ValueError(f"a measured step time must be a positive number of seconds, got {step_seconds!r}")
    steps = math.floor(budget_minutes * 60 / (step_seconds * STEP_TIME_MARGIN * max(1, runs_in_sequence)))
    quantum = 10 ** max(0, len(str(steps)) - STEP_DIGITS)
    return max(1, steps - steps % quantum)


def needs_step_time(num_examples: int, config: TrainConfig) -> bool:
    """Whether the plan depends on a measured step time: a budget in minutes is set and the run is not already
    bounded by ``max_examples`` to a single step."""
    return config.budget_minutes is not None and plan_steps(num_examples, config).steps > 1


def plan_steps(num_examples: int, config: TrainConfig, *, step_seconds: float | None = None,
               runs_in_sequence: int = 1) -> StepPlan:
    """The step plan for ``num_examples`` training examples: the fewest of a full run's steps, the steps
    ``max_examples`` allows and, when ``step_seconds`` was measured, the steps ``budget_minutes`` allows."""
    full = full_steps(num_examples, config)
    candidates = [(full, "epochs")]
    if config.max_examples is not None:
        candidates.append((max(1, config.max_examples // config.batch_size), "max_examples"))
    if config.budget_minutes is not None and step_seconds is not None:
        candidates.append((budget_steps(config.budget_minutes, step_seconds, runs_in_sequence), "budget_minutes"))
    steps, limited_by = min(candidates, key=lambda candidate: candidate[0])  # ties keep the earlier reason
    return StepPlan(steps=steps, full_steps=full, limited_by=limited_by, examples=num_examples,
                    batch_size=config.batch_size, step_seconds=step_seconds, runs_in_sequence=runs_in_sequence,
                    epochs=config.epochs)


def describe(plan: StepPlan, config: TrainConfig) -> str:
    """One line for the stage's log: the steps, what limited them, and what share of the data that is."""
    seen = f"{plan.steps} steps x {plan.batch_size} = {plan.passes:.2f} passes over {plan.examples} examples"
    if plan.limited_by == "epochs":
        return f"training {seen} (train.epochs={config.epochs} in full)"
    if plan.limited_by == "max_examples":
        return (f"training {seen}: train.max_examples={config.max_examples} allows {plan.steps} of the "
                f"{plan.full_steps} steps of train.epochs={config.epochs}")
    share = f"{plan.share_seen:.0%} of the examples seen" if plan.share_seen < 1 else f"{plan.passes:.2f} passes"
    return (f"training {seen}: train.budget_minutes={config.budget_minutes} at a measured {plan.step_seconds:.2f} s "
            f"a step allows {plan.steps} of the {plan.full_steps} steps of train.epochs={config.epochs} ({share}); "
            "a longer budget or a GPU trains on more of them")


def plan_training(base_model: str, dataset: HFDataset, config: TrainConfig, device: str, *, threads: int,
                  runs_in_sequence: int, max_seq_length: int | None,
                  measured: dict[str, float] | None = None) -> StepPlan:
    """``plan_steps`` for ``dataset`` in ``config.precision`` (already resolved), timing a step on ``device`` with
    ``threads`` threads only when the budget needs it and the precision probe has not timed one (``measured``)."""
    step_seconds = None
    if needs_step_time(len(dataset), config):
        step_seconds = (measured or {}).get(config.precision)
        if step_seconds is None:
            step_seconds = time_training_steps(base_model, dataset, config, device=device, threads=threads,
                                               max_seq_length=max_seq_length,
                                               precisions=(config.precision,))[config.precision]
    return plan_steps(len(dataset), config, step_seconds=step_seconds, runs_in_sequence=runs_in_sequence)
