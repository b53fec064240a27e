"""The ``split`` stage: a leakage-safe train/test split of the judged queries.

* When the source ships ``qrels/test.tsv`` the source split is kept, so results stay comparable with
  published figures; any other split (``train``, ``dev``...) goes to the training side.
* Otherwise queries are split *by query*, seeded, with near-duplicate queries kept together.
* Either way, no query and no near-duplicate of a query ends up on both sides. With a source split the test
  side is never touched: leaking training queries are dropped (or only reported, if asked), and counted.
* Optionally a *dev* split is carved from the training queries (``dev_fraction``; near-duplicate training
  queries stay together): experiments are compared on it, so choosing a setting never looks at the test split.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from embedtune.data.beir import Dataset, Qrels, count_pairs
from embedtune.data.dedup import group_pairs, near_duplicate_pairs
from embedtune.errors import ConfigError, InputError

log = logging.getLogger(__name__)

QUERY_SHINGLE_WORDS = 1
LEAKAGE_POLICIES = ("drop", "report")


@dataclass
class SplitResult:
    train: Qrels
    test: Qrels
    dev: Qrels = field(default_factory=dict)
    stats: dict[str, object] = field(default_factory=dict)


def _judged(qrels: Qrels) -> Qrels:
    return {q: docs for q, docs in qrels.items() if any(s > 0 for s in docs.values())}


def _merge(*parts: Qrels) -> Qrels:
    out: Qrels = {}
    for part in parts:
        for qid, docs in part.items():
            target = out.setdefault(qid, {})
            for did, score in docs.items():
                target[did] = max(score, target.get(did, score))
    return out


def split_queries(
    dataset: Dataset,
    *,
    test_fraction: float,
    seed: int,
    near_duplicate_threshold: float,
    use_source_split: bool = True,
    leakage_policy: str = "drop",
    min_train_pairs: int = 500,
    dev_fraction: float = 0.0,
) -> SplitResult:
    """Split the dataset's judged queries into train and test (and, with ``dev_fraction``, dev) qrels."""
    if leakage_policy not in LEAKAGE_POLICIES:
        raise ConfigError(f"split.leakage_policy must be one of {LEAKAGE_POLICIES}, got {leakage_policy!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"split.test_fraction must be between 0 and 1, got {test_fraction}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ConfigError(f"split.dev_fraction must be at least 0 and below 1, got {dev_fraction}")
    stats: dict[str, object] = {}
    qids = sorted({q for qrels in dataset.qrels.values() for q in _judged(qrels)})
    texts = [dataset.queries[q].text for q in qids]
    pairs = near_duplicate_pairs(texts, near_duplicate_threshold, QUERY_SHINGLE_WORDS) if qids else []

    if use_source_split and "test" in dataset.qrels:
        train, test = _source_split(dataset, qids, pairs, leakage_policy, stats)
    else:
        train, test = _seeded_split(dataset, qids, pairs, test_fraction, seed, stats)
    dev: Qrels = {}
    if dev_fraction > 0 and train:
        train, dev = _carve_dev(train, qids, pairs, dev_fraction, seed)
    stats["dev_queries"] = len(dev)
    stats["dev_pairs"] = count_pairs(dev)
    stats["train_queries"] = len(train)
    stats["test_queries"] = len(test)
    stats["train_pairs"] = count_pairs(train)
    stats["test_pairs"] = count_pairs(test)
    total = len(train) + len(test)
    stats["test_fraction"] = round(len(test) / total, 4) if total else 0.0
    stats["low_train_pairs"] = stats["train_pairs"] < min_train_pairs
    if not test and stats["source_split"]:
        raise InputError("judges no query that is also in queries.jsonl and the prepared corpus: no test queries "
                         "(remove it to hold out split.test_fraction of the training queries instead)",
                         path="qrels/test.tsv")
    if not test:
        raise InputError("the split left no test queries: the dataset needs more judged queries")
    return SplitResult(train=train, test=test, dev=dev, stats=stats)


def _source_split(dataset: Dataset, qids: list[str], pairs: list[tuple[int, int, float]], leakage_policy: str,
                  stats: dict[str, object]) -> tuple[Qrels, Qrels]:
    """The source's own test split; training queries that are (near-)duplicates of a test query are leakage."""
    stats["source_split"] = True
    test = _judged(dataset.qrels["test"])
    train = _merge(*(_judged(q) for name, q in sorted(dataset.qrels.items()) if name != "test"))
    leaking = {q for q in train if q in test}
    for i, j, _ in pairs:
        a, b = qids[i], qids[j]
        if a in train and b in test:
            leaking.add(a)
        if b in train and a in test:
            leaking.add(b)
    stats["train_queries_near_duplicate_of_test"] = len(leaking)
    stats["train_queries_dropped_for_leakage"] = len(leaking) if leakage_policy == "drop" else 0
    if leakage_policy == "drop":
        train = {q: d for q, d in train.items() if q not in leaking}
    return train, test


def _seeded_split(dataset: Dataset, qids: list[str], pairs: list[tuple[int, int, float]], test_fraction: float,
                  seed: int, stats: dict[str, object]) -> tuple[Qrels, Qrels]:
    """A seeded ``test_fraction`` of the judged queries held out, near-duplicate groups kept whole."""
    stats["source_split"] = False
    test_ids, members = _take_groups(qids, pairs, set(qids), round(test_fraction * len(qids)), seed)
    all_qrels = _merge(*(_judged(q) for q in dataset.qrels.values()))
    stats["train_queries_near_duplicate_of_test"] = 0
    stats["train_queries_dropped_for_leakage"] = 0
    stats["near_duplicate_query_groups"] = sum(1 for m in members.values() if len(m) > 1)
    return ({q: all_qrels[q] for q in qids if q not in test_ids}, {q: all_qrels[q] for q in qids if q in test_ids})


def _take_groups(
    qids: list[str], pairs: list[tuple[int, int, float]], eligible: set[str], target: int, seed: int,
) -> tuple[set[str], dict[int, list[str]]]:
    """Whole near-duplicate groups of the ``eligible`` queries, in seeded random order, until ``target``."""
    groups = group_pairs(len(qids), pairs)
    members: dict[int, list[str]] = {}
    for i, q in enumerate(qids):
        if q in eligible:
            members.setdefault(int(groups[i]), []).append(q)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    chosen: set[str] = set()
    for root in order:
        if len(chosen) >= target:
            break
        chosen.update(members[root])
    return chosen, members


def _carve_dev(
    train: Qrels, qids: list[str], pairs: list[tuple[int, int, float]], fraction: float, seed: int,
) -> tuple[Qrels, Qrels]:
    """Move a seeded ``fraction`` of the training queries to a dev split, near-duplicate groups kept whole."""
    # seed + 1: independent of the test split's shuffle
    dev_ids, _ = _take_groups(qids, pairs, set(train), max(1, round(fraction * len(train))), seed + 1)
    return ({q: d for q, d in train.items() if q not in dev_ids}, {q: d for q, d in train.items() if q in dev_ids})
