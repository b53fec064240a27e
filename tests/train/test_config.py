"""The train parameters: every value checked once, with an error that names the key."""

from __future__ import annotations

import pytest

from embedtune.errors import ConfigError
from embedtune.train.config import TrainConfig


def test_unknown_train_parameter_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="matryoshka_dims"):
        TrainConfig.from_params({"attn_dropout": 0.0}, seed=1)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"max_examples": 0}, "train.max_examples"), ({"max_examples": 8}, "train.max_examples"),  # under a batch
     ({"max_examples": 2.5}, "train.max_examples"), ({"max_examples": True}, "train.max_examples"),
     ({"budget_minutes": 0}, "train.budget_minutes"), ({"budget_minutes": -1}, "train.budget_minutes"),
     ({"budget_minutes": float("inf")}, "train.budget_minutes"), ({"budget_minutes": "30"}, "train.budget_minutes"),
     ({"epochs": 0}, "train.epochs")],
)
def test_the_budget_must_be_null_or_a_positive_amount(params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_params(params, seed=1)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"directions": ["doc_to_query"]}, "train.directions"),  # the query_to_doc term is the task itself
        ({"directions": ["query_to_doc", "doc_to_passage"]}, "train.directions"),
        ({"directions": ["query_to_doc", "doc_to_doc"], "partition_mode": "per_direction"}, "train.partition_mode"),
        ({"partition_mode": "separate"}, "train.partition_mode"),
        ({"hardness_mode": "hardest"}, "train.hardness_mode"),
        ({"hardness_mode": "hard_negatives"}, "strength 0"),  # a mode that would do nothing
        ({"hardness_strength": -1}, "train.hardness_strength"),
        ({"hardness_mode": "hard_negatives", "hardness_strength": float("nan")}, "train.hardness_strength"),
        ({"hardness_strength": 5}, "nothing without a mode"),  # a strength that would do nothing
        ({"directions": True}, "train.directions"),
        ({"directions": {"query_to_doc": 1}}, "train.directions"),
        ({"loss": "gist", "directions": ["query_to_doc", "doc_to_query"]}, "train.loss=gist"),
        ({"loss": "gist", "hardness_mode": "in_batch_negatives", "hardness_strength": 5}, "train.loss=gist"),
    ],
)
def test_invalid_loss_terms_are_config_errors(params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_params(params, seed=1)


@pytest.mark.parametrize("dims", [[], [384, 384], [384, 4], "384", [384, 2.5], [True]])
def test_matryoshka_dims_must_be_distinct_whole_numbers(dims: object) -> None:
    with pytest.raises(ConfigError, match="train.matryoshka_dims"):
        TrainConfig.from_params({"matryoshka_dims": dims}, seed=1)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two"])
def test_soup_processes_must_be_auto_or_a_whole_number(value: object) -> None:
    with pytest.raises(ConfigError, match="train.soup_processes"):
        TrainConfig.from_params({"soup_processes": value}, seed=1)


@pytest.mark.parametrize("value", [0, 1.5, True, "2"])
def test_soup_must_be_a_whole_number_of_runs(value: object) -> None:
    with pytest.raises(ConfigError, match="train.soup"):
        TrainConfig.from_params({"soup": value}, seed=1)


@pytest.mark.parametrize("value", ["fp64", "half", None])
def test_precision_must_be_one_of_the_known(value: object) -> None:
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig.from_params({"precision": value}, seed=1)


def test_every_train_parameter_is_in_params_yaml() -> None:
    """The committed params.yaml sets every field (but the pipeline-wide seed), so `dvc exp show` shows them all."""
    from dataclasses import fields

    import yaml

    from tests.conftest import REPO

    train = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    assert set(train) == {f.name for f in fields(TrainConfig)} - {"seed"}
    TrainConfig.from_params(train, seed=42)
