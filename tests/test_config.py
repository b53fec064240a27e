"""Configuration: params.yaml is Hydra's composition of conf/, every key is known, and dvc.yaml names only keys
that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from embedtune.config import compose_params
from embedtune.errors import ConfigError
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


@pytest.mark.parametrize("group", sorted(p.stem for p in (REPO / "conf" / "data").glob("*.yaml")))
def test_every_data_group_composes_and_names_a_dataset_that_is_here(group: str) -> None:
    """The domains defaults are chosen across (../shared/datasets) each have a data group a user can switch to."""
    params = yaml.safe_load(compose_params([f"data={group}"], config_dir=REPO / "conf"))
    source = (REPO / params["data"]["source"]).resolve()
    assert params["data"]["name"] == group and (source / "corpus.jsonl").is_file() and (source / "README.md").is_file()


def test_every_shared_domain_has_a_data_group() -> None:
    shared = REPO.parent / "shared" / "datasets"
    domains = {p.name for p in shared.iterdir() if (p / "corpus.jsonl").is_file()} if shared.is_dir() else set()
    assert domains <= {p.stem for p in (REPO / "conf" / "data").glob("*.yaml")}


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


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["data"].update(sample_queris=10), r"unknown parameter 'data.sample_queris' in group 'data'"),
    (lambda p: p["prepare"]["clicks"].update(min_click=2), r"unknown parameter 'prepare.clicks.min_click'"),
    (lambda p: p.update(trian={"epochs": 1}), r"unknown parameter 'trian' in the top level"),
    (lambda p: p.update(mine=5), r"'mine' must be a group of parameters"),
])
def test_a_group_naming_an_unknown_key_is_a_clear_error(tmp_path: Path, edit, message: str) -> None:
    from embedtune.config import load_params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")


def test_the_committed_params_follow_the_schema() -> None:
    from embedtune.config import SCHEMA, load_params

    params = load_params(REPO / "params.yaml")
    assert set(params) == set(SCHEMA)  # every group is set, so `dvc exp show` shows every knob


def test_a_config_hydra_cannot_compose_is_a_config_error(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    with pytest.raises(ConfigError, match="cannot compose the parameters"):
        compose_params(["data=no_such_group"], config_dir=tmp_path / "conf")
    (tmp_path / "conf" / "data" / "scifact.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot compose the parameters"):
        compose_params(config_dir=tmp_path / "conf")
