"""Resumable training: checkpoints that outlive a stopped or killed train stage, so the next ``dvc repro``
continues from the last one instead of starting over.

The stage's model is built in a staging directory that goes away with a failed run (``io.atomic_directory``), so
checkpoints live beside it, in ``.<output>-checkpoints/<key>/``: ``key`` hashes everything the training trajectory
depends on (the training rows, the base model, the train parameters, the code of ``embedtune.train`` and the
library versions), so a changed setting never resumes a run it did not start. The decisions a run took from
measurements (precision, steps, processes) are saved with the checkpoints and reused on resume, so the resumed run
is the run that was stopped. sentence-transformers' trainer restores the weights, optimizer, schedule, data order
and random state, and a resumed run ends with the same weights as one that was never stopped (tested on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.train.config import TrainConfig

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint: a checkpoint without it is incomplete
# Train parameters that do not change the trajectory: a run may resume under other values of these.
NOT_IN_KEY = ("checkpoint_minutes", "soup_processes", "logging_steps")


def checkpoint_root(output: Path) -> Path:
    """Where the train stage writing ``output`` keeps its checkpoints: beside it, hidden, outside every output."""
    output = Path(output)
    return output.parent / f".{output.name}-checkpoints"


def dataset_digest(dataset: HFDataset) -> str:
    """A hash of the training rows, column by column, in order."""
    digest = hashlib.sha256()
    for column in dataset.column_names:
        digest.update(column.encode())
        for text in dataset[column]:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def run_key(base_model: str, dataset: HFDataset, config: TrainConfig, **options: Any) -> str:
    """The key of a training run's checkpoints: what its trajectory depends on."""
    params = {k: v for k, v in asdict(config).items() if k not in NOT_IN_KEY}
    parts = {"base_model": base_model, "rows": dataset_digest(dataset), "train": params, "options": options,
             "code": _code_digest(),
             "versions": {name: version(name) for name in ("torch", "transformers", "sentence-transformers")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResumeArea:
    """One run's checkpoint directory (``root/key``) and the plan saved in it."""

    root: Path
    key: str

    @property
    def path(self) -> Path:
        return self.root / self.key

    @classmethod
    def open(cls, root: Path, key: str) -> ResumeArea:
        """The area for ``key``; checkpoints of any other key under ``root`` are removed (they cannot resume)."""
        root = Path(root)
        if root.is_dir():
            for other in root.iterdir():
                if other.name != key:
                    log.info("removing checkpoints of another training setup: %s", other)
                    shutil.rmtree(other, ignore_errors=True)
        return cls(root, key)

    def saved_plan(self) -> dict[str, Any] | None:
        """The plan a stopped run of this key saved, if any."""
        try:
            return json.loads((self.path / PLAN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def save_plan(self, plan: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{PLAN_FILE}.tmp"
        tmp.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path / PLAN_FILE)

    def run_dir(self, run: int) -> Path:
        """Where run ``run`` of a soup (1, 2, ...) writes its checkpoints."""
        return self.path / f"run{run}"

    def remove(self) -> None:
        """Drop every checkpoint: the stage's output is complete."""
        shutil.rmtree(self.root, ignore_errors=True)


def last_checkpoint(run_dir: Path | None) -> Path | None:
    """The complete checkpoint with the most steps in ``run_dir`` (the trainer's ``checkpoint-<step>``), or None.
    Incomplete ones (the trainer was killed while writing them) are removed."""
    if run_dir is None or not Path(run_dir).is_dir():
        return None
    complete = []
    for path in Path(run_dir).glob("checkpoint-*"):
        if (path / TRAINER_STATE).is_file() and path.name.split("-")[-1].isdigit():
            complete.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def checkpoint_callback(minutes: float) -> Any:
    """A ``TrainerCallback`` that asks the trainer to save a checkpoint every ``minutes`` of training (0: every
    step) and after the last step, so a finished run of a soup is not trained again."""
    from transformers import TrainerCallback

    class TimedCheckpoints(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps or time.monotonic() - self.last >= minutes * 60:
                control.should_save = True
                self.last = time.monotonic()
            return control

    return TimedCheckpoints()
