"""The corpus encoded in forked processes: the vectors of one process to the bit, and failures named."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.embed import encoder
from embedtune.errors import ConfigError


def _varied_texts(count: int) -> list[str]:
    words = ["vitamin", "fracture", "risk", "cohort", "trial", "insulin", "receptor", "tumour", "growth", "cells", "mice", "dose"]
    return [" ".join(words[(n + k) % len(words)] for k in range(3 + (n * 7) % 40)) + f" {n}" for n in range(count)]


def test_auto_uses_two_processes_only_where_they_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedtune.embed.encoder import resolve_processes

    monkeypatch.setattr(encoder, "cpu_cores", lambda: 2)
    assert resolve_processes("auto", "cpu", 5183, 64) == 2
    assert resolve_processes("auto", "cpu", 400, 64) == 2  # the e2e test's sample corpus: 7 batches
    assert resolve_processes("auto", "cpu", 3 * 64, 64) == 1  # fewer than 2 batches a process
    assert resolve_processes("auto", "cuda:0", 5183, 64) == 1
    assert resolve_processes(3, "cpu", 5183, 64) == 3
    assert resolve_processes(3, "cpu", 100, 64) == 2  # never more processes than batches
    assert resolve_processes(2, "cuda", 5183, 64) == 1  # CUDA does not survive a fork
    monkeypatch.setattr(encoder, "cpu_cores", lambda: 1)
    assert resolve_processes("auto", "cpu", 5183, 64) == 1


@pytest.mark.parametrize("setting", [0, -1, "two", 1.5, True, None])
def test_a_bad_process_count_is_a_config_error(setting) -> None:
    from embedtune.embed.encoder import resolve_processes

    with pytest.raises(ConfigError, match="encode.processes"):
        resolve_processes(setting, "cpu", 5183, 64)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_processes_give_the_vectors_of_one_process_to_the_bit(small_model, precision: str) -> None:
    """Splitting the batches over processes changes no vector, compared at the threads each process has: on some
    CPUs (the AMX Xeon) a GEMM's last bit depends on the thread count, not on how the batches are dealt out."""
    import torch

    from embedtune.embed.encoder import encode_corpus

    texts = _varied_texts(90)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 3))  # what each of the three processes gets
    try:
        one = encoder.encode(small_model, texts, batch_size=8, precision=precision, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    three = encode_corpus(small_model, texts, batch_size=8, precision=precision, processes=3, show_progress=False)
    assert three.dtype == np.float32 and three.shape == one.shape
    assert np.array_equal(three, one)


def test_a_failing_process_stops_the_encode_with_its_traceback(small_model, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedtune.embed.encoder import encode_corpus

    real = encoder.encode

    def fail_on_the_shortest(model, texts, **kwargs):
        if any(text.endswith(" 0") for text in texts):
            raise ValueError("tokenizer exploded")
        return real(model, texts, **kwargs)

    monkeypatch.setattr(encoder, "encode", fail_on_the_shortest)
    with pytest.raises(RuntimeError, match=r"(?s)encoding process \d of 2 failed.*ValueError: tokenizer exploded"):
        encode_corpus(small_model, _varied_texts(60), batch_size=8, processes=2, show_progress=False)


def test_a_killed_process_is_named_with_its_exit_code(small_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from embedtune.embed.encoder import encode_corpus
    from embedtune.workers import WorkerError

    parent = os.getpid()
    real = encoder.encode

    def killed_in_the_child(model, texts, **kwargs):
        if os.getpid() != parent and any(text.endswith(" 1") for text in texts):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(model, texts, **kwargs)

    monkeypatch.setattr(encoder, "encode", killed_in_the_child)
    with pytest.raises(WorkerError, match=r"encoding process \d of 2 stopped \(exit code -9.*encode.processes=1"):
        encode_corpus(small_model, _varied_texts(60), batch_size=8, processes=2, show_progress=False)
