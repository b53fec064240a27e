"""BM25 over the corpus, and hybrid search: a dense model's scores plus BM25's, scaled.

The dense model and BM25 make different mistakes (exact terms, numbers and names are BM25's strength), so a
document scoring its dense score plus a weighted, per-query-normalised BM25 score ranks better than either
alone (docs/research.md). The scores come from ``bm25s`` (sparse matrices; SciFact is indexed in about a second).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from embedtune.errors import ConfigError


class BM25Ranker:
    """A BM25 index of the corpus, built once, ranking any number of query batches against it.

    Texts are lower-cased, stemmed (Snowball, English) and stripped of English stop words: the demo
    domain and the base model are English.
    """

    def __init__(self, corpus_texts: Sequence[str]) -> None:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG on import
        self._bm25s, self._stemmer = bm25s, Stemmer.Stemmer("english")
        self._size = len(corpus_texts)
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokenize(corpus_texts), show_progress=False)

    def _tokenize(self, texts: Sequence[str]):
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False)

    @property
    def size(self) -> int:
        """Number of corpus texts indexed."""
        return self._size

    def scores(self, query_texts: Sequence[str]) -> np.ndarray:
        """(queries x corpus texts) BM25 scores; a query with no indexed term (only stop words, or words no
        text has) scores 0 everywhere."""
        tokenized = self._bm25s.tokenize(list(query_texts), stopwords="en", stemmer=self._stemmer,
                                         show_progress=False, return_ids=False)
        scores = np.zeros((len(tokenized), self._size), dtype=np.float32)
        for row, tokens in enumerate(tokenized):
            known = self._retriever.get_tokens_ids(tokens)
            if known:
                scores[row] = self._retriever.get_scores_from_ids(known)
        return scores


AUTO = "auto"
# the weights ``auto`` chooses from: 0 is the dense model alone, 5 ranks by BM25 with the dense score breaking ties
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
CHOICE_QUERIES = 500  # at most this many queries score the grid (seeded sample): enough to tell 0.01 apart


def check_lexical_weight(weight: object, *, allow_auto: bool = False) -> float | str:
    """The hybrid-search weight of BM25 as a float (or ``auto`` where allowed), or a ConfigError naming it."""
    if allow_auto and weight == AUTO:
        return AUTO
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"the lexical weight (evaluate.lexical_weight, --lexical-weight) must be a number >= 0 "
                          f"(0: dense only){' or auto' if allow_auto else ''}, got {weight!r}")
    return float(weight)


def served_weight(setting: object, hybrid_metrics: Path = Path("metrics/hybrid.json")) -> float:
    """The weight search serves with for ``evaluate.lexical_weight``: the number itself, or for ``auto`` the one the
    hybrid stage chose (``metrics/hybrid.json``), or 0 (dense only) before that stage has run."""
    weight = check_lexical_weight(setting, allow_auto=True)
    if weight == AUTO:
        import json

        weight = json.loads(hybrid_metrics.read_text(encoding="utf-8"))["lexical_weight"] if hybrid_metrics.is_file() else 0.0
    return check_lexical_weight(weight)


def choose_weight(score: Callable[[float], float], grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict[str, float]]:
    """The weight of ``grid`` whose hybrid ranking scores best (``score``: weight -> mean primary metric on queries
    no choice has seen), and every weight's score. A tie keeps the smaller weight: BM25 earns its place. 0 is in
    the grid, so the choice is never worse there than the dense model alone."""
    scores = {str(w): round(float(score(w)), 5) for w in grid}
    best = max(grid, key=lambda w: (scores[str(w)], -w))
    return float(best), scores


class LexicalFusion:
    """BM25 scores to add to a dense model's: ``weight`` x a document's BM25 score / the query's best BM25 score.

    Dividing by the query's best score puts BM25 on a 0..1 scale whatever the query's length and terms, so one
    weight serves every query; dense scores are cosines. Hybrid search adds this to each document's dense score
    (``evaluation.retrieval.search(lexical=...)``); ``run`` ranks by BM25 alone, for comparison.
    """

    def __init__(self, ranker: BM25Ranker, corpus_ids: Sequence[str], query_texts: Mapping[str, str], *,
                 weight: float) -> None:
        weight = check_lexical_weight(weight)
        if len(corpus_ids) != ranker.size:
            raise ValueError(f"{len(corpus_ids)} corpus ids for a BM25 index of {ranker.size} texts")
        self.ranker, self.corpus_ids, self.query_texts, self.weight = ranker, list(corpus_ids), query_texts, weight

    def scores(self, query_ids: Sequence[str]) -> np.ndarray:
        """(queries x documents) ``weight`` x BM25 score / the query's best, in the corpus ids' order."""
        raw = self.ranker.scores([self.query_texts[q] for q in query_ids])
        best = raw.max(axis=1, keepdims=True)
        return (self.weight * raw / np.where(best > 0, best, 1.0)).astype(np.float32)

    def run(self, query_ids: Sequence[str], *, top_k: int) -> dict[str, dict[str, float]]:
        """The BM25 ranking alone (documents sharing no term with the query left out), as an evaluation run."""
        raw = self.ranker.scores([self.query_texts[q] for q in query_ids])
        run = {}
        for row, query_id in enumerate(query_ids):
            top = np.argsort(-raw[row], kind="stable")[:top_k]
            run[query_id] = {self.corpus_ids[i]: float(raw[row, i]) for i in top if raw[row, i] > 0}
        return run
