"""The vector cache: texts already encoded by the same encoder are read back, not encoded again."""

from __future__ import annotations

import numpy as np

from embedtune.embed import cache as cache_module
from embedtune.embed.cache import VectorCache, cache_key


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def test_vectors_come_back_by_text_across_processes_and_new_texts_are_the_missing_ones(tmp_path) -> None:
    cache = VectorCache(tmp_path, "k", dim=8)
    texts, vectors = ["alpha", "beta", "gamma"], _vectors(3)
    cache.add(texts, vectors)
    cache.add(["alpha"], _vectors(1, seed=9))  # already cached: the first vector stays
    reopened = VectorCache(tmp_path, "k", dim=8)  # another process, later
    found, missing = reopened.lookup(["gamma", "delta", "alpha"])
    assert missing == [1] and len(reopened) == 3
    assert np.array_equal(found[0], vectors[2]) and np.array_equal(found[2], vectors[0]) and not found[1].any()


def test_a_write_killed_half_way_leaves_the_cache_readable_and_is_overwritten(tmp_path) -> None:
    cache = VectorCache(tmp_path, "k", dim=8)
    cache.add(["a", "b"], _vectors(2))
    with (tmp_path / "k" / "vectors.f32").open("ab") as handle:  # a vector half written, then a kill
        handle.write(_vectors(1, seed=3).tobytes()[:20])
    with (tmp_path / "k" / "keys.txt").open("a") as handle:  # or a key line half written
        handle.write("3f2a")
    reopened = VectorCache(tmp_path, "k", dim=8)
    assert len(reopened) == 2
    reopened.add(["c"], _vectors(1, seed=4))
    again = VectorCache(tmp_path, "k", dim=8)
    found, missing = again.lookup(["a", "b", "c"])
    assert missing == [] and np.array_equal(found[2], _vectors(1, seed=4)[0])
    assert (tmp_path / "k" / "vectors.f32").stat().st_size == 3 * 8 * 4


def test_only_the_caches_used_last_are_kept(tmp_path, monkeypatch) -> None:
    import os

    monkeypatch.setattr(cache_module, "KEEP", 2)
    for n, key in enumerate(("old", "mid", "new")):
        VectorCache(tmp_path, key, dim=8)
        os.utime(tmp_path / key / "meta.json", (1_000_000 + n, 1_000_000 + n))
    VectorCache(tmp_path, "newest", dim=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "newest"]


def test_the_key_names_what_a_vector_depends_on() -> None:
    base = cache_key("f" * 64, precision="bf16", max_seq_length=256, prompt="")
    assert base == cache_key("f" * 64, precision="bf16", max_seq_length=256, prompt="")
    assert len({base, cache_key("e" * 64, precision="bf16", max_seq_length=256, prompt=""),
                cache_key("f" * 64, precision="fp32", max_seq_length=256, prompt=""),
                cache_key("f" * 64, precision="bf16", max_seq_length=128, prompt=""),
                cache_key("f" * 64, precision="bf16", max_seq_length=256, prompt="passage: ")}) == 5
