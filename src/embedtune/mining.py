"""Hard-negative mining from the base model's ranking, with false-negative filtering.

This follows sentence-transformers' ``mine_hard_negatives`` (rank window, relative/absolute margin against
the positive's score, top or random sampling) but works on the corpus embeddings already computed by the
``embed`` stage, so the corpus is encoded once per run instead of once per consumer.

For each training pair (query, positive) the candidates are the documents ranked ``range_min`` to
``range_max`` by the base model, never any document judged relevant for the query. A candidate scoring too
close to the positive is probably an unjudged relevant document (a *false negative*) and is dropped:
``relative_margin`` 0.05 keeps a candidate only if ``score <= positive_score * 0.95``. When the window holds
too few candidates below that ceiling (the positive itself ranks low), ``extend_window`` looks further down
the ranking rather than dropping the pair.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedtune.data.beir import Qrels
from embedtune.errors import ConfigError


@dataclass(frozen=True)
class MinedExample:
    query_id: str
    positive_id: str
    negative_ids: tuple[str, ...]
    positive_score: float
    negative_scores: tuple[float, ...]
    source: str = "labelled"
    query_text: str | None = None  # carried for synthetic queries, which are not in queries.jsonl
    positive_text: str | None = None  # overrides the corpus text (inverse-cloze positives)


STATS = ("pairs", "candidates_considered", "candidates_dropped_margin", "candidates_kept", "negatives_selected",
         "explicit_negatives_used", "pairs_window_extended", "pairs_short_of_negatives", "pairs_skipped_no_negative")


def mine_hard_negatives(
    qrels: Qrels,
    query_ids: Sequence[str],
    query_vectors: np.ndarray,
    corpus_ids: Sequence[str],
    corpus_vectors: np.ndarray,
    *,
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int = 100,
    relative_margin: float | None = 0.05,
    absolute_margin: float | None = None,
    sampling: str = "top",
    extend_window: bool = True,
    explicit_negatives: Mapping[str, set[str]] | None = None,
    seed: int = 42,
) -> tuple[list[MinedExample], dict[str, int]]:
    """Return one example per relevant (query, document) pair and counts of candidates kept/dropped."""
    if sampling not in ("top", "random"):
        raise ConfigError(f"mine.sampling must be 'top' or 'random', got {sampling!r}")
    if not 0 <= range_min < range_max:
        raise ConfigError(f"mine.range_min ({range_min}) must be >= 0 and below mine.range_max ({range_max})")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 0:
        raise ConfigError(f"mine.num_negatives must be a whole number >= 0 (0: in-batch negatives only), "
                          f"got {num_negatives!r}")
    import torch

    rng = random.Random(seed)
    doc_index = {d: i for i, d in enumerate(corpus_ids)}
    corpus = torch.from_numpy(np.ascontiguousarray(corpus_vectors, dtype=np.float32))
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    stats = dict.fromkeys(STATS, 0)
    examples: list[MinedExample] = []
    window = min(range_max, len(corpus_ids))
    for row, qid in enumerate(query_ids):
        relevant = {d for d, s in qrels.get(qid, {}).items() if s > 0 and d in doc_index}
        if not relevant:
            continue
        ranking = _Ranking(corpus @ queries[row], [doc_index[d] for d in qrels[qid] if d in doc_index], window,
                           range_min)
        given = sorted(d for d in (explicit_negatives or {}).get(qid, ()) if d in doc_index and d not in relevant)
        given_scored = [(doc_index[d], float(ranking.scores[doc_index[d]])) for d in given]
        for positive in sorted(relevant):
            stats["pairs"] += 1
            pos_score = float(ranking.scores[doc_index[positive]])
            chosen: list[tuple[int, float]] | None = []
            if num_negatives:  # else (query, positive) pairs: the other rows of a batch are the only negatives
                ceiling = min(pos_score * (1.0 - relative_margin) if relative_margin is not None else float("inf"),
                              pos_score - absolute_margin if absolute_margin is not None else float("inf"))
                chosen = _choose(ranking, ceiling, given_scored, num_negatives, sampling, extend_window, rng, stats)
            if chosen is not None:
                examples.append(MinedExample(query_id=qid, positive_id=positive,
                                             negative_ids=tuple(corpus_ids[i] for i, _ in chosen),
                                             positive_score=round(pos_score, 5),
                                             negative_scores=tuple(round(s, 5) for _, s in chosen)))
    return examples, stats


class _Ranking:
    """One query's ranking of the corpus: the candidate window and, when needed, the ranks below it."""

    def __init__(self, scores: Any, judged: list[int], window: int, range_min: int) -> None:
        import torch

        self.scores, self.window = scores, window
        self.ranked = scores.clone()
        self.ranked[torch.tensor(judged, dtype=torch.long)] = float("-inf")  # no judged document can be a negative
        order = torch.topk(self.ranked, k=min(window, len(scores) - len(judged))).indices.tolist()
        self.candidates = [(i, float(scores[i])) for i in order][range_min:]
        self._beyond: list[tuple[int, float]] | None = None

    def beyond(self) -> list[tuple[int, float]]:
        """Every unjudged document below the window, best first."""
        import torch

        if self._beyond is None:
            order = torch.argsort(self.ranked, descending=True)[self.window:]
            self._beyond = [(i, float(self.ranked[i])) for i in order.tolist() if self.ranked[i] > float("-inf")]
        return self._beyond


def _choose(ranking: _Ranking, ceiling: float, given: list[tuple[int, float]], num_negatives: int, sampling: str,
            extend_window: bool, rng: random.Random, stats: dict[str, int]) -> list[tuple[int, float]] | None:
    """The (corpus row, score) negatives of one pair whose positive scores ``ceiling`` after the margin, or None
    when there is none."""
    kept = [(i, s) for i, s in ranking.candidates if s <= ceiling]
    stats["candidates_considered"] += len(ranking.candidates)
    stats["candidates_dropped_margin"] += len(ranking.candidates) - len(kept)
    stats["candidates_kept"] += len(kept)
    if len(kept) + len(given) < num_negatives and extend_window:
        # The positive ranks so low that the window holds nothing safely below it: these are the pairs the
        # model most needs, so look further down the ranking instead of dropping them.
        taken = {i for i, _ in kept}
        extra = [(i, s) for i, s in ranking.beyond() if s <= ceiling and i not in taken]
        extra = extra[: num_negatives - len(kept) - len(given)]
        if extra:
            stats["pairs_window_extended"] += 1
            kept = kept + extra
    # Negatives the data itself names (pairs files, skipped search results) come first, hardest first.
    explicit = sorted(given, key=lambda c: -c[1])[:num_negatives]
    stats["explicit_negatives_used"] += len(explicit)
    kept = [c for c in kept if c[0] not in {i for i, _ in explicit}]
    if not kept and not explicit:
        stats["pairs_skipped_no_negative"] += 1
        return None
    room = num_negatives - len(explicit)
    chosen = explicit + (kept[:room] if sampling == "top" else rng.sample(kept, min(room, len(kept))))
    if len(chosen) < num_negatives:
        stats["pairs_short_of_negatives"] += 1
        chosen = (chosen * num_negatives)[:num_negatives]  # the hardest again: every row has as many columns
    stats["negatives_selected"] += len(chosen)
    return chosen


def examples_to_records(examples: Sequence[MinedExample]) -> list[dict]:
    records = []
    for e in examples:
        record = {
            "query_id": e.query_id,
            "positive_id": e.positive_id,
            "negative_ids": list(e.negative_ids),
            "positive_score": e.positive_score,
            "negative_scores": list(e.negative_scores),
            "source": e.source,
        }
        if e.query_text is not None:
            record["query_text"] = e.query_text
        if e.positive_text is not None:
            record["positive_text"] = e.positive_text
        records.append(record)
    return records


def records_to_examples(records: Sequence[Mapping]) -> list[MinedExample]:
    return [
        MinedExample(
            query_id=r["query_id"],
            positive_id=r["positive_id"],
            negative_ids=tuple(r["negative_ids"]),
            positive_score=r.get("positive_score", 0.0),
            negative_scores=tuple(r.get("negative_scores", ())),
            source=r.get("source", "labelled"),
            query_text=r.get("query_text"),
            positive_text=r.get("positive_text"),
        )
        for r in records
    ]


def weight_examples(examples: Sequence[MinedExample], weight: float, rng: random.Random) -> list[MinedExample]:
    """Scale a source's share of the training set: 0 drops it, 0.5 keeps a random half, 2 repeats it twice,
    1.5 keeps all once plus a random half again."""
    if weight < 0:
        raise ConfigError(f"source weights must be >= 0, got {weight}")
    whole, fraction = int(weight), weight - int(weight)
    out = list(examples) * whole
    if fraction > 0:
        out += rng.sample(list(examples), round(fraction * len(examples)))
    return out


def mining_options(mine: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Keyword arguments of ``mine_hard_negatives`` from the ``mine`` params."""
    required = ("num_negatives", "range_min", "range_max", "relative_margin", "absolute_margin", "sampling",
                "extend_window")
    missing = [f"mine.{k}" for k in required if k not in mine]
    if missing:
        raise ConfigError(f"params.yaml lacks {', '.join(missing)} (see conf/config.yaml)")
    return {**{k: mine[k] for k in required}, "seed": seed}
