"""Tail views of long documents, and the embed stage's output with them."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.errors import ConfigError


def test_long_documents_get_a_tail_view_of_title_and_last_whole_words(small_model) -> None:
    from embedtune.embed.views import tail_views

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
    from embedtune.embed.views import whole_words

    assert whole_words("alpha beta gamma", start, end) == expected


def test_no_tail_views_when_off_when_documents_fit_or_the_title_fills_the_window(small_model) -> None:
    from embedtune.embed.views import tail_views

    long_body = "insulin receptor signalling in mice " * 40
    assert tail_views(["t"], [long_body], small_model.tokenizer, max_seq_length=48, tail_tokens=0) == ([], [])
    assert tail_views(["t"], ["short body"], small_model.tokenizer, max_seq_length=48, tail_tokens=32) == ([], [])
    huge_title = "vitamin " * 40
    assert tail_views([huge_title], [long_body], small_model.tokenizer, max_seq_length=48, tail_tokens=32) == ([], [])


def test_encode_tail_views_encodes_only_the_views_and_says_whose_they_are(small_model) -> None:
    from embedtune.embed.encoder import encode
    from embedtune.embed.views import encode_tail_views

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
    from embedtune.embed.store import load_embeddings, load_views, save_embeddings
    from embedtune.embed.views import ExtraViews, view_layout

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
    from embedtune.embed.views import tail_views

    with pytest.raises(ConfigError, match="encode.tail_tokens"):
        tail_views(["t"], ["body"], small_model.tokenizer, max_seq_length=48, tail_tokens=setting)
