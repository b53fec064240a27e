"""A corpus pass: every document's vector and, for documents longer than the model reads, its tail view's, in the
precision and processes the settings resolve to on this machine. The embed stage and the learning curve both
encode a corpus this way, so a model is always read the same way wherever it is scored.

With a cache (``encode.cache``, ``embed.cache``) a text this encoder has encoded before is read back instead of
encoded again: a corpus that gains or changes a few documents costs the encoding of those documents only."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtune.data.beir import Document
from embedtune.embed.cache import VectorCache, cache_key
from embedtune.embed.encoder import choose_encode_precision, encode_corpus, prompt_text, resolve_processes
from embedtune.embed.views import ExtraViews, encode_tail_views

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusVectors:
    """The vectors of a corpus pass: ``vectors`` in the order of ``ids``, the tail views (None without), the
    precision and processes it ran with, the seconds the encoding took (after choosing them), and how many texts
    were encoded and how many read from the cache."""

    ids: list[str]
    vectors: np.ndarray
    views: ExtraViews | None
    precision: str
    processes: int
    seconds: float
    encoded: int = 0
    cached: int = 0


def embed_corpus(model: SentenceTransformer, corpus: Mapping[str, Document], encode: Mapping[str, Any], *,
                 cache: Path | None = None, fingerprint: str | None = None) -> CorpusVectors:
    """Encode ``corpus`` with ``model`` as params.yaml's ``encode`` group says (``batch_size``, ``precision``,
    ``processes``, ``tail_tokens``, ``cache``): the documents, then the tail views of those longer than the window.
    ``cache``: the directory of vector caches, used when ``encode.cache`` is on; ``fingerprint``: the model's
    (``models.model_fingerprint``), which keys its cache."""
    texts = [d.full_text for d in corpus.values()]
    precision = choose_encode_precision(model, texts, encode["precision"])
    processes = resolve_processes(encode["processes"], str(model.device), len(texts), encode["batch_size"])
    store = None
    if cache is not None and encode.get("cache") and fingerprint:
        store = VectorCache(cache, cache_key(fingerprint, precision=precision, max_seq_length=model.max_seq_length,
                                             prompt=prompt_text(model, "document")),
                            dim=model.get_embedding_dimension())
    counts = {"encoded": 0, "cached": 0}

    def encode_texts(batch: list[str]) -> np.ndarray:
        if store is None:
            counts["encoded"] += len(batch)
            return encode_corpus(model, batch, batch_size=encode["batch_size"], precision=precision,
                                 processes=processes)
        vectors, missing = store.lookup(batch)
        counts["encoded"] += len(missing)
        counts["cached"] += len(batch) - len(missing)
        if missing:  # as many processes as these texts call for (a few changed documents: one)
            fresh = encode_corpus(model, [batch[i] for i in missing], batch_size=encode["batch_size"],
                                  precision=precision, processes=resolve_processes(
                                      encode["processes"], str(model.device), len(missing), encode["batch_size"]))
            vectors[missing] = fresh
            store.add([batch[i] for i in missing], fresh)
        return vectors

    started = time.perf_counter()
    vectors = encode_texts(texts)
    views = encode_tail_views(model, [d.title for d in corpus.values()], [d.text for d in corpus.values()],
                              tail_tokens=encode["tail_tokens"], encode_texts=encode_texts)
    if store is not None:
        log.info("vector cache %s: %d texts read back, %d encoded", store.path, counts["cached"], counts["encoded"])
    return CorpusVectors(list(corpus), vectors, views, precision, processes, time.perf_counter() - started,
                         **counts)
