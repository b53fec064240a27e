"""The contrastive loss: sentence-transformers' MultipleNegativesRankingLoss and its relatives, as configured.

MNRL over (query, positive, mined negatives...) rows contrasts every query with its positive against the
mined negatives and every other row's documents (in-batch negatives); batches never hold the same text twice
(``NO_DUPLICATES`` in the trainer), otherwise an in-batch "negative" could be the positive itself.
"""

from __future__ import annotations

from typing import Any

from embedtune.errors import ConfigError
from embedtune.train.config import TrainConfig


def build_loss(model: Any, config: TrainConfig, guide: Any = None) -> Any:
    """The MNRL loss (plain, cached, or guided by ``guide`` for ``gist``) with the configured temperature,
    similarity terms and hardness weighting, summed over the Matryoshka dimensions when ``train.matryoshka_dims``
    is set."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        GISTEmbedLoss,
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )

    from embedtune.train.distributed import world_size

    # under DDP each worker's queries contrast with every worker's documents: the whole global batch
    gather = world_size() > 1
    terms = {"scale": config.scale, "directions": config.directions, "partition_mode": config.partition_mode,
             "hardness_mode": config.hardness_mode, "hardness_strength": float(config.hardness_strength),
             "gather_across_devices": gather}
    if config.loss == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **terms)
    elif config.loss == "gist":
        if guide is None:
            raise ValueError("train.loss=gist needs a guide model")
        # GISTEmbed (Solatorio, 2024): in-batch and mined negatives that the frozen guide (the base model) scores
        # above the pair's own positive are dropped from the softmax as likely false negatives. Only the
        # query-to-document softmax, as plain MNRL with the default directions; the temperature is MNRL's 1 / scale.
        loss = GISTEmbedLoss(model, guide, temperature=1.0 / config.scale, margin_strategy="absolute", margin=0.0,
                             contrast_anchors=False, contrast_positives=False, gather_across_devices=gather)
    else:
        loss = MultipleNegativesRankingLoss(model, **terms)
    if config.matryoshka_dims is None:
        return loss
    dimension = model.get_embedding_dimension()
    if dimension not in config.matryoshka_dims or max(config.matryoshka_dims) > dimension:
        raise ConfigError(f"train.matryoshka_dims must include the model's dimension {dimension} (the pipeline "
                          f"encodes with all of it) and nothing larger, got {list(config.matryoshka_dims)}")
    return MatryoshkaLoss(model, loss, matryoshka_dims=list(config.matryoshka_dims))


def check_rows(config: TrainConfig, columns: list[str]) -> None:
    """The training rows suit the loss: ``columns`` are the dataset's (anchor, positive, negative_1...)."""
    if config.hardness_mode == "hard_negatives" and len(columns) < 3:
        raise ConfigError("train.hardness_mode=hard_negatives weighs mined negatives, but the training rows have "
                          "none (mine.num_negatives=0); use in_batch_negatives or mine negatives")
    if config.loss == "gist" and len(columns) > 3:
        raise ConfigError(f"train.loss=gist takes one mined negative per row (mine.num_negatives <= 1), got "
                          f"{len(columns) - 2}")
