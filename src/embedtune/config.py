"""Parameters: ``params.yaml`` composed from ``conf/`` by Hydra, read by the stages and checked against a schema.

``dvc exp run`` composes params.yaml itself; ``dvc repro`` reads it as committed. After editing ``conf/``,
run ``python -m embedtune.config`` (optionally with Hydra overrides such as ``data=scifact_sample``) so
``dvc repro`` sees the change, and commit the result. Every group's keys are checked against ``SCHEMA``
when params.yaml is read, so a misspelt key (``data.sample_queris``) is an error naming it, never a default
silently used instead.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from embedtune.errors import ConfigError

CONFIG_DIR = Path("conf")
CONFIG_NAME = "config"
PARAMS_FILE = Path("params.yaml")

# The keys of each parameter group (a nested mapping is a sub-group); conf/config.yaml documents each one.
SCHEMA: dict[str, Any] = {
    "seed": None,
    "data": {"name", "source", "sample_queries", "sample_documents"},
    "model": {"name", "base", "max_seq_length"},
    "prepare": {"near_duplicate_threshold": None, "max_document_chars": None,
                "clicks": {"min_clicks", "max_searches_per_session", "max_clicks_per_search",
                           "skip_above_negatives"},
                "documents": {"strict", "max_file_mb", "chunk_tokens", "overlap_tokens"}},
    "split": {"use_source_split", "test_fraction", "near_duplicate_threshold", "leakage_policy", "min_train_pairs",
              "dev_fraction"},
    "encode": {"batch_size", "precision", "processes", "tail_tokens", "cache"},
    "mine": {"num_negatives", "range_min", "range_max", "relative_margin", "absolute_margin", "sampling",
             "extend_window"},
    "synthetic": {"enabled": None, "generator": None, "documents": None, "per_document": None,
                  "max_documents": None, "round_trip_top_k": None, "ict_remove_sentence": None, "test_queries": None,
                  "llm": {"base_url", "model", "api_key_env", "requests_per_second", "max_retries", "timeout_s",
                          "cache_dir"}},
    "sources": {"labelled", "synthetic"},
    "train": {"epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "loss", "mini_batch_size",
              "scale", "precision", "logging_steps", "budget_minutes", "max_examples", "checkpoint_minutes",
              "directions", "partition_mode", "hardness_mode",
              "hardness_strength", "matryoshka_dims", "soup", "soup_processes", "distributed"},
    "evaluate": {"top_k", "primary_metric", "lexical_weight", "general_models"},
    "reindex": {"min_improvement", "max_p_value", "force", "keep_last", "hnsw_m", "hnsw_ef_construction", "ef_search",
                "maintenance_work_mem", "vector_type"},
    "learning_curve": {"fractions", "draws"},
}


def check_params(params: Mapping[str, Any], schema: Mapping[str, Any] = SCHEMA, prefix: str = "",
                 source: Path = PARAMS_FILE) -> None:
    """Raise a ConfigError for the first key that no group of ``schema`` knows (nested groups included)."""
    known = schema if isinstance(schema, Mapping) else dict.fromkeys(schema)
    for key, value in params.items():
        name = f"{prefix}{key}"
        if key not in known:
            where = f"group {prefix[:-1]!r}" if prefix else "the top level"
            raise ConfigError(f"{source}: unknown parameter {name!r} in {where}; known: {', '.join(sorted(known))} "
                              "(see conf/config.yaml)")
        if isinstance(known[key], (Mapping, set)):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {name!r} must be a group of parameters, got {value!r}")
            check_params(value, known[key], f"{name}.", source)


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as a dict, checked against ``SCHEMA``."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            params = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run from the project root") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of parameter groups")
    check_params(params, source=Path(path))
    return params


def get(params: Mapping[str, Any], dotted: str, default: Any = ...) -> Any:
    """``get(params, "train.epochs")``; a missing key without default is a clear ConfigError."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise ConfigError(f"parameter {dotted!r} is missing from {PARAMS_FILE}")
        node = node[part]
    return node


def compose_params(overrides: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> str:
    """The YAML text Hydra composes from ``config_dir`` with ``overrides`` (resolved, like DVC)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    try:
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except Exception as exc:  # noqa: BLE001 - Hydra, OmegaConf and YAML each raise their own types for a bad config
        raise ConfigError(f"{config_dir}: cannot compose the parameters: {exc}") from None
    return OmegaConf.to_yaml(cfg)


def main(argv: Sequence[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    text = compose_params(overrides)
    check_params(yaml.safe_load(text), source=CONFIG_DIR / f"{CONFIG_NAME}.yaml")
    PARAMS_FILE.write_text(text, encoding="utf-8")
    print(f"params.yaml composed from {CONFIG_DIR}/{CONFIG_NAME}.yaml" + (f" with {' '.join(overrides)}" if overrides else ""))


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
