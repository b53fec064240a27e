"""Encoding costs what the window reads: a huge document is cut before it is tokenised, to the same tokens."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.embed.window import CHARS_PER_TOKEN, clip_head, clip_tail, window_chars

WORDS = "Vitamin D supplementation reduced hip fractures in older adults by a third across trials."


def huge_document(megabytes: float) -> str:
    """An abstract-like text of about ``megabytes`` MB, its last sentence different from the rest."""
    return " ".join([WORDS] * int(megabytes * 1e6 / (len(WORDS) + 1))) + " Insulin resistance was the finding."


@pytest.mark.parametrize(("text", "limit", "head", "tail"), [
    ("alpha beta gamma", 100, "alpha beta gamma", "alpha beta gamma"),  # short: the text itself
    ("alpha beta gamma", 12, "alpha beta", "beta gamma"),               # cut on the space, no partial word
    ("alpha\nbeta gamma", 7, "alpha", "gamma"),                         # a newline is a cut too
    ("x" * 40, 10, "x" * 10, "x" * 10),                                 # no whitespace at all: cut anywhere
])
def test_clips_cut_at_whitespace_within_the_limit(text: str, limit: int, head: str, tail: str) -> None:
    assert clip_head(text, limit) == head and clip_tail(text, limit) == tail
    assert len(clip_head(text, limit)) <= limit and len(clip_tail(text, limit)) <= limit
    assert clip_head(clip_head(text, limit), limit) == clip_head(text, limit)  # idempotent: encode re-clips


def test_a_huge_document_is_tokenised_only_as_far_as_the_window_reads(small_model, monkeypatch) -> None:
    """Encoding a 2 MB document hands the tokenizer at most the window's characters, and its vector is the one of
    its first 20,000 characters (the same first tokens): before, the whole text was tokenised, then truncated."""
    from embedtune.embed import encoder

    text = huge_document(2)
    seen: list[int] = []
    kind = type(small_model.tokenizer)
    call = kind.__call__

    def spy(self, text, *args, **kw):
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
        return call(self, text, *args, **kw)

    monkeypatch.setattr(kind, "__call__", spy)
    vector = encoder.encode(small_model, [text], batch_size=1, show_progress=False)
    assert seen and max(seen) <= window_chars(small_model.max_seq_length) == small_model.max_seq_length * CHARS_PER_TOKEN
    monkeypatch.setattr(kind, "__call__", call)
    start = encoder.encode(small_model, [text[:20_000]], batch_size=1, show_progress=False)
    np.testing.assert_array_equal(vector, start)


def test_a_huge_documents_tail_view_reads_only_its_end(small_model) -> None:
    """The tail view of a 2 MB document is the one of its last 20,000 characters, and finding it tokenises no more
    than the window's characters of any text."""
    from embedtune.embed.views import tail_views

    text = huge_document(2)
    seen: list[int] = []

    def tokenizer(texts, **kw):
        seen.extend(map(len, texts))
        return small_model.tokenizer(texts, **kw)

    tokenizer.num_special_tokens_to_add = small_model.tokenizer.num_special_tokens_to_add
    huge = tail_views(["A title"], [text], tokenizer, max_seq_length=48, tail_tokens=20)
    assert max(seen) <= window_chars(48)
    end = tail_views(["A title"], [text[-20_000:]], small_model.tokenizer, max_seq_length=48, tail_tokens=20)
    assert huge == end and huge[1][0].endswith("Insulin resistance was the finding.")
