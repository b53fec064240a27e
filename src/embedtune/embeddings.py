"""Encoding texts and storing the corpus embeddings as a stage output.

The corpus is encoded once per model per run; the arrays (with their ids) are DVC outputs that mining,
evaluation and reindexing all read, so no stage encodes the corpus a second time. Beside each document's own
vector (``embeddings.npy``, ``ids.json``), documents longer than the model reads get a second one for their title
and last tokens (``tail_views``; saved as ``views.npy`` with their owners' ids in ``view_ids.json``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedtune.errors import ConfigError, EmbedtuneError, InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROBE_MARGIN = 1.15  # bf16 must be this much faster than fp32 to be chosen: ties go to the exact one
PROBE_TEXTS = 16
MIN_BATCHES_PER_PROCESS = 2  # below this, ``processes: auto`` encodes in one process (a fork costs ~0.1 s, a batch ~1 s)

log = logging.getLogger(__name__)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 / AMX), so autocast pays off."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` without measuring: bf16 on CUDA with bf16 support or on a CPU with native bf16 instructions,
    fp16 on other CUDA, else fp32. Encoding measures instead (``choose_encode_precision``): native bf16
    instructions do not make bf16 faster on every CPU."""
    import torch

    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def probe_precision(run: Callable[[str], object], *, rounds: int = 2,
                    margin: float = PROBE_MARGIN) -> tuple[str, dict[str, float]]:
    """Time ``run("fp32")`` and ``run("bf16")`` (after one warm-up call each, alternating, best of ``rounds``)
    and return the precision to use with the timings. bf16 wins only when at least ``margin`` times faster.

    Why measure: bf16 autocast encoded SciFact 2x faster than fp32 on an AMD EPYC with AVX-512 BF16 and on an
    Intel Xeon with AMX, but 1.5x *slower* on the same Xeon model with AMX hidden from the VM, although it still
    reports AVX-512 BF16 (2026-11-27). The CPU flags do not tell these apart; a few seconds of timing does.
    """
    for precision in ("fp32", "bf16"):
        run(precision)
    best = {"fp32": math.inf, "bf16": math.inf}
    for _ in range(rounds):
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            run(precision)
            best[precision] = min(best[precision], time.perf_counter() - started)
    choice = "bf16" if best["fp32"] >= margin * best["bf16"] else "fp32"
    return choice, {k: round(v, 3) for k, v in best.items()}


def choose_encode_precision(model: SentenceTransformer, texts: Sequence[str], precision: str) -> str:
    """The precision to encode ``texts`` with: the configured one, or for ``auto`` on a CPU with bf16
    instructions, whichever of fp32 and bf16 encodes a sample of these texts faster (``probe_precision``).
    The sample is ``PROBE_TEXTS`` texts of median length, so the probe costs a few seconds."""
    if precision not in PRECISIONS:
        raise ConfigError(f"encode.precision must be one of {PRECISIONS}, got {precision!r}")
    device = str(model.device)
    if precision != "auto" or device.startswith("cuda") or not cpu_has_fast_bf16() or len(texts) < 2 * PROBE_TEXTS:
        return resolve_precision(precision, device)
    by_length = sorted(texts, key=len)
    middle = len(by_length) // 2
    sample = by_length[middle - PROBE_TEXTS // 2: middle + PROBE_TEXTS // 2]

    def run(candidate: str) -> None:
        encode(model, sample, batch_size=PROBE_TEXTS, precision=candidate, show_progress=False)

    choice, seconds = probe_precision(run)
    log.info("encode precision auto -> %s (%d median-length texts: fp32 %.2f s, bf16 %.2f s; bf16 needs %.2fx)",
             choice, len(sample), seconds["fp32"], seconds["bf16"], PROBE_MARGIN)
    return choice


def matching_precision(configured: str, corpus_meta: dict) -> str:
    """Precision for queries searched against stored corpus vectors: with ``auto``, the one the corpus was
    encoded with (its meta.json), so queries and documents go through the same arithmetic."""
    if configured == "auto" and corpus_meta.get("precision") in PRECISIONS:
        return str(corpus_meta["precision"])
    return configured


def _autocast(model: SentenceTransformer, precision: str):
    import torch

    precision = resolve_precision(precision, str(model.device))
    if precision not in PRECISIONS:
        raise ConfigError(f"encode.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = "cuda" if str(model.device).startswith("cuda") else "cpu"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device_type == "cpu" and dtype == torch.float16:
        raise ConfigError("encode.precision fp16 is for CUDA; on CPU use bf16 or fp32")
    return torch.autocast(device_type, dtype=dtype)


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    show_progress: bool = True,
) -> np.ndarray:
    """Unit-normalised float32 embeddings, one row per text (length-sorted batching is done by the library)."""
    import torch

    with torch.inference_mode(), _autocast(model, precision):
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    return np.asarray(vectors, dtype=np.float32)


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_processes(setting: int | str, device: str, texts: int, batch_size: int) -> int:
    """How many processes encode the corpus (``encode.processes``).

    ``auto``: two on a Linux CPU with at least two cores when each process gets at least
    ``MIN_BATCHES_PER_PROCESS`` batches, else one. A number is taken as given, except that CUDA and systems
    without ``fork`` always encode in this process. Why two: on the 2-core EPYC, two forked processes of one
    thread each encoded the SciFact corpus 4-7% faster than one process with two threads (the non-matmul half
    of the model parallelises badly over two threads), with the same vectors to the bit
    (``python bench/encode_processes.py``, docs/performance.md). More than two was not measured.
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
    character length, longest first, cut into ``batch_size`` slices. Encoding these batches one by one gives
    the vectors of one ``encode`` call over all texts to the bit: a text's vector depends on the batch it is
    padded with, not on which process computes it."""
    order = np.argsort([-len(text) for text in texts])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def _encode_share(model: SentenceTransformer, texts: Sequence[str], batches: list[np.ndarray], *, batch_size: int,
                  precision: str, threads: int, connection) -> None:
    """Runs in a forked process: encode ``batches`` with ``threads`` threads, sending each batch's vectors back."""
    import signal

    import torch

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the stage's handler (run_stage) is the parent's business
    exit_with_parent(signal.SIGTERM)
    try:
        torch.set_num_threads(threads)
        for number, batch in enumerate(batches):
            vectors = encode(model, [texts[i] for i in batch], batch_size=batch_size, precision=precision,
                             show_progress=False)
            connection.send(("batch", number, vectors))
        connection.send(("done", None, None))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group: the parent stops the encode and says so
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):  # the parent may be gone already
            connection.send(("error", None, traceback.format_exc()))
    finally:
        connection.close()


def exit_with_parent(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so an
    encoding process does not outlive a stage that was killed."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class EncodeProcessError(EmbedtuneError):
    """An encoding process stopped without finishing its share."""


def encode_corpus(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    processes: int = 1,
    show_progress: bool = True,
) -> np.ndarray:
    """``encode`` for a whole corpus, in ``processes`` forked processes that share the loaded model.

    Each process takes every ``processes``-th of the batches that one ``encode`` call would form
    (``length_sorted_batches``) and uses its share of the CPU threads, so the vectors equal one process's to
    the bit. The model is shared copy-on-write; each process holds its own activations (~1 GB at batch 64 and
    256 tokens). A process that fails or is killed stops the encode with an error naming it.
    """
    if processes <= 1:
        return encode(model, texts, batch_size=batch_size, precision=precision, show_progress=show_progress)
    import torch
    from tqdm import tqdm

    batches = length_sorted_batches(texts, batch_size)
    shares = [batches[k::processes] for k in range(processes)]
    threads = max(1, torch.get_num_threads() // processes)
    context = multiprocessing.get_context("fork")
    vectors = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    workers, pending, progress = [], {}, None
    try:
        for number, share in enumerate(shares):
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(target=_encode_share, args=(model, texts, share), daemon=True,
                                     kwargs={"batch_size": batch_size, "precision": precision, "threads": threads,
                                             "connection": sender}, name=f"encode-{number + 1}")
            worker.start()
            sender.close()
            workers.append(worker)
            pending[receiver] = (number, share)
        # created after the forks, so that no process starts while the bar's monitor thread holds a lock
        progress = tqdm(total=len(texts), desc="Encoding", unit="doc", disable=not show_progress)
        while pending:
            for receiver in multiprocessing.connection.wait(list(pending)):
                number, share = pending[receiver]
                try:
                    kind, batch, payload = receiver.recv()
                except EOFError:
                    workers[number].join(timeout=5)
                    raise EncodeProcessError(
                        f"encoding process {number + 1} of {processes} stopped (exit code {workers[number].exitcode}; "
                        "-9 is usually the system running out of memory): set encode.processes=1 to encode in "
                        "one process") from None
                if kind == "batch":
                    vectors[share[batch]] = payload
                    progress.update(len(share[batch]))
                elif kind == "error":
                    raise RuntimeError(f"encoding process {number + 1} of {processes} failed:\n{payload}")
                else:
                    del pending[receiver]
                    receiver.close()
    finally:
        if progress is not None:
            progress.close()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    return vectors


MIN_TAIL_TOKENS = 16  # a tail view shorter than this (a title filling the window) is not worth a vector


def whole_words(text: str, start: int, end: int | None = None) -> str:
    """``text[start:end]`` without partial words, stripped: a start inside a word moves forward past it, an end
    inside a word moves forward to the word's end (a token's offsets can fall inside a word)."""
    end = len(text) if end is None else end
    while 0 < start < len(text) and not text[start - 1].isspace():
        start += 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end].strip()


def tail_views(titles: Sequence[str], bodies: Sequence[str], tokenizer, *, max_seq_length: int,
               tail_tokens: int) -> tuple[list[int], list[str]]:
    """A second view of every document the model would truncate: its title and the last tokens of its body.

    A model reads only the first ``max_seq_length`` tokens of a document; on SciFact 71% of the abstracts are
    longer, and what a claim is about (the finding) is usually in the abstract's last sentences. The view is
    ``title + " " + tail``, the tail being at most ``tail_tokens`` tokens, cut at a word boundary, so that the
    view fits the window with the title. Returns the indices of the documents that got a view and the views'
    texts; documents that fit the window, or whose title leaves under ``MIN_TAIL_TOKENS`` for the tail, get none.
    """
    if isinstance(tail_tokens, bool) or not isinstance(tail_tokens, int) or tail_tokens < 0:
        raise ConfigError(f"encode.tail_tokens must be a whole number >= 0 (0: no tail views), got {tail_tokens!r}")
    if tail_tokens == 0:
        return [], []
    budget = max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
    full = [f"{title} {body}".strip() if title else body for title, body in zip(titles, bodies)]
    full_lengths = [len(ids) for ids in tokenizer(full, add_special_tokens=False, verbose=False)["input_ids"]]
    long = [i for i, length in enumerate(full_lengths) if length > budget]
    if not long:
        return [], []
    title_lengths = [len(ids) for ids in tokenizer([titles[i] for i in long], add_special_tokens=False, verbose=False)["input_ids"]]
    encoded = tokenizer([bodies[i] for i in long], add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)
    indices, views = [], []
    for row, i in enumerate(long):
        keep = min(tail_tokens, budget - title_lengths[row])
        offsets = encoded["offset_mapping"][row]
        if keep < MIN_TAIL_TOKENS or not offsets:
            continue
        tail = whole_words(bodies[i], offsets[max(0, len(offsets) - keep)][0])
        if not tail:
            continue
        indices.append(i)
        views.append(f"{titles[i]} {tail}".strip() if titles[i] else tail)
    return indices, views


@dataclass(frozen=True)
class ExtraViews:
    """More vectors for some documents (their tail views, ``tail_views``): ``vectors[i]`` belongs to the
    document in row ``owners[i]`` of the corpus arrays. A document scores as the best of its vectors (MaxP)."""

    owners: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.owners)


def encode_tail_views(model: SentenceTransformer, titles: Sequence[str], bodies: Sequence[str], *, tail_tokens: int,
                      encode_texts: Callable[[list[str]], np.ndarray]) -> ExtraViews | None:
    """The tail views (``tail_views``) of the documents ``model`` would truncate, encoded with ``encode_texts``
    (so a caller picks its precision and processes); None when no document needs one or ``tail_tokens`` is 0."""
    owners, texts = tail_views(titles, bodies, model.tokenizer, max_seq_length=model.max_seq_length,
                               tail_tokens=tail_tokens)
    if not texts:
        return None
    log.info("%d of %d documents are longer than the model's %d-token window: encoding a tail view of each too "
             "(title + last %d tokens)", len(texts), len(titles), model.max_seq_length, tail_tokens)
    return ExtraViews(np.array(owners, dtype=np.int64), encode_texts(texts))


def save_embeddings(directory: Path, ids: Sequence[str], vectors: np.ndarray, meta: dict,
                    views: ExtraViews | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "embeddings.npy", vectors)
    (directory / "ids.json").write_text(json.dumps(list(ids)), encoding="utf-8")
    meta = {**meta, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1])}
    if views is not None and len(views):
        np.save(directory / "views.npy", np.asarray(views.vectors, dtype=np.float32))
        (directory / "view_ids.json").write_text(json.dumps([ids[i] for i in views.owners]), encoding="utf-8")
        meta["views"] = len(views)
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_embeddings(directory: Path) -> tuple[list[str], np.ndarray, dict]:
    directory = Path(directory)
    try:
        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
        vectors = np.load(directory / "embeddings.npy")
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"embeddings are incomplete ({exc.filename} missing): rerun the embed stage", path=directory) from None
    if len(ids) != vectors.shape[0]:
        raise InputError(f"{len(ids)} ids but {vectors.shape[0]} vectors: rerun the embed stage", path=directory)
    return ids, vectors.astype(np.float32, copy=False), meta


def view_layout(meta: dict) -> str:
    """A name for how the embed stage read the documents (its ``meta.json``): ``""`` for one vector per document,
    ``tail128`` when long ones also got a vector for their title and last 128 tokens. Index versions are
    named by it (``index.table_for``)."""
    tail_tokens = int(meta.get("tail_tokens") or 0)
    return f"tail{tail_tokens}" if tail_tokens > 0 else ""


def load_views(directory: Path, ids: Sequence[str]) -> ExtraViews | None:
    """The extra (tail) views saved beside the corpus vectors, or None when the embed stage made none."""
    directory = Path(directory)
    if not (directory / "views.npy").exists():
        return None
    try:
        view_ids = json.loads((directory / "view_ids.json").read_text(encoding="utf-8"))
        vectors = np.load(directory / "views.npy").astype(np.float32, copy=False)
    except FileNotFoundError as exc:
        raise InputError(f"embeddings are incomplete ({exc.filename} missing): rerun the embed stage", path=directory) from None
    row = {d: i for i, d in enumerate(ids)}
    unknown = [d for d in view_ids if d not in row]
    if unknown or len(view_ids) != vectors.shape[0]:
        raise InputError(f"views do not match the corpus vectors ({len(unknown)} unknown ids, {len(view_ids)} ids for "
                         f"{vectors.shape[0]} vectors): rerun the embed stage", path=directory)
    return ExtraViews(np.array([row[d] for d in view_ids], dtype=np.int64), vectors)