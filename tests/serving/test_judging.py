"""The judging page: a blind pooled candidate list per query, graded judgements appended, agreement, export."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
import requests

from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import connect
from embedtune.serving.judging import cohen_kappa, pooled
from embedtune.serving.service import Experiment, SearchService
from tests.conftest import chromium_page, needs_chromium
from tests.serving.test_service import docs, models, versions  # noqa: F401 - fixtures

TOKEN = "s3cret-judging-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_pool_is_the_union_of_the_systems_top_results_shuffled_by_the_query() -> None:
    rankings = {"dense:a": ["d1", "d2", "d3", "d9"], "dense:b": ["d2", "d4", "d5"], "bm25": ["d6", "d1", "d7"]}
    pool = pooled(rankings, 3, "q1")
    assert sorted(pool) == ["d1", "d2", "d3", "d4", "d5", "d6", "d7"]  # d9 is below depth 3
    assert pool == pooled(rankings, 3, "q1") and pooled(rankings, 3, "q2") != pool  # seeded by the query


@pytest.mark.parametrize(("pairs", "kappa"), [
    ([(2, 2), (1, 1), (0, 0), (2, 2)], 1.0),
    ([(2, 0), (0, 2), (2, 0), (0, 2)], -1.0),
    ([(2, 2), (2, 1), (0, 0), (1, 1), (0, 1), (2, 2)], 0.52),  # observed 4/6, chance 11/36
    ([], None),
])
def test_cohen_kappa(pairs, kappa) -> None:
    assert cohen_kappa(pairs) == (pytest.approx(kappa, abs=1e-4) if kappa is not None else None)


def _serve(db_url: str, versions: dict, token: str | None = TOKEN) -> BackgroundServer:  # noqa: F811
    service = SearchService(db_url, Experiment("judging"), judge_versions=(versions["perturbed"],), judge_depth=5)
    return BackgroundServer(service, judge_token=token or "")


def _grade(server: BackgroundServer, judge: str, query_id: str, doc_id: str, grade, request_id=None, **extra):
    return requests.post(f"{server.url}/judge/grade", headers=AUTH, json={
        "request_id": request_id or str(uuid.uuid4()), "judge": judge, "query_id": query_id, "doc_id": doc_id,
        "grade": grade, **extra})


def test_judging_needs_the_token(db_url: str, versions) -> None:  # noqa: F811
    off = _serve(db_url, versions, token=None)
    try:
        assert requests.get(f"{off.url}/judge/next", params={"judge": "ann"}, headers=AUTH).status_code == 403
        assert requests.get(f"{off.url}/judge").status_code == 200  # the page itself; its API needs the token
    finally:
        off.stop()
    server = _serve(db_url, versions)
    try:
        assert requests.get(f"{server.url}/judge/next", params={"judge": "ann"}).status_code == 401
        wrong = requests.get(f"{server.url}/judge/next", params={"judge": "ann"},
                             headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and "wrong judging token" in wrong.json()["detail"]
        assert requests.post(f"{server.url}/judge/queries", json={"text": "x"}).status_code == 401
    finally:
        server.stop()
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM embedtune_judging_queries").fetchone()[0] == 0


def test_a_judge_grades_a_blind_pool_and_bad_requests_store_nothing(db_url: str, versions) -> None:  # noqa: F811
    server = _serve(db_url, versions)
    try:
        added = requests.post(f"{server.url}/judge/queries", headers=AUTH, json={"text": "vitamin D and bones"})
        assert added.status_code == 200 and added.json()["added"]
        shown = requests.get(f"{server.url}/judge/next", params={"judge": "ann"}, headers=AUTH).json()
        query_id, candidates = shown["query_id"], [c["doc_id"] for c in shown["candidates"]]
        assert shown["text"] == "vitamin D and bones" and 5 <= len(candidates) <= 15  # 3 systems' top 5, pooled
        assert not any("score" in c or "system" in c or "rank" in c for c in shown["candidates"])  # blind
        again = requests.get(f"{server.url}/judge/next", params={"judge": "bob"}, headers=AUTH).json()
        assert [c["doc_id"] for c in again["candidates"]] == candidates  # every judge sees the stored pool
        request_id = str(uuid.uuid4())
        assert _grade(server, "ann", query_id, candidates[0], 2, request_id).status_code == 200
        bad = {
            "replayed request": _grade(server, "ann", query_id, candidates[0], 2, request_id),
            "grade out of range": _grade(server, "ann", query_id, candidates[1], 3),
            "grade not a number": _grade(server, "ann", query_id, candidates[1], "very"),
            "unknown query": _grade(server, "ann", "judge-000000000000", candidates[1], 1),
            "document not pooled": _grade(server, "ann", query_id, "not-shown", 1),
            "NUL in the judge": _grade(server, "a\x00n", query_id, candidates[1], 1),
            "not a uuid": _grade(server, "ann", query_id, candidates[1], 1, "abc"),
            "empty query": requests.post(f"{server.url}/judge/queries", headers=AUTH, json={"text": "  "}),
        }
        for name, response in bad.items():
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert bad["replayed request"].status_code == 409
        for doc_id in candidates[1:]:
            assert _grade(server, "ann", query_id, doc_id, None if doc_id == candidates[-1] else 0).status_code == 200
        progress = requests.get(f"{server.url}/judge/next", params={"judge": "ann"}, headers=AUTH).json()
        assert progress["done"] and progress["progress"]["judged"] == len(candidates)
    finally:
        server.stop()
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM embedtune_judgements").fetchone()[0] == len(candidates)


def test_two_judges_at_once_agreement_and_the_export_prepare_reads(db_url: str, versions, docs,  # noqa: F811
                                                                   tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from embedtune.cli import app
    from embedtune.data.sources import read_sources

    server = _serve(db_url, versions)
    try:
        for text in ("vitamin D and bones", "smoking and lung cancer", "aspirin after a heart attack"):
            requests.post(f"{server.url}/judge/queries", headers=AUTH, json={"text": text})

        def judge_all(judge: str, grade_of) -> None:
            while not (shown := requests.get(f"{server.url}/judge/next", params={"judge": judge},
                                             headers=AUTH).json())["done"]:
                for c in shown["candidates"]:
                    assert _grade(server, judge, shown["query_id"], c["doc_id"], grade_of(c["doc_id"])).ok

        first = lambda doc_id: 2 if doc_id < "2" else 0
        threads = [threading.Thread(target=judge_all, args=("ann", first)),
                   threading.Thread(target=judge_all, args=("bob", lambda d: first(d) if d[-1] != "7" else 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        server.stop()
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", db_url)
    report = json.loads(CliRunner().invoke(app, ["judge", "report", "--json"]).output)
    assert report["judged_queries"] == 3 and report["judges"] == 2 and report["doubly_judged"] > 0
    assert 0 < report["cohen_kappa"] <= 1
    data = tmp_path / "judged"  # the data directory: the export lands beside the corpus and touches nothing else
    data.mkdir()
    corpus = "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    (data / "corpus.jsonl").write_text(corpus)
    export = ["judge", "export", "--output", str(data), "--test-queries", "1"]
    exported = CliRunner().invoke(app, export)
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in data.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]
    dataset, _, _ = read_sources(data)
    assert len(dataset.qrels["test"]) == 1 and len(dataset.qrels["train"]) == 2
    again = CliRunner().invoke(app, export)  # a second export would replace the first's queries: asked first
    assert again.exit_code == 1 and "already holds queries.jsonl, qrels/test.tsv, qrels/train.tsv" in again.output
    assert CliRunner().invoke(app, [*export[:-1], "3", "--overwrite"]).exit_code == 0
    assert not (data / "qrels" / "train.tsv").exists() and (data / "corpus.jsonl").read_text() == corpus
    assert len(read_sources(data)[0].qrels["test"]) == 3
    assert {g for q in dataset.qrels["train"].values() for g in q.values()} <= {0, 1, 2}


@needs_chromium
def test_the_judging_page_in_a_real_browser_by_keyboard(db_url: str, versions) -> None:  # noqa: F811
    server = _serve(db_url, versions)
    try:
        with chromium_page() as page:
            page.goto(server.url + "/judge")
            page.fill("#token", TOKEN)
            page.fill("#judge", "carol")
            page.fill("#newq", "statins and muscle pain")
            page.press("#newq", "Enter")
            page.wait_for_selector(".cand")
            total = page.locator(".cand").count()
            page.locator("body").click(position={"x": 5, "y": 5})

            def press(*keys: str, judged: int) -> None:
                for key in keys:
                    page.keyboard.press(key)
                page.wait_for_function(f"document.querySelectorAll('.cand.judged').length >= {judged}")

            press("2", judged=1)  # grade the first; the page moves on to the next ungraded one
            press("j", "k", "1", judged=2)  # down and back up, grade that one
            press("s", judged=3)  # skip the third
    finally:
        server.stop()
    with connect(db_url) as conn:
        grades = [r[0] for r in conn.execute("SELECT grade FROM embedtune_judgements WHERE judge = 'carol' ORDER BY id")]
    assert total >= 5 and grades[:1] == [2] and None in grades and len(grades) >= 3
