"""Synthetic training queries for documents that have none.

Two generators behind one interface (:class:`QueryGenerator`):

* :class:`OfflineGenerator` needs no model: it builds pseudo-queries from the document itself — the title,
  and sentences drawn as in the *inverse cloze task* (Lee et al., 2019, "Latent Retrieval for Weakly
  Supervised Open Domain Question Answering"): a sentence of the passage acts as the query for the passage.
  Sentences are picked by position and length (abstracts state their finding first or last), and very short
  or very long ones are skipped.
* :class:`LLMGenerator` (in :mod:`embedtune.data.llm`) asks any OpenAI-compatible endpoint.

Whatever the generator, :func:`round_trip_filter` keeps a query only if the base model ranks its own document
in the top k for it (round-trip consistency, as in Alberti et al., 2019): a query its document cannot be
found by is noise.

Synthetic queries are training data. Only when a dataset has no human-judged query at all does
:func:`synthetic_test` hold some out as the test split (ids prefixed ``syn-test:``), so the pipeline still runs
end to end; every figure measured on them is labelled synthetic (:mod:`embedtune.data.origin`) and the promotion gate
refuses to serve a model on them alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from embedtune.data.beir import Dataset, Document, Query
from embedtune.data.origin import SYNTHETIC_TEST_PREFIX
from embedtune.errors import ConfigError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


@dataclass(frozen=True)
class SyntheticQuery:
    doc_id: str
    text: str
    kind: str  # how it was made: title, sentence, llm


class QueryGenerator(Protocol):
    name: str

    def generate(self, documents: Sequence[Document], per_document: int) -> list[SyntheticQuery]:
        """Up to ``per_document`` queries for each document."""


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


@dataclass
class OfflineGenerator:
    """Title and inverse-cloze sentences as pseudo-queries; deterministic for a given seed."""

    seed: int = 42
    use_title: bool = True
    min_words: int = 6
    max_words: int = 40
    name: str = "offline"

    def generate(self, documents: Sequence[Document], per_document: int) -> list[SyntheticQuery]:
        rng = random.Random(self.seed)
        out: list[SyntheticQuery] = []
        for doc in documents:
            candidates: list[tuple[str, str]] = []
            if self.use_title and len(doc.title.split()) >= 3:
                candidates.append(("title", doc.title))
            sentences = [s for s in split_sentences(doc.text) if self.min_words <= len(s.split()) <= self.max_words]
            if sentences:
                # Findings are usually stated last (conclusion) or first (claim); the rest at random.
                ordered = [sentences[-1], sentences[0], *rng.sample(sentences[1:-1], k=max(0, len(sentences) - 2))]
                seen = set()
                candidates += [("sentence", s) for s in ordered if not (s in seen or seen.add(s))]
            for kind, text in candidates[:per_document]:
                out.append(SyntheticQuery(doc.id, text, kind))
        return out


def ict_positive(doc: Document, query: SyntheticQuery, rng: random.Random, keep_probability: float = 0.1) -> str:
    """The positive text for a pseudo-query: most of the time the document without the words of the query (the
    sentence removed for inverse-cloze queries, the title dropped for title queries), so the model learns what
    the query is *about* rather than matching it word for word."""
    if rng.random() < keep_probability:
        return doc.full_text
    if query.kind == "title":
        return doc.text or doc.full_text  # title query -> the body it heads
    if query.kind != "sentence":
        return doc.full_text
    body = doc.text.replace(query.text, " ").strip()
    body = " ".join(body.split())
    return f"{doc.title} {body}".strip() if doc.title else body


def round_trip_filter(
    queries: Sequence[SyntheticQuery],
    query_vectors: np.ndarray,
    corpus_ids: Sequence[str],
    corpus_vectors: np.ndarray,
    top_k: int,
) -> tuple[list[SyntheticQuery], list[int]]:
    """Keep queries whose own document ranks in the base model's top ``top_k``; returns kept queries and the
    rank of the own document for every query (1-based; 0 when outside the top k)."""
    import torch

    position = {d: i for i, d in enumerate(corpus_ids)}
    corpus = torch.from_numpy(np.ascontiguousarray(corpus_vectors, dtype=np.float32))
    kept: list[SyntheticQuery] = []
    ranks: list[int] = []
    k = min(top_k, len(corpus_ids))
    for start in range(0, len(queries), 256):
        block = torch.from_numpy(np.ascontiguousarray(query_vectors[start : start + 256], dtype=np.float32))
        top = torch.topk(block @ corpus.T, k=k, dim=1).indices.tolist()
        for query, row in zip(queries[start : start + 256], top):
            target = position.get(query.doc_id)
            rank = row.index(target) + 1 if target in row else 0
            ranks.append(rank)
            if rank:
                kept.append(query)
    return kept, ranks


def generator_from_params(synthetic: Mapping[str, Any], seed: int) -> QueryGenerator:
    """The generator ``synthetic.generator`` names: ``offline`` (no model) or ``llm`` (``synthetic.llm``)."""
    kind = synthetic.get("generator")
    if kind == "offline":
        return OfflineGenerator(seed=seed)
    if kind == "llm":
        from embedtune.data.llm import LLMGenerator

        return LLMGenerator.from_params(synthetic.get("llm"))
    raise ConfigError(f"synthetic.generator must be 'offline' or 'llm', got {kind!r}")


def synthetic_test(documents: Sequence[Document], generator: QueryGenerator, count: int,
                   seed: int) -> list[SyntheticQuery]:
    """One synthetic query each for a seeded sample of ``count`` documents (at most half of them, so the rest can
    train), to stand in for a test split when no query was judged by a person. No round-trip filter: keeping only
    the queries the base model already answers would bias the test towards it."""
    if count <= 0:
        raise ConfigError(f"synthetic.test_queries must be at least 1 without judged queries, got {count}")
    pool = sorted(documents, key=lambda d: d.id)
    chosen = random.Random(seed).sample(pool, min(count, len(pool) // 2))
    first: dict[str, SyntheticQuery] = {}
    for query in generator.generate(sorted(chosen, key=lambda d: d.id), 1):
        first.setdefault(query.doc_id, query)
    return list(first.values())


def has_judged_queries(dataset: Dataset) -> bool:
    """Whether any query is judged relevant to a document by a person (qrels, pairs or clicks)."""
    return any(score > 0 for qrels in dataset.qrels.values() for docs in qrels.values() for score in docs.values())


def with_synthetic_test(dataset: Dataset, generator: QueryGenerator, count: int, seed: int) -> Dataset:
    """``dataset`` with a synthetic test split (``qrels["test"]``, queries ``syn-test:<doc id>``) for a dataset
    that has no judged query: see :func:`synthetic_test`."""
    held_out = synthetic_test(dataset.documents(), generator, count, seed)
    queries = dict(dataset.queries)
    test: dict[str, dict[str, int]] = {}
    for query in held_out:
        qid = f"{SYNTHETIC_TEST_PREFIX}{query.doc_id}"
        queries[qid] = Query(id=qid, text=query.text)
        test[qid] = {query.doc_id: 1}
    return Dataset(corpus=dataset.corpus, queries=queries, qrels={**dataset.qrels, "test": test})
