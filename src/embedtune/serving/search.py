"""Searching an index version: nearest vectors through pgvector's HNSW index, optionally fused with BM25.

A query embedded by one model is only comparable with vectors of the same model, so every search checks that
the query model's fingerprint is the version's (:class:`FingerprintMismatch`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from embedtune.serving.db import IndexError_
from embedtune.serving.versions import documents_table, serving_version

MAX_VIEWS = 2  # vectors per document at most: its own and its tail view (embed.views.tail_views)
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


class FingerprintMismatch(IndexError_):
    """The model used to embed a query is not the model whose vectors are being searched."""


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    score: float
    text: str
    source: str | None = None  # the file a documents folder's chunk came from, and its page (PDF)
    page: int | None = None

    @property
    def provenance(self) -> str:
        """``policies/leave.pdf, page 3``, ``wiki/setup.html``, or "" for a document without a source file."""
        if not self.source:
            return ""
        return f"{self.source}, page {self.page}" if self.page is not None else self.source


def _nearest(conn, query_vector: np.ndarray, *, model_fingerprint: str, n: int, ef_search: int,
             version: str | None) -> tuple[str, dict[str, float]]:
    """The version searched and its ``n`` nearest documents' dense scores (cosine; a document with several
    vectors scores as its best one, MaxP), refusing a query from another model.

    The search takes the ``n * MAX_VIEWS`` nearest vectors, so at least ``n`` distinct documents. An HNSW scan
    returns at most ``hnsw.ef_search`` rows, so ``ef_search`` is raised to ``n * MAX_VIEWS`` when it is lower
    (pgvector's limit, 1000, caps it). Only ids and distances travel: texts are fetched for the final ranking."""
    with conn.transaction():
        target = version or serving_version(conn)
        if target is None:
            raise IndexError_("no index is serving yet: run `dvc repro` (reindex stage) or `embedtune promote`")
        info = conn.execute("SELECT fingerprint, dim FROM embedtune_versions "
                            "WHERE version = %s", (target,)).fetchone()
        if info is None:
            raise IndexError_(f"index version {target!r} does not exist")
        if info[0] != model_fingerprint:
            raise FingerprintMismatch(
                f"index {target} holds vectors of model {info[0][:16]}, but the query was embedded with model "
                f"{model_fingerprint[:16]}: vectors of different models are not comparable. Use the model the "
                "index was built with (`embedtune versions` shows its path) or reindex with this one."
            )
        if len(query_vector) != info[1]:
            raise FingerprintMismatch(f"query vector has {len(query_vector)} dimensions, index {target} has {info[1]}")
        documents_table(target)  # checks the name, before it goes into SQL
        conn.execute(f"SET LOCAL hnsw.ef_search = {min(MAX_EF_SEARCH, max(int(ef_search), int(n) * MAX_VIEWS))}")
        vector = np.asarray(query_vector, dtype=np.float32)
        rows = conn.execute(
            f"SELECT id, 1 - min(distance) FROM (SELECT id, embedding <=> %s AS distance FROM {target} "
            "ORDER BY embedding <=> %s LIMIT %s) hits GROUP BY id ORDER BY min(distance), id LIMIT %s",
            (vector, vector, int(n) * MAX_VIEWS, int(n)),
        ).fetchall()
    return target, {r[0]: float(r[1]) for r in rows}


def _hits(conn, target: str, scores: dict[str, float], k: int) -> list[Hit]:
    """The ``k`` best of ``scores`` (ties by id) as hits with their titles, texts and provenance, in one query."""
    best = sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))[:k]
    rows = {r[0]: r[1:] for r in conn.execute(
        f"SELECT id, coalesce(title, ''), coalesce(text, ''), source, page FROM {documents_table(target)} "
        "WHERE id = ANY(%s)", (best,)).fetchall()}
    missing = ("", "", None, None)
    return [Hit(id=doc_id, title=rows.get(doc_id, missing)[0], text=rows.get(doc_id, missing)[1],
                source=rows.get(doc_id, missing)[2], page=rows.get(doc_id, missing)[3], score=scores[doc_id])
            for doc_id in best]


def search(
    conn,
    query_vector: np.ndarray,
    *,
    model_fingerprint: str,
    k: int = 10,
    ef_search: int = 100,
    version: str | None = None,
) -> tuple[str, list[Hit]]:
    """The ``k`` nearest documents in the serving index (or ``version``), refusing a query from another model
    (``_nearest``: a document scores as its best vector)."""
    target, scores = _nearest(conn, query_vector, model_fingerprint=model_fingerprint, n=k, ef_search=ef_search,
                              version=version)
    return target, _hits(conn, target, scores, k)


class LexicalIndex:
    """BM25 over one index version's documents (the titles and texts it was loaded with), for hybrid search.

    Built in memory when first needed (SciFact's 5,183 abstracts: about a second) and kept by the caller, e.g.
    the search service, for as long as it serves that version."""

    def __init__(self, conn, version: str) -> None:
        from embedtune.lexical import BM25Ranker

        self.documents = documents_table(version)
        rows = conn.execute(f"SELECT d.id, d.title, d.text FROM {self.documents} d "
                            f"WHERE d.id IN (SELECT id FROM {version}) ORDER BY d.id").fetchall()
        if not rows:
            raise IndexError_(f"index version {version!r} has no documents to search by their words")
        self.version = version
        self.ids = [r[0] for r in rows]
        self.rows = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self.ranker = BM25Ranker([f"{r[1]} {r[2]}".strip() if r[1] else r[2] for r in rows])


def hybrid_search(
    conn,
    query_vector: np.ndarray,
    query_text: str,
    lexical: LexicalIndex | None,
    *,
    model_fingerprint: str,
    lexical_weight: float,
    k: int = 10,
    candidates: int = 100,
    ef_search: int = 100,
    version: str | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[str, list[Hit]]:
    """``search`` fused with BM25 as the evaluation fuses them (``evaluation.retrieval.search(lexical=...)``): a document
    scores its dense score (its best vector) + ``lexical_weight`` x its BM25 score / the query's best BM25 score.

    The fused ranking is computed over the union of the dense search's ``candidates`` nearest documents and
    BM25's ``candidates`` best (with any tied at the last place); a document only BM25 found gets its exact dense
    score from its own vectors.
    With ``lexical_weight`` 0 it is ``search`` (``lexical`` may then be None); otherwise ``lexical`` is the BM25
    index of the version searched (``version``, default: the one ``lexical`` was built for).
    ``timings``, when given, gains the milliseconds spent in vector search (``vector``) and in BM25 (``bm25``)."""
    from embedtune.lexical import LexicalFusion, check_lexical_weight

    started = time.perf_counter()
    if check_lexical_weight(lexical_weight) == 0:
        result = search(conn, query_vector, model_fingerprint=model_fingerprint, k=k, ef_search=ef_search,
                        version=version)
        add_ms(timings, "vector", started)
        return result
    if lexical is None or (version is not None and version != lexical.version):
        raise ValueError(f"hybrid search of {version!r} needs that version's LexicalIndex")
    target, scores = _nearest(conn, query_vector, model_fingerprint=model_fingerprint, n=max(k, candidates),
                              ef_search=ef_search, version=lexical.version)
    started = add_ms(timings, "vector", started)
    bonus = LexicalFusion(lexical.ranker, lexical.ids, {"q": query_text}, weight=lexical_weight).scores(["q"])[0]
    started = add_ms(timings, "bm25", started)
    # BM25's best: every document scoring at least its ``candidates``-th best score (ties kept: deterministic)
    floor = np.partition(bonus, len(bonus) - candidates)[len(bonus) - candidates] if candidates < len(bonus) else 0.0
    missing = [lexical.ids[i] for i in np.flatnonzero((bonus >= floor) & (bonus > 0)) if lexical.ids[i] not in scores]
    if missing:  # their exact dense scores, from their own vectors
        scores.update({r[0]: float(r[1]) for r in conn.execute(
            f"SELECT id, 1 - min(embedding <=> %s) FROM {target} WHERE id = ANY(%s) GROUP BY id",
            (np.asarray(query_vector, dtype=np.float32), missing)).fetchall()})
    fused = {doc_id: score + float(bonus[lexical.rows[doc_id]]) if doc_id in lexical.rows else score
             for doc_id, score in scores.items()}
    hits = _hits(conn, target, fused, k)
    add_ms(timings, "vector", started)  # the exact dense scores of BM25's own candidates, and the texts
    return target, hits


def add_ms(timings: dict[str, float] | None, name: str, started: float) -> float:
    """Add the milliseconds since ``started`` to ``timings[name]`` (when timings are kept); returns now."""
    now = time.perf_counter()
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + (now - started) * 1000
    return now
