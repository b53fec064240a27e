"""Synthetic queries: the offline generator, inverse-cloze positives, round-trip filtering, source weights."""

from __future__ import annotations

import random

import numpy as np
import pytest

from embedtune.data.beir import Dataset, Document, Query
from embedtune.data.origin import query_origin
from embedtune.data.synthetic import (
    OfflineGenerator,
    SyntheticQuery,
    has_judged_queries,
    ict_positive,
    round_trip_filter,
    split_sentences,
    with_synthetic_test,
)
from embedtune.errors import ConfigError
from embedtune.mining import MinedExample, weight_examples

DOC = Document(
    "d1",
    "Vitamin D supplementation and fracture risk",
    "We studied elderly women over five years. Fractures were recorded by hospital records. "
    "Short one. Vitamin D supplementation did not reduce the risk of hip fracture in elderly women.",
)


def test_split_sentences() -> None:
    assert split_sentences("One two. Three (four)! 5 six? Seven") == ["One two.", "Three (four)!", "5 six?", "Seven"]
    assert split_sentences("e.g. lower case stays") == ["e.g. lower case stays"]


def test_offline_generator_title_then_conclusion_then_first_sentence() -> None:
    queries = OfflineGenerator(seed=1).generate([DOC], per_document=3)
    assert [q.kind for q in queries] == ["title", "sentence", "sentence"]
    assert queries[0].text == DOC.title
    assert queries[1].text.startswith("Vitamin D supplementation did not reduce")  # the conclusion
    assert queries[2].text.startswith("We studied elderly women")
    assert all(len(q.text.split()) >= 3 for q in queries)
    assert OfflineGenerator(seed=1).generate([DOC], 3) == queries  # deterministic


def test_ict_positive_removes_the_query_words() -> None:
    rng = random.Random(0)
    sentence = SyntheticQuery("d1", "Fractures were recorded by hospital records.", "sentence")
    removed = ict_positive(DOC, sentence, rng, keep_probability=0.0)
    assert "hospital records" not in removed and removed.startswith(DOC.title)
    title = SyntheticQuery("d1", DOC.title, "title")
    assert ict_positive(DOC, title, rng, keep_probability=0.0) == DOC.text
    assert ict_positive(DOC, title, rng, keep_probability=1.0) == DOC.full_text


def test_round_trip_filter_keeps_queries_that_find_their_document() -> None:
    corpus = np.eye(3, dtype=np.float32)
    queries = [SyntheticQuery("a", "q1", "sentence"), SyntheticQuery("b", "q2", "sentence")]
    vectors = np.array([[1, 0, 0], [1, 0.1, 0.2]], dtype=np.float32)  # the second one finds c, b and a first
    kept, ranks = round_trip_filter(queries, vectors, ["a", "b", "c"], corpus, top_k=1)
    assert kept == queries[:1] and ranks == [1, 0]
    kept, ranks = round_trip_filter(queries, vectors, ["a", "b", "c"], corpus, top_k=3)
    assert kept == queries and ranks == [1, 3]


def test_source_weights() -> None:
    rng = random.Random(0)
    examples = [MinedExample(f"q{i}", "d", ("n",), 0.5, (0.1,)) for i in range(10)]
    assert weight_examples(examples, 0, rng) == []
    assert len(weight_examples(examples, 0.5, rng)) == 5
    assert len(weight_examples(examples, 2, rng)) == 20
    assert len(weight_examples(examples, 1.5, rng)) == 15
    with pytest.raises(ConfigError):
        weight_examples(examples, -1, rng)


def _corpus(n: int) -> dict[str, Document]:
    return {f"d{i}": Document(f"d{i}", f"Title number {i} of the corpus", f"Body {i} says something long enough here.")
            for i in range(n)}


def test_a_dataset_without_judged_queries_gets_a_seeded_synthetic_test_split() -> None:
    corpus = _corpus(10)
    unjudged = Dataset(corpus=corpus, queries={"q": Query("q", "a question")}, qrels={"train": {"q": {"d1": 0}}})
    assert not has_judged_queries(unjudged)
    with_test = with_synthetic_test(unjudged, OfflineGenerator(seed=1), count=200, seed=7)
    test = with_test.qrels["test"]
    assert len(test) == 5  # at most half the documents: the rest can train
    assert all(q == f"syn-test:{d}" for q, docs in test.items() for d in docs)
    assert all(with_test.queries[q].text == corpus[q.removeprefix("syn-test:")].title for q in test)
    assert query_origin(test) == "synthetic" and query_origin({**test, "q": {}}) == "human"
    assert with_synthetic_test(unjudged, OfflineGenerator(seed=1), count=3, seed=7).qrels["test"].keys() <= test.keys()
    assert with_synthetic_test(unjudged, OfflineGenerator(seed=1), count=200, seed=7).qrels == with_test.qrels
    assert has_judged_queries(with_test)
    with pytest.raises(ConfigError, match="synthetic.test_queries"):
        with_synthetic_test(unjudged, OfflineGenerator(), count=0, seed=7)
