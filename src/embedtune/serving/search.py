"""Searching an index version: nearest vectors through pgvector's HNSW index, optionally fused with BM25.

A query embedded by one model is only comparable with vectors of the same model, so every search checks that
the query model's fingerprint is the version's (:class:`FingerprintMismatch`).
"""

from __future__ import annotations

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


def search(
    conn,
    query_vector: np.ndarray,
    *,
    model_fingerprint: str,
    k: int = 10,
    ef_search: int = 100,
    version: str | None = None,
) -> tuple[str, list[Hit]]:
    """Nearest documents in the serving index (or ``version``), refusing a query from another model.

    A document with several vectors (``load_version``'s views) scores as its best one (MaxP): the search
    takes the ``k * MAX_VIEWS`` nearest vectors, so at least ``k`` distinct documents, and keeps each
    document's best. An HNSW scan returns at most ``hnsw.ef_search`` rows, so ``ef_search`` is raised to
    ``k * MAX_VIEWS`` when it is lower (pgvector's limit, 1000, caps it)."""
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
        documents = documents_table(target)  # checks the name too, before it goes into SQL
        conn.execute(f"SET LOCAL hnsw.ef_search = {min(MAX_EF_SEARCH, max(int(ef_search), int(k) * MAX_VIEWS))}")
        vector = np.asarray(query_vector, dtype=np.float32)
        rows = conn.execute(
            f"WITH hits AS (SELECT id, embedding <=> %s AS distance FROM {target} ORDER BY embedding <=> %s LIMIT %s), "
            "best AS (SELECT id, min(distance) AS distance FROM hits GROUP BY id) "
            "SELECT best.id, coalesce(d.title, ''), coalesce(d.text, ''), 1 - best.distance FROM best "
            f"LEFT JOIN {documents} d USING (id) ORDER BY best.distance, best.id LIMIT %s",
            (vector, vector, int(k) * MAX_VIEWS, int(k)),
        ).fetchall()
    return target, [Hit(id=r[0], title=r[1], text=r[2], score=float(r[3])) for r in rows]


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
) -> tuple[str, list[Hit]]:
    """``search`` fused with BM25 as the evaluation fuses them (``evaluation.retrieval.search(lexical=...)``): a document
    scores its dense score (its best vector) + ``lexical_weight`` x its BM25 score / the query's best BM25 score.

    The fused ranking is computed over the union of the dense search's ``candidates`` nearest documents and
    BM25's ``candidates`` best (with any tied at the last place); a document only BM25 found gets its exact dense
    score from its own vectors.
    With ``lexical_weight`` 0 it is ``search`` (``lexical`` may then be None); otherwise ``lexical`` is the BM25
    index of the version searched (``version``, default: the one ``lexical`` was built for)."""
    from embedtune.lexical import LexicalFusion, check_lexical_weight

    if check_lexical_weight(lexical_weight) == 0:
        return search(conn, query_vector, model_fingerprint=model_fingerprint, k=k, ef_search=ef_search,
                      version=version)
    if lexical is None or (version is not None and version != lexical.version):
        raise ValueError(f"hybrid search of {version!r} needs that version's LexicalIndex")
    fusion = LexicalFusion(lexical.ranker, lexical.ids, {"q": query_text}, weight=lexical_weight)
    target, dense_hits = search(conn, query_vector, model_fingerprint=model_fingerprint, k=max(k, candidates),
                                ef_search=ef_search, version=lexical.version)
    bonus = fusion.scores(["q"])[0]
    row = lexical.rows
    hits = {h.id: h for h in dense_hits}
    # BM25's best: every document scoring at least its ``candidates``-th best score (ties kept: deterministic)
    floor = np.partition(bonus, len(bonus) - candidates)[len(bonus) - candidates] if candidates < len(bonus) else 0.0
    lexical_best = [lexical.ids[i] for i in np.flatnonzero((bonus >= floor) & (bonus > 0))]
    missing = [doc_id for doc_id in lexical_best if doc_id not in hits]
    if missing:
        vector = np.asarray(query_vector, dtype=np.float32)
        rows = conn.execute(
            f"SELECT e.id, coalesce(d.title, ''), coalesce(d.text, ''), 1 - min(e.embedding <=> %s) FROM {target} e "
            f"LEFT JOIN {lexical.documents} d USING (id) WHERE e.id = ANY(%s) GROUP BY e.id, d.title, d.text",
            (vector, missing)).fetchall()
        hits.update({r[0]: Hit(id=r[0], title=r[1], text=r[2], score=float(r[3])) for r in rows})
    fused = [Hit(id=h.id, title=h.title, text=h.text, score=h.score + float(bonus[row[h.id]]) if h.id in row else h.score)
             for h in hits.values()]
    fused.sort(key=lambda h: (-h.score, h.id))
    return target, fused[:k]
