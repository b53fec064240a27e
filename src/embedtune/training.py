"""Contrastive fine-tuning with sentence-transformers.

``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` (or its cached variant, which gives
large effective batches in bounded memory) over (query, positive, hard negatives...) rows. Batches never
hold the same text twice (``NO_DUPLICATES``), otherwise an in-batch "negative" could be the positive itself.
Training curves go to dvclive; CUDA uses mixed precision when present.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.data import Document, Query
from embedtune.embeddings import cpu_cores, exit_with_parent
from embedtune.errors import ConfigError, EmbedtuneError
from embedtune.mining import MinedExample

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)

# gist: GISTEmbed (Solatorio, 2024): MNRL whose in-batch and mined negatives are dropped from the softmax when a
# frozen guide (here the base model) scores them above the pair's own positive: likely false negatives.
LOSSES = ("mnrl", "cached_mnrl", "gist")
# The similarity terms an MNRL softmax can contrast (sentence-transformers' ``directions``): query_to_doc is the
# classic InfoNCE term; adding doc_to_query makes it symmetric; all four is GTE's "improved contrastive loss".
DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
PARTITION_MODES = ("joint", "per_direction")
# Hardness weighting adds strength * stop_grad(cos_sim) to negative logits, so harder negatives weigh more.
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
CURVES = {"loss", "grad_norm", "learning_rate"}


def _is_whole_number(value: Any, *, minimum: int) -> bool:
    """An int (not a bool, not a float) of at least ``minimum``: YAML turns `yes` into True and 1.5 stays a float."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 3  # as conf/config.yaml: 3 beat 2 on the dev splits (docs/experiments.md)
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    loss: str = "mnrl"
    mini_batch_size: int = 32  # cached_mnrl only: how many texts go through the model at once
    scale: float = 20.0  # MNRL temperature 1/20
    precision: str = "auto"  # auto: bf16 autocast where the CPU/GPU has it (fp16 on older GPUs), else fp32
    seed: int = 42
    logging_steps: int = 5
    # None keeps the base model's own dropout (0.1 for BERT-style models). Attention dropout is the costly one
    # on CPU: it samples a mask over every (head, query, key) score and forces the unfused attention kernel.
    attention_dropout: float | None = None
    hidden_dropout: float | None = None
    # "each": attention dropout as the model has it, one mask per head (12 per example and layer in MiniLM).
    # "shared": one mask per (example, query, key), shared by all heads, on an eager attention path
    # (``shared_dropout_attention``): a twelfth of the random draws, a third off each step on the 2-core EPYC, but
    # -0.013 dev recall@10 over three SciFact splits, so not the default (docs/experiments.md). BERT-style only.
    attention_dropout_heads: str = "each"
    # A budget, not a quality knob: a domain with many labelled pairs would otherwise train for hours on a CPU
    # (3 epochs of 110k pairs at batch 16 is ~20,000 steps). 300 steps of 16 (4,800 examples) is at most ~30 min
    # here on 256-token documents; SciFact's 3 epochs take 150. None trains every epoch in full.
    max_steps: int | None = 300
    directions: tuple[str, ...] = ("query_to_doc",)
    partition_mode: str = "joint"
    hardness_mode: str | None = None  # None: plain MNRL
    hardness_strength: float = 0.0
    # WiSE-FT (Wortsman et al., 2022): the saved model is finetuned_weight x the fine-tuned weights +
    # (1 - finetuned_weight) x the base model's, tensor by tensor. 1.0 saves the weights as trained.
    finetuned_weight: float = 1.0
    # Token limit for the texts during training only (None: model.max_seq_length, the one used for encoding).
    # A training row holds two 256-token documents, so a shorter limit makes a step much cheaper; the saved
    # model keeps the encoding limit.
    max_seq_length: int | None = None
    # With k mined negatives per example (mine.num_negatives = k >= 2), each epoch pairs an example with one of
    # them in turn (epoch e: negative e mod k) instead of all k at once: k different hard negatives over k
    # epochs at the cost per step of one.
    rotate_negatives: bool = False
    # Keep the input embeddings (token, position, type and their LayerNorm: 12M of MiniLM-L6's 22M weights) as
    # the base model has them. A few hundred training queries update only the rows of the tokens they contain,
    # which moves those tokens away from the corpus tokens that training never sees.
    freeze_embeddings: bool = False
    # Matryoshka representation learning (Kusupati et al., 2022): the loss is summed over these leading slices
    # of each embedding (e.g. [384, 256, 128, 64]), so a truncated vector still ranks well. Must include the
    # model's full dimension, which is what the pipeline encodes with. None: the plain loss.
    matryoshka_dims: tuple[int, ...] | None = None
    # Tail averaging (LAWA, Kaddour 2022; a one-run "model soup"): the saved weights are the mean of the weights
    # at the end of the last N epochs (the final weights count as the last). 1 saves the final weights.
    average_epochs: int = 1
    # Negatives re-mined by the model being trained (ANCE, Xiong et al., 2021, with one refresh): the last N of
    # ``epochs`` train on negatives taken from the model's own ranking at that point, with the mine stage's window
    # and margins, instead of the base model's. One learning-rate schedule and optimizer state span the whole run,
    # so the epochs before the refresh are exactly those of a run without it. Costs one corpus encode. 0: off.
    remine_epochs: int = 0
    # A uniform "model soup" (Wortsman et al., 2022): N training runs that differ only in their seed (``seed``,
    # ``seed`` + 1000, ...: data order and dropout), saved as the element-wise mean of their weights. Costs N
    # times the training time. 1: one run.
    soup: int = 1
    # How many of a soup's runs train at once, each in its own process with an equal share of the CPU cores
    # (``resolve_soup_processes``). ``auto``: all of them side by side on a CPU with a core per run (on the 2-core
    # EPYC two one-thread runs took 18% less time than one two-thread run after the other), one after another on
    # a GPU or with ``remine_epochs``. The runs are the same; only the rounding of a different thread count differs.
    soup_processes: int | str = "auto"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], seed: int) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(params) - known
        if unknown:
            raise ConfigError(f"unknown train parameter(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = {**params, "seed": params.get("seed", seed)}
        directions = values.get("directions", ["query_to_doc"])
        if isinstance(directions, str):
            directions = [directions]
        if not isinstance(directions, (list, tuple)) or not all(isinstance(d, str) for d in directions):
            raise ConfigError(f"train.directions must be a list of names from {DIRECTIONS}, got {directions!r}")
        values["directions"] = tuple(directions)
        dims = values.get("matryoshka_dims")
        if dims is not None:
            if not isinstance(dims, (list, tuple)) or not dims or \
                    not all(_is_whole_number(d, minimum=8) for d in dims) or len(set(dims)) != len(dims):
                raise ConfigError(f"train.matryoshka_dims must be null or a list of distinct whole numbers >= 8 "
                                  f"(e.g. [384, 256, 128, 64]), got {dims!r}")
            values["matryoshka_dims"] = tuple(sorted(dims, reverse=True))
        config = cls(**values)
        if config.loss not in LOSSES:
            raise ConfigError(f"train.loss must be one of {LOSSES}, got {config.loss!r}")
        if config.batch_size < 2:
            raise ConfigError("train.batch_size must be at least 2 (in-batch negatives need company)")
        if config.max_steps is not None and not _is_whole_number(config.max_steps, minimum=1):
            raise ConfigError(f"train.max_steps must be null (no cap) or a whole number >= 1, got {config.max_steps!r}")
        for name in ("attention_dropout", "hidden_dropout"):
            value = getattr(config, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"train.{name} must be null (the model's own) or in [0, 1), got {value!r}")
        config._check_loss_terms()
        length = config.max_seq_length
        if length is not None and not _is_whole_number(length, minimum=16):
            raise ConfigError(f"train.max_seq_length must be null (model.max_seq_length) or a whole number >= 16, "
                              f"got {length!r}")
        if not _is_whole_number(config.average_epochs, minimum=1):
            raise ConfigError(f"train.average_epochs must be a whole number >= 1 (1: the final weights), "
                              f"got {config.average_epochs!r}")
        if not _is_whole_number(config.soup, minimum=1):
            raise ConfigError(f"train.soup must be a whole number >= 1 (training runs averaged; 1: one run), "
                              f"got {config.soup!r}")
        if config.soup_processes != "auto" and not _is_whole_number(config.soup_processes, minimum=1):
            raise ConfigError(f"train.soup_processes must be 'auto' or a whole number >= 1 (soup runs trained at "
                              f"once), got {config.soup_processes!r}")
        if config.remine_epochs and config.soup_processes not in ("auto", 1) and config.soup > 1:
            raise ConfigError("train.remine_epochs re-mines in the stage's own process: set train.soup_processes to "
                              "1 or auto (the soup's runs then train one after another)")
        if not _is_whole_number(config.remine_epochs, minimum=0) or (
                config.remine_epochs and config.remine_epochs >= config.epochs):
            raise ConfigError(f"train.remine_epochs must be a whole number from 0 (off) to below train.epochs "
                              f"({config.epochs}): the epochs before it train on the base model's negatives, "
                              f"got {config.remine_epochs!r}")
        if config.remine_epochs and config.rotate_negatives:
            raise ConfigError("train.remine_epochs and train.rotate_negatives do not combine: set one of them off")
        if config.attention_dropout_heads not in ATTENTION_DROPOUT_HEADS:
            raise ConfigError(f"train.attention_dropout_heads must be one of {ATTENTION_DROPOUT_HEADS}, "
                              f"got {config.attention_dropout_heads!r}")
        for name in ("rotate_negatives", "freeze_embeddings"):
            if not isinstance(getattr(config, name), bool):
                raise ConfigError(f"train.{name} must be true or false, got {getattr(config, name)!r}")
        weight = config.finetuned_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 < weight <= 1.0:
            raise ConfigError(f"train.finetuned_weight must be in (0, 1] (1: the fine-tuned weights as trained; "
                              f"0 would be the base model itself), got {weight!r}")
        return config

    def _check_loss_terms(self) -> None:
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown or "query_to_doc" not in self.directions:
            raise ConfigError(f"train.directions must include query_to_doc and may add {DIRECTIONS[1:]}, "
                              f"got {list(self.directions)!r}")
        if self.partition_mode not in PARTITION_MODES:
            raise ConfigError(f"train.partition_mode must be one of {PARTITION_MODES}, got {self.partition_mode!r}")
        if self.partition_mode == "per_direction" and {"query_to_query", "doc_to_doc"} & set(self.directions):
            raise ConfigError("train.partition_mode=per_direction works with query_to_doc and doc_to_query only "
                              "(the other terms have no positive of their own); use joint")
        if self.hardness_mode is not None and self.hardness_mode not in HARDNESS_MODES:
            raise ConfigError(f"train.hardness_mode must be null or one of {HARDNESS_MODES}, got {self.hardness_mode!r}")
        if isinstance(self.hardness_strength, bool) or not isinstance(self.hardness_strength, (int, float)) \
                or not math.isfinite(self.hardness_strength) or self.hardness_strength < 0:
            raise ConfigError(f"train.hardness_strength must be a finite number >= 0, got {self.hardness_strength!r}")
        if self.loss == "gist" and (self.directions != ("query_to_doc",) or self.partition_mode != "joint"
                                    or self.hardness_mode is not None):
            raise ConfigError("train.loss=gist contrasts query_to_doc only, in one softmax, without hardness "
                              "weighting: leave train.directions, train.partition_mode and train.hardness_mode "
                              "at their defaults")
        if self.hardness_mode is not None and self.hardness_strength == 0:
            raise ConfigError(f"train.hardness_mode={self.hardness_mode} does nothing with hardness_strength 0 "
                              "(EmbeddingGemma used 5 for hard_negatives, LLaVE 9 for in_batch_negatives)")
        if self.hardness_mode is None and self.hardness_strength != 0:
            raise ConfigError(f"train.hardness_strength={self.hardness_strength} does nothing without a "
                              f"train.hardness_mode (one of {HARDNESS_MODES})")


def planned_steps(num_examples: int, config: TrainConfig) -> tuple[int, bool]:
    """Optimizer steps the run will take, and whether ``max_steps`` cut it short of ``epochs`` full epochs.

    One step per batch (the last one may be smaller), ``epochs`` may be fractional as in transformers.
    """
    per_epoch = max(1, math.ceil(num_examples / config.batch_size))
    full = max(1, math.ceil(per_epoch * config.epochs))
    if config.max_steps is not None and config.max_steps < full:
        return config.max_steps, True
    return full, False


ATTENTION_DROPOUT_HEADS = ("each", "shared")
SHARED_DROPOUT_ATTENTION = "embedtune_shared_dropout"


def shared_dropout_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Scaled dot-product attention whose dropout mask is drawn once per (example, query, key) and shared by
    every head, for ``train.attention_dropout_heads=shared``.

    Why: with attention dropout on, PyTorch cannot use its fused CPU attention kernel and draws a Bernoulli mask
    over every (head, query, key) score: 16 x 12 x 256 x 256 draws per layer and document pass, a fifth of a
    training step on the 2-core EPYC (docs/performance.md). One mask for all heads draws a twelfth of that; a
    dropped key is then hidden from every head of that query at once, a coarser regulariser than the model
    was pre-trained with. Same signature and output layout as transformers' attention functions (``query``,
    ``key``, ``value``: batch x heads x length x head size; returns batch x length x heads x head size).
    """
    import torch

    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True: attend
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1)
    if dropout > 0.0 and module.training:
        keep = torch.empty((weights.shape[0], 1, *weights.shape[2:]), dtype=weights.dtype, device=weights.device)
        weights = weights * keep.bernoulli_(1.0 - dropout).div_(1.0 - dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def use_shared_attention_dropout(model: Any) -> Callable[[], None]:
    """Route ``model``'s self-attention through ``shared_dropout_attention``; returns the function that routes it
    back (so the saved config keeps the model's own attention implementation). BERT-style transformers only."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if config is None or config.model_type != "bert":
        kind = getattr(config, "model_type", type(model[0]).__name__)
        raise ConfigError(f"train.attention_dropout_heads=shared is implemented for BERT-style models "
                          f"(model_type bert, as all-MiniLM-L6-v2), not {kind}; set it to 'each'")
    AttentionInterface.register(SHARED_DROPOUT_ATTENTION, shared_dropout_attention)
    # the padding mask as SDPA takes it: boolean, or none at all for a batch without padding
    AttentionMaskInterface.register(SHARED_DROPOUT_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    own = config._attn_implementation
    config._attn_implementation = SHARED_DROPOUT_ATTENTION

    def restore() -> None:
        config._attn_implementation = own

    return restore


def is_attention_dropout(parent: Any) -> bool:
    """True for the dropout inside a self-attention block (BERT, MiniLM, RoBERTa: ``*SelfAttention``; MPNet
    too): the one applied to attention probabilities. Every other ``Dropout`` counts as hidden dropout."""
    return type(parent).__name__.endswith("SelfAttention")


def dropout_modules(model: Any) -> Iterator[tuple[str, Any]]:
    """Every ``Dropout`` module of ``model`` with its kind: "attention" (see ``is_attention_dropout``) or "hidden"."""
    import torch

    for parent in model.modules():
        for module in parent.children():
            if isinstance(module, torch.nn.Dropout):
                yield ("attention" if is_attention_dropout(parent) else "hidden"), module


def set_dropout(model: Any, *, attention: float | None, hidden: float | None) -> dict[str, int]:
    """Override the dropout rates of a loaded model for training; None leaves a kind as the model has it.

    Self-attention modules read their rate from their ``dropout`` module at call time (``self.dropout.p``), so
    changing the module's ``p`` is enough. The saved config keeps the model's published values. Returns how
    many modules of each kind were set; asking for an attention rate on a model with no recognised
    self-attention dropout is a ConfigError rather than a silent no-op.
    """
    changed = {"attention": 0, "hidden": 0}
    for kind, module in dropout_modules(model):
        rate = attention if kind == "attention" else hidden
        if rate is not None:
            module.p = float(rate)
            changed[kind] += 1
    if attention is not None and not changed["attention"]:
        raise ConfigError(
            f"train.attention_dropout={attention}: no self-attention dropout found in this model "
            f"({type(model).__name__} of {', '.join(sorted({type(m).__name__ for m in model.children()}))}); "
            "set it to null to keep the model's own attention dropout")
    return changed


def interpolate_weights(model: Any, base_state: Mapping[str, Any], finetuned_weight: float) -> int:
    """Blend ``model``'s weights in place with a base model's: ``w * fine-tuned + (1 - w) * base`` (WiSE-FT).

    The WiSE-FT paper (Wortsman et al., 2022) found that such a blend keeps most of a fine-tuning gain while
    giving back some of the base model's general skill; on SciFact's dev splits it did not help
    (docs/experiments.md), so the default is 1.0. Only floating-point tensors are blended (integer buffers
    such as position ids are the same in both), and a tensor shared under several names (tied embeddings) is
    blended once. Every name and shape is checked before anything changes. Returns how many tensors were
    blended.
    """
    import torch

    if not 0.0 < finetuned_weight <= 1.0:
        raise ConfigError(f"the fine-tuned weight of a blend must be in (0, 1], got {finetuned_weight!r}")
    pairs, seen = [], set()
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        base = base_state.get(name)
        if base is None or tuple(base.shape) != tuple(tensor.shape):
            found = "has no such tensor" if base is None else f"has shape {tuple(base.shape)}"
            raise ConfigError(f"cannot blend with the base model: tensor {name!r} has shape {tuple(tensor.shape)} "
                              f"here and the base {found}; the fine-tuned model must have been trained from it")
        pairs.append((tensor, base))
    with torch.no_grad():
        for tensor, base in pairs:
            tensor.mul_(finetuned_weight).add_(base.to(tensor.device, tensor.dtype), alpha=1.0 - finetuned_weight)
    return len(pairs)


def build_training_dataset(
    examples: Sequence[MinedExample],
    corpus: Mapping[str, Document],
    queries: Mapping[str, Query],
) -> HFDataset:
    """Columns ``anchor, positive, negative_1..n``: the layout MNRL reads (first column is the query)."""
    from datasets import Dataset as HFDataset

    if not examples:
        raise ConfigError("no training examples: the train split is empty or mining kept no negatives")
    n_neg = len(examples[0].negative_ids)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for k in range(n_neg):
        columns[f"negative_{k + 1}"] = []
    for example in examples:
        columns["anchor"].append(example.query_text or queries[example.query_id].text)
        columns["positive"].append(example.positive_text or corpus[example.positive_id].full_text)
        for k, neg in enumerate(example.negative_ids):
            columns[f"negative_{k + 1}"].append(corpus[neg].full_text)
    return HFDataset.from_dict(columns)


def rotate_negatives(dataset: HFDataset, epochs: float) -> tuple[HFDataset, float]:
    """One copy of ``dataset`` per epoch, copy e keeping only negative column e mod k, and the epochs left.

    ``train.rotate_negatives``: rather than one row with k mined negatives (k + 2 texts through the model per
    row), each of ``ceil(epochs)`` copies pairs every example with a single negative, taken in turn, so that
    over k epochs an example meets each of its k negatives once at the cost per step of one. Returns the
    copies concatenated and the epochs to train over them (``epochs / copies``: 1.0 for whole epochs), so
    the number of optimizer steps is what ``epochs`` over the original rows would take.
    """
    from datasets import concatenate_datasets

    negatives = [c for c in dataset.column_names if c.startswith("negative_")]
    if len(negatives) < 2:
        raise ConfigError(f"train.rotate_negatives takes turns among several mined negatives per example, but the "
                          f"training rows have {len(negatives)}; set mine.num_negatives to 2 or more, or "
                          "train.rotate_negatives to false")
    copies = max(1, math.ceil(epochs))
    parts = []
    for epoch in range(copies):
        keep = negatives[epoch % len(negatives)]
        part = dataset.remove_columns([c for c in negatives if c != keep])
        parts.append(part.rename_column(keep, "negative_1") if keep != "negative_1" else part)
    return concatenate_datasets(parts), epochs / copies


def remine_with_model(
    model: Any,
    examples: Sequence[MinedExample],
    corpus: Mapping[str, Document],
    queries: Mapping[str, Query],
    options: Mapping[str, Any],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
) -> tuple[HFDataset, dict[str, int]]:
    """``examples`` as training rows whose negatives come from ``model``'s own ranking of the corpus
    (``embedtune.mining.remine_examples`` with the mine stage's ``options``): one encode of the corpus and of the
    training queries. Queries are taken from ``example.query_text`` when set (synthetic ones), else ``queries``."""
    from embedtune.embeddings import encode
    from embedtune.mining import remine_examples

    texts: dict[str, str] = {}
    for example in examples:
        texts.setdefault(example.query_id, example.query_text or queries[example.query_id].text)
    query_ids, corpus_ids = sorted(texts), sorted(corpus)
    log.info("re-mining negatives: encoding %d documents and %d queries with the model being trained",
             len(corpus_ids), len(query_ids))
    corpus_vectors = encode(model, [corpus[d].full_text for d in corpus_ids], batch_size=batch_size,
                            precision=precision)
    query_vectors = encode(model, [texts[q] for q in query_ids], batch_size=batch_size, precision=precision,
                           show_progress=False)
    renewed, stats = remine_examples(examples, query_ids, query_vectors, corpus_ids, corpus_vectors, **options)
    log.info("re-mined: %s", stats)
    return build_training_dataset(renewed, corpus, queries), stats


def _precision_flags(precision: str, device: str) -> dict[str, bool]:
    from embedtune.embeddings import resolve_precision

    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return {}
    if precision == "bf16":
        return {"bf16": True}
    if precision == "fp16":
        if device != "cuda":
            raise ConfigError("train.precision fp16 needs CUDA; on CPU use bf16 or fp32")
        return {"fp16": True}
    raise ConfigError(f"train.precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def open_live(live_dir: Path) -> Any:
    """A dvclive logger writing to ``live_dir`` that leaves dvc.yaml and experiments alone.

    The plots are declared in dvc.yaml, so dvclive must not edit it, and the run is already a
    stage of ``dvc repro`` / ``dvc exp run``, so dvclive must not save an experiment of its own.
    dvclive 3.x asks git for HEAD before it checks that the repository has a commit, so in a
    fresh ``git init`` without one it raises scmrepo's "Empty git repo"; the curves do not need
    git, so there they are written without dvclive's repository integration.
    """
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    options = {"dir": str(live_dir), "save_dvc_exp": False, "dvcyaml": None, "report": None}
    try:
        return Live(**options)
    except SCMError as error:
        log.warning("dvclive could not read the git repository (%s): training curves are written to %s "
                    "without dvclive's git integration", error, live_dir)

    class RepositoryFreeLive(Live):
        def _init_dvc(self) -> None:
            self._dvc_file = "dvc.yaml"  # only a name: dvcyaml=None means dvclive never writes it

    return RepositoryFreeLive(**options)


def _epoch_snapshots(model: Any, keep: int):
    """A callback that keeps CPU copies of the weights at the end of the last ``keep`` epochs (and at the end
    of training, when a step cap stops it mid-epoch), for ``average_weights``."""
    from transformers import TrainerCallback

    class EpochSnapshots(TrainerCallback):
        def __init__(self) -> None:
            self.snapshots: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep)

        def _take(self, step: int) -> None:
            if not self.snapshots or self.snapshots[-1][0] != step:
                self.snapshots.append((step, {k: v.detach().to("cpu", copy=True)
                                              for k, v in model.state_dict().items()}))

        def on_epoch_end(self, args, state, control, **kwargs):
            self._take(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self._take(state.global_step)

    return EpochSnapshots()


def average_weights(model: Any, snapshots: Sequence[Mapping[str, Any]]) -> int:
    """Load the element-wise mean of ``snapshots`` (state dicts of ``model``) into ``model``; tensors that are
    not floating point (e.g. position ids) keep the model's own. Returns how many tensors were averaged."""
    import torch

    state = model.state_dict()
    averaged = 0
    for name, tensor in state.items():
        if tensor.is_floating_point():
            mean = torch.stack([snapshot[name].to(torch.float32) for snapshot in snapshots]).mean(dim=0)
            state[name] = mean.to(dtype=tensor.dtype, device=tensor.device)
            averaged += 1
    model.load_state_dict(state)
    return averaged


def _stop_at_step(step: int):
    """A callback that ends training after ``step`` optimizer steps (the scheduler still spans the whole run)."""
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_training_stop = True
            return control

    return StopAtStep()


def _dvclive_callback(live_dir: Path):
    from transformers import TrainerCallback

    class DVCLiveLogger(TrainerCallback):
        """Training curves to dvclive (see ``open_live``)."""

        def __init__(self) -> None:
            self.live = open_live(live_dir)
            # train.remine_epochs: a second trainer continues the run. Its steps, epochs and end-of-training
            # summary (train_runtime, train_loss...) count on from the first trainer's (``earlier``), plus
            # ``pause_seconds`` spent between the two (the re-mining).
            self.final = True  # False while a later trainer will continue the run
            self.earlier = {"steps": 0, "epochs": 0.0, "seconds": 0.0, "samples": 0.0, "loss_sum": 0.0}
            self.pause_seconds = 0.0

        def _whole_run(self, logs: dict, steps: int) -> dict:
            if "train_runtime" not in logs:
                return logs
            runtime = float(logs["train_runtime"])
            if not self.final:  # the first trainer's summary: kept for the second's
                self.earlier = {"steps": steps, "epochs": 0.0, "seconds": runtime,
                                "samples": float(logs.get("train_samples_per_second", 0.0)) * runtime,
                                "loss_sum": float(logs.get("train_loss", 0.0)) * steps}
                return logs
            if not self.earlier["steps"]:
                return logs
            earlier, total_steps = self.earlier, self.earlier["steps"] + steps
            seconds = earlier["seconds"] + self.pause_seconds + runtime
            summary = dict(logs, train_runtime=round(seconds, 4),
                           train_steps_per_second=round(total_steps / seconds, 3))
            if "train_samples_per_second" in logs:
                samples = earlier["samples"] + float(logs["train_samples_per_second"]) * runtime
                summary["train_samples_per_second"] = round(samples / seconds, 3)
            if "train_loss" in logs:
                summary["train_loss"] = (earlier["loss_sum"] + float(logs["train_loss"]) * steps) / total_steps
            summary["remine_seconds"] = self.pause_seconds
            return summary

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            offset = self.earlier["steps"] if self.final else 0
            self.live.step = offset + state.global_step  # before logging: the values belong to this step
            for key, value in self._whole_run(logs, state.global_step).items():
                if isinstance(value, (int, float)) and key not in {"epoch", "total_flos"}:
                    # per-step curves are plotted; end-of-training summaries (train_runtime...) are not
                    self.live.log_metric(f"train/{key}", float(value), plot=key in CURVES)
            self.live.log_metric("epoch", self.earlier["epochs"] * self.final + float(state.epoch or 0.0), plot=False)
            self.live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            if not self.final:  # after the summary log, which reset ``earlier``
                self.earlier["epochs"] = float(state.epoch or 0.0)
            else:
                self.live.end()

    return DVCLiveLogger()


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

    terms = {"scale": config.scale, "directions": config.directions, "partition_mode": config.partition_mode,
             "hardness_mode": config.hardness_mode, "hardness_strength": float(config.hardness_strength)}
    if config.loss == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **terms)
    elif config.loss == "gist":
        if guide is None:
            raise ValueError("train.loss=gist needs a guide model")
        # Only the query-to-document softmax, as plain MNRL with the default directions; an absolute margin of 0
        # drops a candidate the guide scores above the positive. The temperature is MNRL's 1 / scale.
        loss = GISTEmbedLoss(model, guide, temperature=1.0 / config.scale, margin_strategy="absolute", margin=0.0,
                             contrast_anchors=False, contrast_positives=False)
    else:
        loss = MultipleNegativesRankingLoss(model, **terms)
    if config.matryoshka_dims is None:
        return loss
    dimension = model.get_embedding_dimension()
    if dimension not in config.matryoshka_dims or max(config.matryoshka_dims) > dimension:
        raise ConfigError(f"train.matryoshka_dims must include the model's dimension {dimension} (the pipeline "
                          f"encodes with all of it) and nothing larger, got {list(config.matryoshka_dims)}")
    return MatryoshkaLoss(model, loss, matryoshka_dims=list(config.matryoshka_dims))


def freeze_input_embeddings(model: Any) -> int:
    """Stop gradients to the transformer's input embeddings (``train.freeze_embeddings``); returns how many
    weights were frozen. A model without an ``embeddings`` module is a ConfigError rather than a silent no-op."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if ".embeddings." in f".{name}":
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    if not frozen:
        raise ConfigError("train.freeze_embeddings: the model has no parameters under an 'embeddings' module; "
                          "set it to false for this model")
    return frozen


def train_model(
    base_model: str,
    dataset: HFDataset,
    config: TrainConfig,
    output_dir: Path,
    live_dir: Path,
    *,
    max_seq_length: int | None = None,
    device: str = "auto",
    remine: Callable[[Any], HFDataset] | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``base_model`` on ``dataset`` and save it to ``output_dir``; returns training statistics.

    ``threads``: CPU threads for the arithmetic (default: every core this process may use). ``show_progress``:
    the trainer's progress bar.

    ``remine`` (needed when ``config.remine_epochs`` > 0): given the model part-way through training (in eval
    mode, at its encoding length), returns the training rows with negatives mined from its own ranking, same
    rows in the same order (``remine_with_model``).
    """
    if config.remine_epochs and remine is None:
        raise ValueError("train.remine_epochs needs a remine function")
    if config.hardness_mode == "hard_negatives" and len(dataset.column_names) < 3:
        raise ConfigError("train.hardness_mode=hard_negatives weighs mined negatives, but the training rows have "
                          "none (mine.num_negatives=0); use in_batch_negatives or mine negatives")
    if config.loss == "gist" and len(dataset.column_names) > 3:
        raise ConfigError("train.loss=gist takes one mined negative per row (mine.num_negatives <= 1), got "
                          f"{len(dataset.column_names) - 2}")
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import set_seed

    from embedtune.models import load_model, pick_device

    set_seed(config.seed)
    torch.set_num_threads(threads or cpu_cores())
    device = pick_device(device)
    model = load_model(base_model, device=device, max_seq_length=max_seq_length)
    encode_length = model.max_seq_length
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
        log.info("training on texts cut to %d tokens (train.max_seq_length); the saved model encodes up to %d",
                 config.max_seq_length, encode_length)
    changed = set_dropout(model, attention=config.attention_dropout, hidden=config.hidden_dropout)
    if any(changed.values()):
        log.info("dropout set: attention %s on %d modules, hidden %s on %d modules", config.attention_dropout,
                 changed["attention"], config.hidden_dropout, changed["hidden"])
    restore_attention = None
    if config.attention_dropout_heads == "shared":
        restore_attention = use_shared_attention_dropout(model)
        log.info("train.attention_dropout_heads=shared: one attention-dropout mask per example, shared by the heads")
    if config.freeze_embeddings:
        frozen = freeze_input_embeddings(model)
        log.info("train.freeze_embeddings: %.1fM of %.1fM weights kept as the base model has them", frozen / 1e6,
                 sum(p.numel() for p in model.parameters()) / 1e6)
    if config.rotate_negatives:
        negatives = sum(c.startswith("negative_") for c in dataset.column_names)
        dataset, epochs = rotate_negatives(dataset, config.epochs)
        log.info("train.rotate_negatives: each epoch pairs an example with one of its %d mined negatives in turn "
                 "(%d rows over %.3g epochs)", negatives, len(dataset), epochs)
        config = replace(config, epochs=epochs)
    guide = None
    if config.loss == "gist":
        guide = load_model(base_model, device=device, max_seq_length=model.max_seq_length)
        guide.eval()
        guide.requires_grad_(False)
        log.info("train.loss=gist: the base model guides which negatives count (likely false negatives dropped)")
    loss = build_loss(model, config, guide)

    steps, capped = planned_steps(len(dataset), config)
    if capped:
        log.warning("train.max_steps=%d: training on about %d of %d examples x %s epochs (%d steps would be a "
                    "full run); raise or null train.max_steps to use them all", steps, steps * config.batch_size,
                    len(dataset), config.epochs, planned_steps(len(dataset), replace(config, max_steps=None))[0])
    # With re-mining, the first trainer plans the whole run (its scheduler decays over every step) and stops at
    # the refresh; the second continues with the same optimizer and scheduler on the re-mined rows.
    before_refresh = min(steps - 1, max(1, round(steps * (config.epochs - config.remine_epochs) / config.epochs)))
    # The trainer's scratch directory lives inside the output, so a failed or interrupted stage removes it with
    # the staging directory (atomic_directory) instead of leaving it beside the model.
    checkpoints = output_dir / ".trainer"

    def arguments(max_steps: int) -> SentenceTransformerTrainingArguments:
        return SentenceTransformerTrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=config.epochs,
            max_steps=max_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=config.seed,
            data_seed=config.seed,
            logging_steps=config.logging_steps,
            logging_first_step=True,  # even a run shorter than logging_steps has a curve
            save_strategy="no",
            report_to="none",
            use_cpu=device == "cpu",
            dataloader_drop_last=False,
            disable_tqdm=not show_progress,
            **_precision_flags(config.precision, device),
        )

    callbacks = [live := _dvclive_callback(live_dir)]
    if config.average_epochs > 1:
        callbacks.append(snapshots := _epoch_snapshots(model, config.average_epochs))
    if config.remine_epochs:
        live.final = False
    trainer = SentenceTransformerTrainer(
        model=model,
        args=arguments(steps if capped or config.remine_epochs else -1),
        train_dataset=dataset,
        loss=loss,
        callbacks=callbacks + ([_stop_at_step(before_refresh)] if config.remine_epochs else []),
    )
    started, started_at = time.perf_counter(), time.time()
    result = trainer.train()
    history = [h for h in trainer.state.log_history if "loss" in h]
    steps_done, loss_sum = int(result.global_step), float(result.training_loss) * int(result.global_step)
    remine_seconds = None
    if config.remine_epochs:
        refresh_started = time.perf_counter()
        train_length, model.max_seq_length = model.max_seq_length, encode_length
        model.eval()
        dataset = remine(model)
        model.max_seq_length = train_length
        remine_seconds = round(time.perf_counter() - refresh_started, 1)
        log.info("train.remine_epochs=%d: negatives re-mined by the model after %d of %d steps (%.0f s)",
                 config.remine_epochs, steps_done, steps, remine_seconds)
        live.final, live.pause_seconds = True, remine_seconds
        optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
        trainer = SentenceTransformerTrainer(
            model=model,
            args=arguments(steps - steps_done),
            train_dataset=dataset,
            loss=loss,
            callbacks=callbacks,
            # the unwrapped optimizer and scheduler: the new trainer wraps them for its own accelerator
            optimizers=(getattr(optimizer, "optimizer", optimizer), getattr(scheduler, "scheduler", scheduler)),
        )
        result = trainer.train()
        history += [h for h in trainer.state.log_history if "loss" in h]
        steps_done += int(result.global_step)
        loss_sum += float(result.training_loss) * int(result.global_step)
    seconds, ended_at = time.perf_counter() - started, time.time()
    model.max_seq_length = encode_length
    if restore_attention is not None:
        restore_attention()
    if config.average_epochs > 1:
        kept = [state for _, state in snapshots.snapshots]
        if len(kept) < config.average_epochs:
            log.warning("train.average_epochs=%d but training ended after %d epoch end(s): averaging those",
                        config.average_epochs, len(kept))
        average_weights(model, kept)
        log.info("saved weights = mean of the weights at steps %s (train.average_epochs)",
                 ", ".join(str(step) for step, _ in snapshots.snapshots))
    if config.finetuned_weight < 1.0:
        base_state = load_model(base_model, device="cpu").state_dict()
        blended = interpolate_weights(model, base_state, config.finetuned_weight)
        log.info("saved weights = %g x fine-tuned + %g x base (%d tensors, train.finetuned_weight)",
                 config.finetuned_weight, 1.0 - config.finetuned_weight, blended)
    model.save(str(output_dir))
    (live_dir / "plots" / "metrics").mkdir(parents=True, exist_ok=True)  # declared output, even with no curve
    shutil.rmtree(checkpoints, ignore_errors=True)
    stats = {
        "train_seconds": round(seconds, 1),
        "train_interval": (started_at, ended_at),  # wall-clock, to add up runs that train side by side
        "steps": steps_done,
        "capped_by_max_steps": capped,
        "examples": len(dataset),
        "final_loss": round(float(history[-1]["loss"]), 5) if history else None,
        "mean_loss": round(loss_sum / max(1, steps_done), 5),
        "device": device,
    }
    if remine_seconds is not None:
        stats["remine_seconds"] = remine_seconds
    return stats


# Wall-clock measurements in ``train_model``'s stats: they differ between two runs that train the same weights, so
# they stay out of the model directory (whose hash then changes only with the weights) and live in the dvclive
# summary (``metrics/train/metrics.json``: ``train_runtime``, ``remine_seconds``) and the stage's log.
TIMING_STATS = ("train_seconds", "remine_seconds", "train_interval")


SOUP_SEED_STEP = 1000  # run k of a soup trains with seed + (k - 1) x this


MAX_SOUP_PROCESSES = 2  # ``auto`` never trains more runs at once: more than two was not measured
SOUP_PROCESS_MEMORY_GB = 6.0  # peak resident memory of one default training run (MiniLM, batch 16, 256 tokens): 5.5


def resolve_soup_processes(config: TrainConfig, device: str) -> int:
    """How many of a soup's runs train at once (``train.soup_processes``).

    ``auto``: on a CPU with a core for each, two runs at a time when the soup has an even number of runs (an odd
    one left over would train alone on half the cores) and the memory available holds two runs
    (``SOUP_PROCESS_MEMORY_GB`` each); otherwise, on a GPU, with ``remine_epochs`` (its re-mining runs in the
    stage's process) and where processes cannot be spawned, one after another with every core. A number is taken
    as given (at most ``soup``). Why side by side: a training step's non-matmul half (dropout masks, attention
    softmax, optimizer) keeps a second thread idle about a fifth of the time; two one-thread runs on the 2-core
    EPYC took 19% less time than one two-thread run after the other (963 s against 1192 s for the default
    soup; ``python bench/soup_processes.py``, docs/performance.md).
    """
    import multiprocessing

    if config.soup <= 1:
        return 1
    if config.soup_processes != "auto":
        return min(int(config.soup_processes), config.soup)
    if device != "cpu" or config.remine_epochs or "spawn" not in multiprocessing.get_all_start_methods():
        return 1
    processes = min(MAX_SOUP_PROCESSES, config.soup, cpu_cores())
    while config.soup % processes:
        processes -= 1
    available = available_memory_gb()
    if processes > 1 and available is not None and available < processes * SOUP_PROCESS_MEMORY_GB:
        log.info("train.soup_processes=auto: %.1f GB of memory available, under %.0f GB for %d runs side by side: "
                 "training them one after another", available, processes * SOUP_PROCESS_MEMORY_GB, processes)
        return 1
    return processes


def available_memory_gb() -> float | None:
    """The memory the kernel says new work can use (``MemAvailable`` in /proc/meminfo), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def training_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Seconds during which at least one of the runs was training: the length of the union of their (start, end)
    wall-clock intervals. One after another it is their sum; side by side, spawning, loading and saving the models
    are left out as they are for a single run."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def soup_threads(processes: int) -> int:
    """Threads each of ``processes`` side-by-side training runs gets: an equal share of the cores, at least one."""
    return max(1, cpu_cores() // processes)


def _train_soup_run(connection, arguments: tuple, options: dict[str, Any]) -> None:
    """Runs in a spawned process: one soup run (``train_model``), its statistics (or its error) sent back."""
    import signal
    import traceback

    from embedtune.stage import configure_logging, keep_freed_memory, offline_environment

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the stage's handler (run_stage) is the parent's business
    exit_with_parent(signal.SIGTERM)
    offline_environment()
    keep_freed_memory()  # as run_stage does for the stage itself (a spawned process starts afresh)
    configure_logging()
    try:
        connection.send(("done", train_model(*arguments, **options)))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group: the parent stops the soup and says so
    except EmbedtuneError as exc:  # a user error keeps its one clear line
        connection.send(("user-error", str(exc)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):  # the parent may be gone already
            connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


class SoupRunError(EmbedtuneError):
    """A training run of a soup stopped or failed in its own process."""


def _train_side_by_side(runs: list[tuple], options: dict[str, Any], processes: int, *,
                        target: Callable[..., None] | None = None) -> list[dict[str, Any]]:
    """``train_model(*run, **options)`` for every run, ``processes`` at a time, each in a spawned process with
    ``soup_threads(processes)`` threads; only the first shows a progress bar. Returns their statistics in order.
    A run that fails or is killed stops the others and raises, naming it. ``target`` replaces the function a
    process runs (``_train_soup_run``; tests give one that dies or answers at once)."""
    import multiprocessing
    import multiprocessing.connection

    context = multiprocessing.get_context("spawn")  # not fork: the parent may have started OpenMP threads
    threads = soup_threads(processes)
    results: list[dict[str, Any] | None] = [None] * len(runs)
    waiting, pending, workers = list(range(len(runs))), {}, []
    try:
        while waiting or pending:
            while waiting and len(pending) < processes:
                number = waiting.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                worker = context.Process(
                    target=target or _train_soup_run, name=f"soup-run-{number + 1}", daemon=True,
                    args=(sender, runs[number], {**options, "threads": threads, "show_progress": number == 0}))
                worker.start()
                sender.close()
                workers.append(worker)
                pending[receiver] = (number, worker)
            for receiver in multiprocessing.connection.wait(list(pending)):
                number, worker = pending.pop(receiver)
                where = f"soup run {number + 1} of {len(runs)}"
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    worker.join(timeout=5)
                    raise SoupRunError(
                        f"{where} stopped (exit code {worker.exitcode}; -9 is usually the system running out of "
                        "memory): set train.soup_processes=1 to train the runs one after another") from None
                finally:
                    receiver.close()
                if kind == "user-error":
                    raise SoupRunError(f"{where}: {payload}")
                if kind == "error":
                    raise RuntimeError(f"{where} failed:\n{payload}")
                results[number] = payload
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    return results  # type: ignore[return-value]


def train_soup(
    base_model: str,
    dataset: HFDataset,
    config: TrainConfig,
    output_dir: Path,
    live_dir: Path,
    **options: Any,
) -> dict[str, Any]:
    """``train_model`` ``config.soup`` times and save the mean of the runs' weights in ``output_dir`` (with one
    run, exactly ``train_model``). Returns the first run's statistics, with ``train_seconds`` for all runs (their
    wall time when they train side by side) and, for a soup, ``soup``: each run's seed, final and mean loss, and
    how many trained at once.

    Run 1 writes its curves to ``live_dir`` as usual; run k's go beside them (``plots/metrics/soup_run<k>/``),
    and the dvclive summary (``metrics.json``) gains ``soup`` (runs, processes, seconds), so `dvc plots` and
    `dvc metrics` show every run. ``train.soup_processes`` runs train at once, each in its own process
    (``resolve_soup_processes``), the rest one after another; runs k >= 2 train in ``output_dir``'s parent (no
    temp directory elsewhere: a model is ~90 MB).
    """
    import tempfile

    from embedtune.models import load_model, pick_device

    if config.soup == 1:
        return train_model(base_model, dataset, config, output_dir, live_dir, **options)
    processes = resolve_soup_processes(config, pick_device(options.get("device", "auto")))
    with tempfile.TemporaryDirectory(prefix=".soup.", dir=Path(output_dir).parent) as scratch:
        runs = [(base_model, dataset, replace(config, seed=config.seed + SOUP_SEED_STEP * (k - 1)),
                 *((output_dir, live_dir) if k == 1 else (Path(scratch) / f"run{k}", Path(scratch) / f"live{k}")))
                for k in range(1, config.soup + 1)]
        log.info("train.soup=%d: seeds %s, %s", config.soup, ", ".join(str(run[2].seed) for run in runs),
                 "one after another" if processes == 1 else
                 f"{processes} at a time in their own processes, {soup_threads(processes)} thread(s) each")
        if processes == 1:
            stats = []
            for k, run in enumerate(runs, start=1):
                log.info("train.soup=%d: run %d of %d (seed %d)", config.soup, k, config.soup, run[2].seed)
                stats.append(train_model(*run, **options))
        else:
            stats = _train_side_by_side(runs, {k: v for k, v in options.items() if k != "remine"}, processes)
        for k, run in enumerate(runs[1:], start=2):
            shutil.copytree(run[4] / "plots" / "metrics" / "train",
                            Path(live_dir) / "plots" / "metrics" / f"soup_run{k}", dirs_exist_ok=True)
        model = load_model(str(output_dir), device="cpu")
        average_weights(model, [model.state_dict()] + [load_model(str(run[3]), device="cpu").state_dict()
                                                       for run in runs[1:]])
        model.save(str(output_dir))
    seconds = training_seconds([tuple(s["train_interval"]) for s in stats])
    log.info("saved weights = mean of %d runs' (train.soup)", config.soup)
    summary_path = Path(live_dir) / "metrics.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["soup"] = {"runs": config.soup, "processes": processes, "train_runtime": round(seconds, 4)}
    summary_path.write_text(json.dumps(summary, indent=4) + "\n", encoding="utf-8")
    runs_stats = [{"seed": run[2].seed, "final_loss": s["final_loss"], "mean_loss": s["mean_loss"]}
                  for run, s in zip(runs, stats)]
    return {**stats[0], "train_seconds": round(seconds, 1), "soup": runs_stats, "soup_processes": processes}


def write_model_card(
    output_dir: Path,
    *,
    base_model: str,
    data: Mapping[str, Any],
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    model_path: Path | None = None,
) -> None:
    """README.md (human) and embedtune.json (machine) describing how the model was made.

    ``model_path`` is where users load the model from (default ``output_dir``; a stage writing into a staging
    directory passes its final path). Only what the weights depend on is written: the timings in ``metrics``
    (``TIMING_STATS``) and the staging directory's name are left out, so retraining the same weights leaves the
    directory byte-identical and DVC sees nothing new downstream.
    """
    metrics = {k: v for k, v in metrics.items() if k not in TIMING_STATS}
    mined = data.get("hard negatives per example")
    negatives = "in-batch negatives only" if mined == 0 else "in-batch and mined hard negatives"
    weight = float((params.get("train") or {}).get("finetuned_weight", 1.0))
    epochs = int((params.get("train") or {}).get("average_epochs", 1))
    runs = int((params.get("train") or {}).get("soup", 1))
    blend = ("" if runs <= 1 else f" The weights are the mean of {runs} training runs that differ only in their seed "
             "(a model soup).") + (
        "" if epochs <= 1 else f" The fine-tuned weights are the mean of the last {epochs} epochs' ends.") + (
        "" if weight >= 1.0 else
        f" The saved weights blend the two models (WiSE-FT): {weight:g} x fine-tuned + {1 - weight:g} x base.")
    card = [
        "# Fine-tuned embedding model (embedtune)",
        "",
        (f"Base model: `{base_model}`, fine-tuned with contrastive learning (MultipleNegativesRankingLoss over "
         f"{negatives}) by the embedtune pipeline (`dvc repro`).{blend}"),
        "",
        "## Data",
        "",
        *[f"- **{k}**: {v}" for k, v in data.items()],
        "",
        "## Parameters",
        "",
        "```json",
        json.dumps(params, indent=2, sort_keys=True),
        "```",
        "",
        "## Training metrics",
        "",
        *[f"- **{k}**: {v}" for k, v in metrics.items()],
        "",
        ("Retrieval quality on the held-out test split is measured by the `evaluate` stage and kept in "
         "`metrics/finetuned.json` (compared with `metrics/baseline.json` in `metrics/comparison.json`)."),
        "",
        "## Use",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f"model = SentenceTransformer({str(model_path or output_dir)!r})",
        "embeddings = model.encode(['a query'], normalize_embeddings=True)",
        "```",
        "",
    ]
    (output_dir / "README.md").write_text("\n".join(card), encoding="utf-8")
    meta = {"base_model": base_model, "data": dict(data), "params": dict(params), "training_metrics": dict(metrics)}
    (output_dir / "embedtune.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
