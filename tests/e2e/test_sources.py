"""End to end on each input kind: a pairs file, a click log, and documents only (synthetic queries), with
judgements exported from the judging store as the test split, and with no judgement at all.

Each builds a small dataset from SciFact in the format a team would have, points `data.source` at it and runs
the real `dvc repro` in a fresh copy of the project.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from tests.conftest import SCIFACT, commit_all, copy_project, project_env, sh

pytestmark = pytest.mark.e2e


def _scifact(n_queries: int, n_docs: int, seed: int = 0):
    corpus = {json.loads(l)["_id"]: json.loads(l) for l in (SCIFACT / "corpus.jsonl").read_text().splitlines()}
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (SCIFACT / "queries.jsonl").read_text().splitlines()}

    def qrels(split: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
            q, d, _ = line.split("\t")
            out.setdefault(q, []).append(d)
        return out

    rng = random.Random(seed)
    train = qrels("train")
    chosen = rng.sample(sorted(train), n_queries)
    positives = {d for q in chosen for d in train[q]}
    others = rng.sample(sorted(set(corpus) - positives), n_docs - len(positives))
    return corpus, queries, train, chosen, sorted(positives | set(others)), qrels("test")


def _text(doc: dict) -> str:
    return f"{doc['title']} {doc['text']}".strip()


def _run(tmp_path: Path, source: Path, name: str, *overrides: str) -> tuple[Path, str]:
    root, env = copy_project(tmp_path)
    sh([sys.executable, "-m", "embedtune.config", "data=scifact_sample", f"data.name={name}",
        f"data.source={source}", "data.sample_queries=0", "train.epochs=1", *overrides], root, env)
    commit_all(root, env, name)
    return root, sh(["dvc", "repro"], root, env)


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / name).read_text())


def _sane(root: Path) -> None:
    for name in ("baseline.json", "finetuned.json"):
        metrics = _metrics(root, name)
        assert 0.2 < metrics["ndcg@10"] <= 1.0 and metrics["recall@100"] >= metrics["recall@10"]
    reindex, data = _metrics(root, "reindex.json"), _metrics(root, "data.json")
    assert reindex["documents"] == data["documents_out"] and reindex["rows"] >= reindex["documents"]


def test_pairs_file(tmp_path: Path) -> None:
    corpus, queries, train, chosen, docs, _ = _scifact(150, 350)
    data = tmp_path / "faq"
    data.mkdir()
    positives = {d for q in chosen for d in train[q]}
    rows = []
    for i, q in enumerate(chosen):
        for d in train[q]:  # documents named only by text: they become corpus entries
            row = {"query": queries[q], "positive": _text(corpus[d])}
            if i % 3 == 0:
                row["negative_id"] = docs[(i * 7) % len(docs)] if docs[(i * 7) % len(docs)] not in positives else None
            rows.append(row)
    with (data / "corpus.jsonl").open("w") as handle:  # distractors only, by id
        for d in docs:
            if d not in positives:
                handle.write(json.dumps({"_id": d, "title": corpus[d]["title"], "text": corpus[d]["text"]}) + "\n")
    with (data / "pairs.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    root, _ = _run(tmp_path / "run", data, "faq")
    counts = _metrics(root, "data.json")
    assert counts["sources"]["pairs"] == len(rows) and counts["sources"]["documents_created_from_text"] > 100
    split = _metrics(root, "split.json")
    assert split["source_split"] is False and split["test_queries"] > 10  # held out by query, 15%
    assert _metrics(root, "mine.json")["labelled"]["explicit_negatives_used"] > 0
    _sane(root)


def test_click_log(tmp_path: Path) -> None:
    corpus, queries, train, chosen, docs, _ = _scifact(150, 350, seed=1)
    data = tmp_path / "clicks"
    data.mkdir()
    with (data / "corpus.jsonl").open("w") as handle:
        for d in docs:
            handle.write(json.dumps({"_id": d, "title": corpus[d]["title"], "text": corpus[d]["text"]}) + "\n")
    rng = random.Random(2)
    with (data / "clicks.jsonl").open("w") as handle:
        for session in range(2):
            for q in chosen:
                positive = train[q][0]
                shown = rng.sample([d for d in docs if d != positive], 4)
                shown.insert(rng.randrange(5), positive)
                handle.write(json.dumps({"query": queries[q].upper() if session else queries[q], "shown": shown,
                                         "clicked": [positive], "timestamp": f"2026-05-0{session + 1}T10:00:00",
                                         "session": f"user{session}-{q}"}) + "\n")
        for i in range(30):  # a crawler: one session, every result clicked
            handle.write(json.dumps({"query": f"crawl {i}", "shown": docs[:5], "clicked": docs[:5],
                                     "timestamp": "2026-05-03T00:00:00", "session": "bot"}) + "\n")
    root, _ = _run(tmp_path / "run", data, "clicks", "prepare.clicks.min_clicks=2",
                   "prepare.clicks.max_searches_per_session=20")
    sources = _metrics(root, "data.json")["sources"]
    assert sources["click_pairs"] == len(chosen) and sources["queries_merged"] >= len(chosen)
    assert sources["sessions_dropped_bot_like"] == 1 and sources["searches_dropped_bot_like"] == 30
    assert sources["click_skip_negatives"] > 0
    _sane(root)


def _judge(db_url: str, data: Path, queries: dict[str, str], relevant: dict[str, list[str]], others: list[str]) -> None:
    """Judge ``queries`` as an expert would through the judging store (pooled candidates: the relevant documents
    among a few others; 2 for relevant, 0 for the rest), then export them into ``data`` beside its corpus."""
    import uuid

    from embedtune.serving import judging
    from embedtune.serving.db import connect

    with connect(db_url) as conn:
        judging.add_queries(conn, queries.items(), source="expert")
        for q in queries:
            pool = judging.pool_for(conn, q, lambda _, q=q: {"bm25": [*relevant[q], *others[:3]]}, version="e2e", depth=10)
            for d in pool["ids"]:
                judging.record(conn, request_id=str(uuid.uuid4()), judge="ann", query_id=q, doc_id=d,
                               grade=2 if d in relevant[q] else 0, note="", version="e2e")
        counts = judging.export_qrels(conn, data, test_queries=len(queries))
    assert counts["test_queries"] == len(queries) and counts["train_queries"] == 0


def test_documents_only_with_synthetic_queries_and_judged_test_queries(tmp_path: Path, db_url: str) -> None:
    """The documents-only path: a corpus, synthetic queries to train, expert judgements (exported from the
    judging store into the data directory) as the test split."""
    corpus, queries, _, _, _, test = _scifact(10, 20, seed=3)
    rng = random.Random(4)
    test_queries = rng.sample(sorted(test), 40)
    docs = {d for q in test_queries for d in test[q]}
    docs |= set(rng.sample(sorted(set(corpus) - docs), 300 - len(docs)))
    data = tmp_path / "docs"
    data.mkdir()
    with (data / "corpus.jsonl").open("w") as handle:
        for d in sorted(docs):
            handle.write(json.dumps({"_id": d, "title": corpus[d]["title"], "text": corpus[d]["text"]}) + "\n")
    _judge(db_url, data, {q: queries[q] for q in test_queries}, test, sorted(docs - {d for q in test for d in test[q]}))
    root, out = _run(tmp_path / "run", data, "docs", "synthetic.enabled=true", "synthetic.max_documents=150")
    assert "no labelled training pairs" in out
    synthetic = _metrics(root, "synthetic.json")
    assert synthetic["documents"] == 150 and 0 < synthetic["kept_round_trip"] <= synthetic["generated"]
    mine = _metrics(root, "mine.json")
    assert mine["training_examples"]["labelled"] == 0 and mine["training_examples"]["synthetic"] > 50
    assert _metrics(root, "split.json")["test_queries"] == 40  # only human-labelled queries are ever tested
    assert _metrics(root, "comparison.json")["test_source"] == "human"
    _sane(root)


def test_documents_alone_train_and_test_on_synthetic_queries_and_are_not_promoted(tmp_path: Path) -> None:
    corpus, *_ = _scifact(10, 20, seed=5)
    data = tmp_path / "docs"
    data.mkdir()
    with (data / "corpus.jsonl").open("w") as handle:
        for d in sorted(random.Random(6).sample(sorted(corpus), 200)):
            handle.write(json.dumps({"_id": d, "title": corpus[d]["title"], "text": corpus[d]["text"]}) + "\n")
    root, out = _run(tmp_path / "run", data, "docs", "synthetic.enabled=true", "synthetic.max_documents=100",
                     "synthetic.test_queries=40")
    assert "40 synthetic queries stand in for the test split" in out
    split = _metrics(root, "split.json")
    assert split["test_queries"] == 40 and split["train_queries"] == 0
    synthetic = _metrics(root, "synthetic.json")
    assert synthetic["documents_held_out_for_the_synthetic_test"] == 40 and synthetic["documents"] == 100
    held_out = {line.split("\t")[1] for line in (root / "data/split/test.tsv").read_text().splitlines()[1:]}
    trained_on = {json.loads(line)["doc_id"] for line in (root / "data/synthetic/queries.jsonl").read_text().splitlines()}
    assert held_out and not held_out & trained_on  # a document tested on synthetic queries never trains
    for name in ("baseline.json", "finetuned.json", "comparison.json", "hybrid.json"):
        assert _metrics(root, name)["test_source"] == "synthetic", name
    reindex = _metrics(root, "reindex.json")
    assert not reindex["promoted"] and "synthetic test queries" in reindex["gate"]
    hybrid = _metrics(root, "hybrid.json")  # nothing judged to choose BM25's weight on: the dense model alone
    assert hybrid["lexical_weight"] == 0 and hybrid["lexical_weight_choice"]["queries"] == 0


def test_a_folder_of_pdf_word_html_and_markdown_files_trains_on_synthetic_queries(tmp_path: Path) -> None:
    """The documents-only path from files: SciFact abstracts as PDF pages, Word and HTML sections and Markdown
    sections (five per file), plus a corrupt and a scanned PDF, through `dvc repro` with synthetic queries."""
    from tests.documents import files

    corpus, *_ = _scifact(10, 20, seed=7)
    chosen = [corpus[d] for d in sorted(random.Random(8).sample(sorted(corpus), 200))]
    folder = tmp_path / "handbook" / "documents"
    for sub in ("pdf", "word", "web", "notes"):
        (folder / sub).mkdir(parents=True)
    for f in range(10):
        group = chosen[f * 20:(f + 1) * 20]
        files.pdf(folder / "pdf" / f"paper{f}.pdf", [f"{d['title']}. {d['text']}" for d in group[:5]],
                  title=f"Papers {f}")
        sections = [[(1, d["title"][:80], d["text"]) for d in part] for part in (group[5:10], group[10:15], group[15:])]
        files.docx(folder / "word" / f"report{f}.docx", f"Report {f}", sections[0])
        files.html(folder / "web" / f"page{f}.html", f"Page {f}", sections[1])
        files.markdown(folder / "notes" / f"notes{f}.md", sections[2])
    (folder / "pdf" / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    files.image_only_pdf(folder / "pdf" / "scanned.pdf")
    root, out = _run(tmp_path / "run", folder.parent, "handbook", "synthetic.enabled=true",
                     "synthetic.max_documents=100", "synthetic.test_queries=40")
    report = _metrics(root, "data.json")["documents"]
    assert report["files"] == 42 and report["skipped"] == 2 and report["by_type"]["pdf"] == 12
    assert {s["path"] for s in report["skipped_files"]} == {"pdf/broken.pdf", "pdf/scanned.pdf"}
    assert "needs OCR" in out and report["chunk_tokens"]["max"] <= 256
    ids = [json.loads(line)["_id"] for line in (root / "data/prepared/corpus.jsonl").read_text().splitlines()]
    assert "pdf/paper0.pdf#p1-1" in ids and "word/report0.docx#s1-1" in ids and "notes/notes9.md#s5-1" in ids
    assert len(ids) >= 200 and _metrics(root, "data.json")["documents_out"] == len(ids)
    assert _metrics(root, "finetuned.json")["test_source"] == "synthetic"
    _sane(root)
    # a search names the file (and the PDF page) each hit comes from
    version = _metrics(root, "reindex.json")["version"]
    lines = sh(["embedtune", "search", chosen[0]["title"], "-k", "5", "--version", version], root, project_env(),
               stdout_only=True).splitlines()
    assert "pdf/paper0.pdf, page 1" in [line.strip() for line in lines], lines
