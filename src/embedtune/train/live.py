"""Training curves through dvclive's ``Live`` API: loss, gradient norm and learning rate by step.

The plots are declared in dvc.yaml and the run is already a stage of ``dvc repro`` / ``dvc exp run``, so dvclive
writes neither dvc.yaml nor an experiment of its own. Timings stay out of the summary (``metrics.json``): they
differ between two runs that train the same weights, and would show as a change in every ``dvc metrics diff``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURVES = {"loss", "grad_norm", "learning_rate"}
NOT_LOGGED = {"epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


@contextlib.contextmanager
def _outside_repository() -> Iterator[None]:
    """Run the block in an empty temporary directory, where no git repository is found."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as elsewhere:
        os.chdir(elsewhere)
        try:
            yield
        finally:
            os.chdir(here)


def open_live(live_dir: Path) -> Any:
    """A ``dvclive.Live`` writing to ``live_dir``.

    dvclive asks git for HEAD before it checks that the repository has a commit, so in a fresh ``git init``
    without one it raises scmrepo's "Empty git repo". The curves do not need git: there, the logger is created
    from outside the repository (with an absolute ``dir``) and works without dvclive's git integration.
    """
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    options = {"save_dvc_exp": False, "dvcyaml": None, "report": None}
    try:
        return Live(dir=str(live_dir), **options)
    except SCMError as error:
        log.warning("dvclive could not read the git repository (%s): training curves are written to %s "
                    "without dvclive's git integration", error, live_dir)
    absolute = str(Path(live_dir).resolve())
    with _outside_repository():
        return Live(dir=absolute, **options)


def live_callback(live_dir: Path) -> Any:
    """A transformers ``TrainerCallback`` logging every trainer log line to dvclive at its optimizer step."""
    from transformers import TrainerCallback

    class LiveCallback(TrainerCallback):
        def __init__(self) -> None:
            self.live = open_live(live_dir)

        def on_train_begin(self, args, state, control, **kwargs):
            # A run resumed from a checkpoint: its curves so far come back with the trainer's state.
            for logs in state.log_history:
                self._log(logs, logs.get("step", 0), logs.get("epoch"))

        def on_log(self, args, state, control, logs=None, **kwargs):
            self._log(logs, state.global_step, state.epoch)

        def _log(self, logs, step, epoch):
            if not logs:
                return
            self.live.step = step  # before logging: the values belong to this step
            for key, value in logs.items():
                if isinstance(value, (int, float)) and key not in NOT_LOGGED | {"step"}:
                    self.live.log_metric(f"train/{key}", float(value), plot=key in CURVES)
            self.live.log_metric("epoch", float(epoch or 0.0), plot=False)
            self.live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            self.live.end()

    return LiveCallback()
