"""Where a test split's queries come from: people (qrels, pairs, clicks, judgements) or a generator.

Only a dataset without any human-judged query gets synthetic test queries (:mod:`embedtune.data.synthetic`); their
ids carry :data:`SYNTHETIC_TEST_PREFIX`, so every stage that reports a figure can label it, and the promotion gate
can refuse a model measured on them alone.
"""

from __future__ import annotations

from collections.abc import Iterable

SYNTHETIC_TEST_PREFIX = "syn-test:"


def query_origin(query_ids: Iterable[str]) -> str:
    """``synthetic`` when the test split's queries were generated, else ``human``."""
    ids = list(query_ids)
    return "synthetic" if ids and all(q.startswith(SYNTHETIC_TEST_PREFIX) for q in ids) else "human"
