"""Document views: a second vector for the title and last tokens of every document the model would truncate.

A model reads only the first ``max_seq_length`` tokens of a document; on SciFact most abstracts are longer, and
what a claim is about (the finding) is usually in an abstract's last sentences. A document with several vectors
scores as the best of them (MaxP) wherever documents are ranked: evaluation, the pgvector index, the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embedtune.embed.window import clip_head, clip_tail, window_chars
from embedtune.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

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

    The view is ``title + " " + tail``, the tail being at most ``tail_tokens`` tokens, cut at a word boundary, so that the
    view fits the window with the title. Returns the indices of the documents that got a view and the views'
    texts; documents that fit the window, or whose title leaves under ``MIN_TAIL_TOKENS`` for the tail, get none.
    """
    if isinstance(tail_tokens, bool) or not isinstance(tail_tokens, int) or tail_tokens < 0:
        raise ConfigError(f"encode.tail_tokens must be a whole number >= 0 (0: no tail views), got {tail_tokens!r}")
    if tail_tokens == 0:
        return [], []
    budget = max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
    # tokenise only what the window can read (embed.window): the head to tell long documents, the tail's end
    head, end = window_chars(max_seq_length), window_chars(tail_tokens)
    full = [clip_head(f"{title} {body}".strip() if title else body, head) for title, body in zip(titles, bodies)]
    full_lengths = [len(ids) for ids in tokenizer(full, add_special_tokens=False, verbose=False)["input_ids"]]
    long = [i for i, length in enumerate(full_lengths) if length > budget]
    if not long:
        return [], []
    heads = [clip_head(titles[i], head) for i in long]
    title_lengths = [len(ids) for ids in tokenizer(heads, add_special_tokens=False, verbose=False)["input_ids"]]
    ends = [clip_tail(bodies[i], end) for i in long]
    encoded = tokenizer(ends, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    indices, views = [], []
    for row, i in enumerate(long):
        keep = min(tail_tokens, budget - title_lengths[row])
        offsets = encoded["offset_mapping"][row]
        if keep < MIN_TAIL_TOKENS or not offsets:
            continue
        tail = whole_words(ends[row], offsets[max(0, len(offsets) - keep)][0])
        if not tail:
            continue
        indices.append(i)
        views.append(f"{heads[row]} {tail}".strip() if titles[i] else tail)
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


def view_layout(meta: dict) -> str:
    """A name for how the embed stage read the documents (its ``meta.json``): ``""`` for one vector per document,
    ``tail128`` when long ones also got a vector for their title and last 128 tokens. Index versions are
    named by it (``serving.versions.table_for``)."""
    tail_tokens = int(meta.get("tail_tokens") or 0)
    return f"tail{tail_tokens}" if tail_tokens > 0 else ""


