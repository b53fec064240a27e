"""Concurrent queries encoded together: batches form under load, never hold a lone query, and keep each answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedtune.serving.batching import QueryBatcher


def _slow_embed(seen: list[list[str]], seconds: float = 0.02):
    """A stand-in encoder whose vector for a text is its length: answers can be checked against the question."""
    def embed(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        time.sleep(seconds)
        return np.array([[float(len(t))] for t in texts])
    return embed


def test_concurrent_queries_are_encoded_in_batches_and_each_gets_its_own_vector() -> None:
    seen: list[list[str]] = []
    batcher = QueryBatcher(_slow_embed(seen), max_batch=8)
    texts = ["q" * n for n in range(1, 33)]
    start = threading.Barrier(32)

    def one(text: str) -> float:
        start.wait()
        return float(batcher.encode(text)[0])

    try:
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(one, texts))
    finally:
        batcher.close()
    assert answers == [float(len(t)) for t in texts]
    assert max(len(batch) for batch in seen) > 1 and all(len(batch) <= 8 for batch in seen)
    assert sum(size * count for size, count in batcher.batch_sizes.items()) == 32
    assert sorted(t for batch in seen for t in batch) == sorted(texts)  # each query encoded exactly once


def test_a_lone_query_is_encoded_at_once() -> None:
    """One client: every batch is one query and nothing waits for company (the window defaults to 0)."""
    seen: list[list[str]] = []
    batcher = QueryBatcher(_slow_embed(seen, seconds=0.0))
    try:
        started = time.perf_counter()
        for n in range(20):
            batcher.encode(f"query {n}")
        elapsed = time.perf_counter() - started
    finally:
        batcher.close()
    assert batcher.batch_sizes == {1: 20}
    assert elapsed < 2.0  # generous: the point is no per-query timeout wait, not speed


def test_an_encoder_error_reaches_every_query_of_its_batch_and_the_batcher_goes_on() -> None:
    calls = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        if len(calls) == 1:
            raise ValueError("encoder broke")
        return np.ones((len(texts), 1))

    batcher = QueryBatcher(embed)
    try:
        with pytest.raises(ValueError, match="encoder broke"):
            batcher.encode("first")
        assert batcher.encode("second")[0] == 1.0
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode("after close")


@pytest.mark.parametrize(("max_batch", "window_ms"), [(0, 0.0), (4, -1.0)])
def test_bad_settings_are_refused(max_batch: int, window_ms: float) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        QueryBatcher(lambda texts: np.ones((len(texts), 1)), max_batch=max_batch, window_ms=window_ms)
