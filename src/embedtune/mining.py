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

``ranker`` chooses whose ranking the window is taken from: ``dense`` (the base model), ``bm25``
(``embedtune.lexical``) or ``fused`` (reciprocal rank fusion of the two top-``range_max`` lists). The
false-negative margin always compares the base model's scores, whichever ranking proposed the candidate.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embedtune.data import Qrels
from embedtune.errors import ConfigError
from embedtune.lexical import RANKERS, reciprocal_rank_fusion


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
    ranker: str = "dense",
    lexical_rankings: Sequence[Sequence[int]] | None = None,
) -> tuple[list[MinedExample], dict[str, int]]:
    """Return one example per relevant (query, document) pair and counts of candidates kept/dropped.

    ``lexical_rankings`` (needed unless ``ranker`` is ``dense``): per row of ``query_ids``, corpus indices
    best first, as ``embedtune.lexical.BM25Ranker.rank`` returns them.
    """
    if sampling not in ("top", "random"):
        raise ConfigError(f"mine.sampling must be 'top' or 'random', got {sampling!r}")
    if ranker not in RANKERS:
        raise ConfigError(f"mine.ranker must be one of {', '.join(RANKERS)}, got {ranker!r}")
    if ranker != "dense" and (lexical_rankings is None or len(lexical_rankings) != len(query_ids)):
        raise ValueError(f"ranker {ranker!r} needs one lexical ranking per query")
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
    stats = {
        "pairs": 0,
        "candidates_considered": 0,
        "candidates_dropped_margin": 0,
        "candidates_kept": 0,
        "negatives_selected": 0,
        "explicit_negatives_used": 0,
        "pairs_window_extended": 0,
        "pairs_short_of_negatives": 0,
        "pairs_skipped_no_negative": 0,
    }
    examples: list[MinedExample] = []
    window = min(range_max, len(corpus_ids))
    for row, qid in enumerate(query_ids):
        relevant = {d for d, s in qrels.get(qid, {}).items() if s > 0 and d in doc_index}
        if not relevant:
            continue
        scores = corpus @ queries[row]
        judged = torch.tensor([doc_index[d] for d in qrels[qid] if d in doc_index], dtype=torch.long)
        ranked_scores = scores.clone()
        ranked_scores[judged] = float("-inf")  # no judged document can be a negative
        top_indices = torch.topk(ranked_scores, k=min(window, len(corpus_ids) - len(judged))).indices
        if ranker == "dense":
            order = top_indices.tolist()
        else:
            judged_set = set(judged.tolist())
            lexical = [i for i in lexical_rankings[row] if i not in judged_set][:window]
            order = lexical if ranker == "bm25" else reciprocal_rank_fusion([top_indices.tolist(), lexical])[:window]
        candidates = [(i, float(scores[i])) for i in order][range_min:]
        beyond: list[tuple[int, float]] | None = None
        given = sorted(d for d in (explicit_negatives or {}).get(qid, ()) if d in doc_index and d not in relevant)
        given_scored = [(doc_index[d], float(scores[doc_index[d]])) for d in given]
        for positive in sorted(relevant):
            stats["pairs"] += 1
            pos_score = float(scores[doc_index[positive]])
            if num_negatives == 0:  # (query, positive) pairs: the other rows of a batch are the only negatives
                examples.append(MinedExample(query_id=qid, positive_id=positive, negative_ids=(),
                                             positive_score=round(pos_score, 5), negative_scores=()))
                continue
            ceiling = float("inf")
            if relative_margin is not None:
                ceiling = min(ceiling, pos_score * (1.0 - relative_margin))
            if absolute_margin is not None:
                ceiling = min(ceiling, pos_score - absolute_margin)
            kept = [(i, s) for i, s in candidates if s <= ceiling]
            stats["candidates_considered"] += len(candidates)
            stats["candidates_dropped_margin"] += len(candidates) - len(kept)
            stats["candidates_kept"] += len(kept)
            if len(kept) + len(given_scored) < num_negatives and extend_window:
                # The positive ranks so low that the window holds nothing safely below it: these are the
                # pairs the model most needs, so look further down the ranking instead of dropping them.
                if beyond is None:
                    order = torch.argsort(ranked_scores, descending=True)[window:]
                    beyond = [(i, float(ranked_scores[i])) for i in order.tolist() if ranked_scores[i] > float("-inf")]
                taken = {i for i, _ in kept}
                extra = [(i, s) for i, s in beyond if s <= ceiling and i not in taken]
                extra = extra[: num_negatives - len(kept) - len(given_scored)]
                if extra:
                    stats["pairs_window_extended"] += 1
                    kept = kept + extra
            # Negatives the data itself names (pairs files, skipped search results) come first, hardest first.
            explicit = sorted(given_scored, key=lambda c: -c[1])[:num_negatives]
            stats["explicit_negatives_used"] += len(explicit)
            kept = [c for c in kept if c[0] not in {i for i, _ in explicit}]
            if not kept and not explicit:
                stats["pairs_skipped_no_negative"] += 1
                continue
            room = num_negatives - len(explicit)
            mined = kept[:room] if sampling == "top" else rng.sample(kept, min(room, len(kept)))
            chosen = explicit + mined
            if len(chosen) < num_negatives:
                stats["pairs_short_of_negatives"] += 1
                # Repeat the hardest kept ones so every row has the same number of columns.
                chosen = (chosen * num_negatives)[:num_negatives]
            stats["negatives_selected"] += len(chosen)
            examples.append(
                MinedExample(
                    query_id=qid,
                    positive_id=positive,
                    negative_ids=tuple(corpus_ids[i] for i, _ in chosen),
                    positive_score=round(pos_score, 5),
                    negative_scores=tuple(round(s, 5) for _, s in chosen),
                )
            )
    return examples, stats


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
    """Keyword arguments of ``mine_hard_negatives`` from the ``mine`` params (the mine stage's, and the train
    stage's when it re-mines with the model being trained)."""
    required = ("num_negatives", "range_min", "range_max", "relative_margin", "absolute_margin", "sampling",
                "extend_window")
    missing = [f"mine.{k}" for k in required if k not in mine]
    if missing:
        raise ConfigError(f"params.yaml lacks {', '.join(missing)} (see conf/config.yaml)")
    return {**{k: mine[k] for k in required}, "seed": seed, "ranker": mine.get("ranker", "dense")}


def remine_examples(
    examples: Sequence[MinedExample],
    query_ids: Sequence[str],
    query_vectors: np.ndarray,
    corpus_ids: Sequence[str],
    corpus_vectors: np.ndarray,
    **options: Any,
) -> tuple[list[MinedExample], dict[str, int]]:
    """The same training rows with negatives mined afresh from another model's ranking (``train.remine_epochs``).

    ``query_ids`` / ``query_vectors``: one row per distinct query of ``examples``, embedded by the new model;
    the corpus likewise. Every positive of a query in ``examples`` counts as judged, so no positive is ever
    mined as a negative; the window, margins and sampling are the mine stage's (``options``, see
    ``mining_options``), except that the ranking is always the new model's dense one (a lexical ranking does
    not change with training). A row keeps its previous negatives when the new ranking offers none below the
    margin (counted as ``rows_kept_previous_negatives``), so the row count and order never change: the
    optimizer steps left stay as planned. Rows without negatives (``mine.num_negatives`` 0) are returned as
    they are.
    """
    num_negatives = max((len(e.negative_ids) for e in examples), default=0)
    if num_negatives == 0:
        return list(examples), {"rows": len(examples), "rows_renewed": 0, "rows_kept_previous_negatives": 0}
    qrels: dict[str, dict[str, int]] = {}
    for example in examples:
        qrels.setdefault(example.query_id, {})[example.positive_id] = 1
    options = {**options, "num_negatives": num_negatives, "ranker": "dense"}
    mined, mining_stats = mine_hard_negatives(qrels, query_ids, query_vectors, corpus_ids, corpus_vectors, **options)
    fresh = {(m.query_id, m.positive_id): m for m in mined}
    renewed: list[MinedExample] = []
    kept_previous = 0
    for example in examples:
        new = fresh.get((example.query_id, example.positive_id))
        if new is None:
            kept_previous += 1
            renewed.append(example)
        else:
            renewed.append(replace(example, negative_ids=new.negative_ids, negative_scores=new.negative_scores,
                                   positive_score=new.positive_score))
    changed = sum(a.negative_ids != b.negative_ids for a, b in zip(examples, renewed))
    stats = {"rows": len(examples), "rows_renewed": len(examples) - kept_previous,
             "rows_kept_previous_negatives": kept_previous, "rows_with_other_negatives": changed,
             **{f"mining_{k}": v for k, v in mining_stats.items()}}
    return renewed, stats
