"""Encoding texts into unit vectors, and a whole corpus in several processes with one process's batches.

Queries and documents are encoded in their *role*: a model that declares prompts in its sentence-transformers
config (``config_sentence_transformers.json``: ``{"prompts": {"query": "query: ", "document": "passage: "}}``, as
e5, bge and gte models do) gets its query prompt before every query and its document prompt before every
document (:func:`prompt_name`), in every stage and in the service; a model without prompts is encoded as is.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embedtune.embed.precision import (
    PRECISIONS,
    PROBE_MARGIN,
    autocast,
    cpu_has_fast_bf16,
    probe_precision,
    resolve_precision,
)
from embedtune.embed.window import clip_head, window_chars
from embedtune.errors import ConfigError
from embedtune.workers import Job, cpu_cores, run_workers

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PROBE_TEXTS = 16
ROLES = ("query", "document")
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")  # the names sentence-transformers' encode_document tries
MIN_BATCHES_PER_PROCESS = 2  # below this, ``processes: auto`` encodes in one process (a fork costs ~0.1 s, a batch ~1 s)

log = logging.getLogger(__name__)


def prompt_for(prompts: Mapping[str, str], role: str) -> str | None:
    """The name of the prompt in ``prompts`` (a model's declared prompts, by name) for ``role`` (``query`` or
    ``document``; for documents the first of ``DOCUMENT_PROMPT_NAMES`` declared), or None when there is none."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    names = ("query",) if role == "query" else DOCUMENT_PROMPT_NAMES
    return next((name for name in names if prompts.get(name)), None)


def prompt_name(model: SentenceTransformer, role: str) -> str | None:
    """The name of the model's own prompt for ``role`` (``prompt_for``), or None when it declares none (then
    nothing is prepended)."""
    return prompt_for(getattr(model, "prompts", None) or {}, role)


def prompt_text(model: SentenceTransformer, role: str) -> str:
    """The text prepended to a ``role`` text ("" without a prompt), e.g. for training columns and exports."""
    name = prompt_name(model, role)
    return model.prompts[name] if name else ""


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    role: str = "query",
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> np.ndarray:
    """Unit-normalised float32 embeddings, one row per text (length-sorted batching is done by the library), each
    text encoded in its ``role`` (with the model's prompt for it, if any). Each text is cut to what the model's
    window can read (``embed.window``): the same tokens at a bounded cost."""
    import torch

    window = window_chars(model.max_seq_length)
    name = prompt_name(model, role)
    options = {"prompt_name": name} if name else {}
    with torch.inference_mode(), autocast(str(model.device), precision):
        vectors = model.encode([clip_head(text, window) for text in texts], batch_size=batch_size,
                               show_progress_bar=show_progress, convert_to_numpy=True, normalize_embeddings=True,
                               **options)
    return np.asarray(vectors, dtype=np.float32)


def choose_encode_precision(model: SentenceTransformer, texts: Sequence[str], precision: str) -> str:
    """The precision to encode ``texts`` with: the configured one, or for ``auto`` on a CPU that reports bf16,
    whichever of fp32 and bf16 encodes ``PROBE_TEXTS`` median-length texts of these faster (a few seconds)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"encode.precision must be one of {PRECISIONS}, got {precision!r}")
    device = str(model.device)
    if precision != "auto" or device.startswith("cuda"):
        return resolve_precision(precision, device)
    if not cpu_has_fast_bf16():
        return "fp32"
    if len(texts) < 2 * PROBE_TEXTS:
        return "bf16"
    by_length = sorted(texts, key=len)
    middle = len(by_length) // 2
    sample = by_length[middle - PROBE_TEXTS // 2: middle + PROBE_TEXTS // 2]

    def run(candidate: str) -> None:
        encode(model, sample, role="document", batch_size=PROBE_TEXTS, precision=candidate, show_progress=False)

    choice, seconds = probe_precision(run)
    log.info("encode precision auto -> %s (%d median-length texts: fp32 %.2f s, bf16 %.2f s; bf16 needs %.2fx)",
             choice, len(sample), seconds["fp32"], seconds["bf16"], PROBE_MARGIN)
    return choice


def resolve_processes(setting: int | str, device: str, texts: int, batch_size: int) -> int:
    """How many processes encode the corpus (``encode.processes``).

    ``auto``: two on a Linux CPU with at least two cores when each process gets at least
    ``MIN_BATCHES_PER_PROCESS`` batches, else one. Why: the non-matmul half of a transformer layer spreads badly
    over threads, so two one-thread processes keep two cores busier than one two-thread process. A number is
    taken as given, except that CUDA and systems without ``fork`` always encode in this process.
    """
    if setting == "auto":
        wanted = 2 if cpu_cores() >= 2 and texts >= 2 * MIN_BATCHES_PER_PROCESS * batch_size else 1
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        wanted = setting
    else:
        raise ConfigError(f"encode.processes must be a whole number >= 1 or 'auto', got {setting!r}")
    if wanted > 1 and (device.startswith("cuda") or platform.system() != "Linux"
                       or "fork" not in multiprocessing.get_all_start_methods()):
        return 1
    return min(wanted, max(1, math.ceil(texts / batch_size)))


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """The batches (as indices into ``texts``) that sentence-transformers' ``encode`` forms: texts sorted by
    character length, longest first, cut into ``batch_size`` slices. Encoding these batches one by one pads each
    text with the same neighbours as one ``encode`` call over all texts, so with the same threads per process
    the vectors are that call's to the bit (a GEMM's last bit can depend on its thread count on some CPUs)."""
    order = np.argsort([-len(text) for text in texts])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def _encode_batches(model: SentenceTransformer, texts: Sequence[str], batches: list[np.ndarray], *, batch_size: int,
                    precision: str, threads: int, emit: Callable[[object], None]) -> None:
    """In a forked worker: encode ``batches`` with ``threads`` threads, emitting (batch number, vectors)."""
    import torch

    torch.set_num_threads(threads)
    for number, batch in enumerate(batches):
        emit((number, encode(model, [texts[i] for i in batch], role="document", batch_size=batch_size,
                             precision=precision, show_progress=False)))


def encode_corpus(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    processes: int = 1,
    show_progress: bool = True,
) -> np.ndarray:
    """``encode`` for a whole corpus (documents: the model's document prompt, if any), in ``processes`` forked
    processes that share the loaded model.

    Each process takes every ``processes``-th of the batches that one ``encode`` call would form
    (``length_sorted_batches``) and uses its share of the CPU threads, so the vectors are one process's up to
    the last bit that a thread count can change. The model is shared copy-on-write; each process holds its own
    activations (~1 GB at batch 64 and 256 tokens).
    """
    if processes <= 1:
        return encode(model, texts, role="document", batch_size=batch_size, precision=precision,
                      show_progress=show_progress)
    import torch
    from tqdm import tqdm

    window = window_chars(model.max_seq_length)
    texts = [clip_head(text, window) for text in texts]  # sorted by the lengths ``encode`` sorts by

    batches = length_sorted_batches(texts, batch_size)
    shares = [batches[k::processes] for k in range(processes)]
    options = {"batch_size": batch_size, "precision": precision, "threads": max(1, torch.get_num_threads() // processes)}
    jobs = [Job(f"encoding process {k + 1} of {processes}", _encode_batches, (model, texts, share), options)
            for k, share in enumerate(shares)]
    vectors = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    progress: list[tqdm] = []

    def receive(job: int, item: tuple[int, np.ndarray]) -> None:
        if not progress:  # created after the forks: no process starts while the bar's monitor thread holds a lock
            progress.append(tqdm(total=len(texts), desc="Encoding", unit="doc", disable=not show_progress))
        rows = shares[job][item[0]]
        vectors[rows] = item[1]
        progress[0].update(len(rows))

    try:
        run_workers(jobs, start_method="fork", at_once=processes, on_item=receive,
                    hint="set encode.processes=1 to encode in one process")
    finally:
        for bar in progress:
            bar.close()
    return vectors
