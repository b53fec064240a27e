"""Pairs files and click logs: read, merged into the dataset, explicit negatives, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedtune.data.prepare import prepare_dataset, remap_negatives
from embedtune.data.sources import ClickOptions, read_sources
from embedtune.errors import InputError
from embedtune.mining import mine_hard_negatives
from tests.conftest import write_beir

CORPUS = [{"_id": f"d{i}", "title": f"Doc {i}", "text": f"Text of document number {i} on subject {i}."}
          for i in range(6)]


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")


def test_pairs_by_text_create_documents_and_merge_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    _jsonl(root / "pairs.jsonl", [
        {"query": "How do I reset my password?", "positive": "Open settings and choose reset password.",
         "negative": "Billing happens monthly."},
        {"query": "how do I  reset my password?", "positive": "Open settings and choose reset password."},
        {"query": "When am I billed?", "positive": "Billing happens monthly."},
    ])
    dataset, negatives, counts = read_sources(root)
    assert len(dataset.corpus) == 2 and len(dataset.queries) == 2
    assert counts["pairs"] == 3 and counts["queries_merged"] == 1 and counts["documents_created_from_text"] == 2
    (reset_q,) = [q.id for q in dataset.queries.values() if "reset" in q.text]
    (billing_d,) = [d.id for d in dataset.corpus.values() if "Billing" in d.text]
    assert negatives == {reset_q: {billing_d}}
    assert set(dataset.qrels) == {"train"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_pairs_by_id_in_csv_and_parquet(tmp_path: Path, fmt: str) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    frame = pd.DataFrame({"query": ["first question", "second question"], "positive_id": ["d1", "d2"],
                          "negative_id": ["d3", None]})
    if fmt == "csv":
        frame.to_csv(root / "pairs.csv", index=False)
    else:
        frame.to_parquet(root / "pairs.parquet")
    dataset, negatives, counts = read_sources(root)
    assert counts["pairs"] == 2 and counts["pair_negatives"] == 1
    assert sorted(d for docs in dataset.qrels["train"].values() for d in docs) == ["d1", "d2"]
    assert list(negatives.values()) == [{"d3"}]


@pytest.mark.parametrize(
    ("rows", "line", "field", "fragment"),
    [
        ([{"query": "q", "positive": "p"}, {"positive": "p"}], 2, "query", "needs 'query'"),
        ([{"query": "q"}], 1, "positive", "needs 'positive'"),
        ([{"query": "q", "positive": "  "}], 1, "positive", "missing or empty"),
        ([{"query": "q", "positive_id": "nope"}], 1, "positive_id", "unknown document id 'nope'"),
        ([{"query": "q", "positive": 3.5j if False else ["a"]}], 1, "positive", "must be text"),
        (['{"query": "q", "positive": "p"', ], 1, None, "malformed JSON"),
    ],
)
def test_bad_pairs(tmp_path: Path, rows, line, field, fragment) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    _jsonl(root / "pairs.jsonl", rows)
    with pytest.raises(InputError) as info:
        read_sources(root)
    assert info.value.path.endswith("pairs.jsonl") and info.value.line == line and info.value.field == field
    assert fragment in str(info.value)


def test_bad_csv_pairs_name_the_line(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    (root / "pairs.csv").write_bytes(b"query,positive\nfine,also fine\nbad,\xff\xfe\n")
    with pytest.raises(InputError, match=r"pairs.csv:3: bytes are not valid UTF-8"):
        read_sources(root)
    (root / "pairs.csv").write_text("query,positive\na,b,c\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pairs.csv:2: more cells than the header"):
        read_sources(root)


@pytest.mark.parametrize(
    ("name", "content", "line", "fragment"),
    [
        ("pairs.csv", "", None, "contains no rows"),
        ("pairs.csv", "query,positive_id\n", None, "contains no rows"),
        ("pairs.jsonl", "\n", None, "contains no rows"),
        ("clicks.jsonl", "", None, "contains no rows"),
        ("pairs.csv", "question,positive_id\nfirst question,d1\n", 1,
         "no 'query' or 'query_id' column (columns: question, positive_id)"),
        ("pairs.csv", "query,doc\nfirst question,d1\n", 1, "no 'positive' or 'positive_id' column"),
        ("clicks.csv", "query,shown,clicks,timestamp\nq,d1,d1,t\n", 1, "no 'clicked' column"),
    ],
)
def test_empty_tables_and_misnamed_columns_are_reported_against_the_file(tmp_path: Path, name, content, line,
                                                                         fragment) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    (root / name).write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_sources(root)
    assert info.value.path.endswith(name) and info.value.line == line and fragment in str(info.value)


def test_misnamed_parquet_column_is_reported(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    pd.DataFrame({"question": ["q"], "positive_id": ["d1"]}).to_parquet(root / "pairs.parquet")
    with pytest.raises(InputError, match=r"pairs.parquet: no 'query' or 'query_id' column \(columns: question, positive_id\)"):
        read_sources(root)


@pytest.mark.parametrize("rows", [[], [("q1", "d1", 0)]])
def test_qrels_without_a_relevant_pair_are_an_error(tmp_path: Path, rows) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [{"_id": "q1", "text": "a question"}],
                      {"train": [("q1", "d1", 1)], "test": rows})
    with pytest.raises(InputError, match=r"test.tsv: judges no query-document pair as relevant"):
        read_sources(root)


def _search(query: str, shown: list[str], clicked: list[str], session: str = "s1", ts: str = "2026-01-01T10:00:00"):
    return {"query": query, "shown": shown, "clicked": clicked, "timestamp": ts, "session": session}


def test_clicks_aggregate_min_clicks_skip_above_and_bots(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    rows = [
        _search("Subject Three", ["d0", "d1", "d3"], ["d3"], "a"),
        _search("subject  three", ["d1", "d3"], ["d3"], "b"),  # same query after normalisation
        _search("subject three", ["d0", "d4"], ["d4"], "c"),  # d4 clicked once only
        _search("other", ["d0", "d1", "d2", "d5"], ["d0", "d1", "d2", "d5"], "d"),  # clicks everything shown
        *[_search(f"bot {i}", ["d0"], ["d0"], "bot") for i in range(4)],
    ]
    _jsonl(root / "clicks.jsonl", rows)
    options = ClickOptions(min_clicks=2, max_searches_per_session=3, max_clicks_per_search=3)
    dataset, negatives, counts = read_sources(root, options)
    (qid,) = [q.id for q in dataset.queries.values() if q.text.lower() == "subject three"]
    assert dataset.qrels["train"] == {qid: {"d3": 1}}
    assert negatives[qid] == {"d0", "d1"}  # shown above the click, skipped; d4 was clicked (so never a negative)
    assert counts["click_pairs"] == 1 and counts["click_pairs_below_min_clicks"] == 1
    assert counts["sessions_dropped_bot_like"] == 1 and counts["searches_dropped_bot_like"] == 5


TS = "2026-05-01T10:00:00Z"


@pytest.mark.parametrize("timestamp", ["2026-05-01T10:00:00Z", "2026-05-01 10:00:00+02:00", "2026-05-01",
                                       1714560000, 1714560000.5, "1714560000"])
def test_click_times_are_iso_8601_or_epoch_seconds(tmp_path: Path, timestamp) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    _jsonl(root / "clicks.jsonl", [{**_search("fine", ["d1"], ["d1"]), "timestamp": timestamp}])
    dataset, _, _ = read_sources(root)
    assert len(dataset.qrels["train"]) == 1


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ({"query": "q", "shown": ["d1"], "clicked": ["d9"], "timestamp": TS}, "clicked", "unknown document id"),
        ({"query": "q", "shown": ["d1"], "clicked": ["d2"], "timestamp": TS}, "clicked", "was not shown"),
        ({"query": "q", "shown": "d1", "clicked": [], "timestamp": TS}, "shown", "must be a JSON list"),
        ({"query": "q", "shown": ["d1", {"id": "d2"}], "clicked": [], "timestamp": TS}, "shown", "holds {'id'"),
        ({"query": "q", "shown": ["d1"], "clicked": []}, "timestamp", "missing"),
        ({"query": "q", "clicked": [], "timestamp": TS}, "shown", "missing"),
        ({"query": "q", "shown": ["d1"], "clicked": [], "timestamp": "yesterday-ish"}, "timestamp", "ISO 8601"),
        ({"query": "q", "shown": ["d1"], "clicked": [], "timestamp": 12}, "timestamp", "not a time from 2000"),
        ({"query": "q", "shown": ["d1"], "clicked": [], "timestamp": 1714560000000}, "timestamp", "epoch seconds"),
        ({"query": "q", "shown": ["d1"], "clicked": [], "timestamp": True}, "timestamp", "not a time"),
        ({"query": "q", "shown": ["d1"], "clicked": [], "timestamp": [TS]}, "timestamp", "not a time"),
    ],
)
def test_bad_clicks(tmp_path: Path, row, field, fragment) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    _jsonl(root / "clicks.jsonl", [_search("fine", ["d1"], ["d1"]), row])
    with pytest.raises(InputError) as info:
        read_sources(root)
    assert info.value.line == 2 and info.value.field == field and fragment in str(info.value)


def test_clicks_csv_lists(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    (root / "clicks.csv").write_text(f'query,shown,clicked,timestamp\nsubject two,"[""d1"", ""d2""]",d2,{TS}\n'
                                     f"subject two,d0|d2,d2,1714560000\n", encoding="utf-8")
    dataset, negatives, _ = read_sources(root)
    (qid,) = dataset.queries
    assert dataset.qrels["train"] == {qid: {"d2": 1}} and negatives == {qid: {"d0", "d1"}}


def test_sources_need_a_corpus_and_a_corpus_alone_is_read(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "d", CORPUS, [], {})
    dataset, negatives, _ = read_sources(root)  # documents only: prepare then asks for synthetic queries
    assert set(dataset.corpus) == {d["_id"] for d in CORPUS} and dataset.qrels == {} and negatives == {}
    (root / "corpus.jsonl").unlink()
    _jsonl(root / "clicks.jsonl", [_search("q", ["d1"], ["d1"])])
    with pytest.raises(InputError, match="missing corpus.jsonl"):
        read_sources(root)


def test_explicit_negatives_survive_prepare_and_come_first_in_mining(tmp_path: Path) -> None:
    corpus = CORPUS + [{"_id": "d0copy", "title": "Doc 0", "text": "Text of document number 0 on subject 0."}]
    root = write_beir(tmp_path / "d", corpus, [], {})
    _jsonl(root / "pairs.jsonl", [{"query": "subject one", "positive_id": "d1", "negative_id": "d0copy"}])
    dataset, negatives, _ = read_sources(root)
    prepared, report = prepare_dataset(dataset, near_duplicate_threshold=None)
    negatives = remap_negatives(negatives, report, prepared)
    (qid,) = negatives
    assert negatives[qid] == {"d0"}  # the duplicate was merged onto d0
    ids = sorted(prepared.corpus)
    vectors = np.eye(len(ids), dtype=np.float32)
    query = vectors[[ids.index("d1")]] * 0.9 + vectors[[ids.index("d5")]] * 0.4
    examples, stats = mine_hard_negatives(prepared.qrels["train"], [qid], query, ids, vectors, num_negatives=2,
                                          range_min=0, range_max=6, relative_margin=None,
                                          explicit_negatives=negatives)
    assert examples[0].negative_ids == ("d0", "d5") and stats["explicit_negatives_used"] == 1
