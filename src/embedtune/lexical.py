"""BM25 rankings of the corpus, as a second source of hard-negative candidates beside the dense model's.

Why: the dense base model and BM25 make different mistakes. On SciFact BM25 (stemmed, English stopwords)
scores `ndcg@10` 0.686 on the test claims against the base MiniLM's 0.646, and the abstracts it wrongly
ranks high share the claim's terms, which is exactly the confusion contrastive training should learn to
resolve. The rankings come from ``bm25s`` (sparse matrices, indexes SciFact in about a second).
"""

from __future__ import annotations

from collections.abc import Sequence

RANKERS = ("dense", "bm25", "fused")


class BM25Ranker:
    """A BM25 index of the corpus, built once, ranking any number of query batches against it.

    Texts are lower-cased, stemmed (Snowball, English) and stripped of English stop words: the demo
    domain and the base model are English.
    """

    def __init__(self, corpus_texts: Sequence[str]) -> None:
        import bm25s
        import Stemmer

        self._bm25s, self._stemmer = bm25s, Stemmer.Stemmer("english")
        self._size = len(corpus_texts)
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokenize(corpus_texts), show_progress=False)

    def _tokenize(self, texts: Sequence[str]):
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False)

    def rank(self, query_texts: Sequence[str], *, depth: int) -> list[list[int]]:
        """For each query, the indices of its ``depth`` best corpus texts, best first; documents without
        a term in common with the query are not ranked."""
        documents, scores = self._retriever.retrieve(self._tokenize(query_texts), k=min(depth, self._size),
                                                     show_progress=False, n_threads=1)
        return [[int(d) for d, s in zip(row, row_scores) if s > 0] for row, row_scores in zip(documents, scores)]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], *, k: int = 60) -> list[int]:
    """One ranking from several by reciprocal rank fusion (Cormack et al., 2009): sum of 1 / (k + rank).

    Ties keep the order of first appearance, so the result is deterministic.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])
