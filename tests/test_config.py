"""Configuration: params.yaml is Hydra's composition of conf/, and dvc.yaml only names keys that exist."""

from __future__ import annotations

import yaml

from embedtune.config import compose_params
from tests.conftest import REPO


def _get(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_committed_params_is_the_composed_config() -> None:
    assert (REPO / "params.yaml").read_text() == compose_params(config_dir=REPO / "conf"), (
        "params.yaml is stale: run `python -m embedtune.config` and commit it"
    )


def test_group_switch_and_override() -> None:
    params = yaml.safe_load(compose_params(["data=scifact_sample", "train.epochs=1"], config_dir=REPO / "conf"))
    assert params["data"]["name"] == "scifact_sample" and params["data"]["sample_queries"] > 0
    assert params["train"]["epochs"] == 1


def test_model_group_switch() -> None:
    params = yaml.safe_load(compose_params(["model=mpnet"], config_dir=REPO / "conf"))
    assert params["model"] == {"name": "all-mpnet-base-v2", "base": "split-zip:all-mpnet-base-v2", "max_seq_length": 256}
    assert params["data"]["name"] == "scifact"  # the other groups keep their defaults


def test_every_stage_param_exists() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for key in stage.get("params", []):
            _get(params, key)  # raises KeyError naming the key if dvc.yaml lists a missing one
