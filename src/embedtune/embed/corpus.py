"""A corpus pass: every document's vector and, for documents longer than the model reads, its tail view's, in the
precision and processes the settings resolve to on this machine. The embed stage and the learning curve both
encode a corpus this way, so a model is always read the same way wherever it is scored."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtune.data.beir import Document
from embedtune.embed.encoder import choose_encode_precision, encode_corpus, resolve_processes
from embedtune.embed.views import ExtraViews, encode_tail_views

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@dataclass(frozen=True)
class CorpusVectors:
    """The vectors of a corpus pass: ``vectors`` in the order of ``ids``, the tail views (None without), the
    precision and processes it ran with, and the seconds the encoding took (after choosing them)."""

    ids: list[str]
    vectors: np.ndarray
    views: ExtraViews | None
    precision: str
    processes: int
    seconds: float


def embed_corpus(model: SentenceTransformer, corpus: Mapping[str, Document], encode: Mapping[str, Any]) -> CorpusVectors:
    """Encode ``corpus`` with ``model`` as params.yaml's ``encode`` group says (``batch_size``, ``precision``,
    ``processes``, ``tail_tokens``): the documents, then the tail views of those longer than the window."""
    texts = [d.full_text for d in corpus.values()]
    precision = choose_encode_precision(model, texts, encode["precision"])
    processes = resolve_processes(encode["processes"], str(model.device), len(texts), encode["batch_size"])

    def encode_texts(batch: list[str]) -> np.ndarray:
        return encode_corpus(model, batch, batch_size=encode["batch_size"], precision=precision, processes=processes)

    started = time.perf_counter()
    vectors = encode_texts(texts)
    views = encode_tail_views(model, [d.title for d in corpus.values()], [d.text for d in corpus.values()],
                              tail_tokens=encode["tail_tokens"], encode_texts=encode_texts)
    return CorpusVectors(list(corpus), vectors, views, precision, processes, time.perf_counter() - started)
