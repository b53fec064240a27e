"""A deployment's roles, repeated clicks, erasure of A/B logs and the readiness probe, on a real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import requests
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.serving.app import BackgroundServer
from embedtune.serving.db import SCHEMA_FILES, connect
from embedtune.serving.service import Experiment, SearchService
from tests.serving.test_service import docs, models, versions  # noqa: F401 - fixtures

runner = CliRunner()


def _login_role(owner_url: str, kind: str) -> str:
    """A login role new to the cluster (roles are per cluster, and the tests share one)."""
    name = f"{kind}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN")
    return name


def _search(server: BackgroundServer, user: str = "u1") -> dict:
    response = requests.get(f"{server.url}/search", params={"q": "vitamin D and bone density", "k": 5, "user": user})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_repeated_click_is_answered_but_stored_once(db_url: str, versions) -> None:  # noqa: F811
    """52 identical POST /click: every one is answered 200, the first is stored, the others say ``repeat``."""
    server = BackgroundServer(SearchService(db_url, Experiment("repeats")))
    try:
        body = _search(server)
        click = {"impression_id": body["impression_id"], "doc_id": body["results"][1]["id"]}
        answers = [requests.post(f"{server.url}/click", json=click) for _ in range(52)]
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 52
    assert [a.json()["repeat"] for a in answers] == [False] + [True] * 51
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM embedtune_clicks").fetchone()[0] == 1


def test_the_migration_to_schema_2_removes_repeated_clicks_and_logs_how_many(empty_db_url: str) -> None:
    from pathlib import Path

    from embedtune.serving import db

    with psycopg.connect(empty_db_url, autocommit=True) as conn:  # a database left by schema 1, with repeats
        conn.execute("CREATE TABLE embedtune_schema (version integer PRIMARY KEY, applied_at timestamptz "
                     "NOT NULL DEFAULT now())")
        conn.execute((Path(db.__file__).parent / SCHEMA_FILES[1]).read_text())
        conn.execute("INSERT INTO embedtune_schema (version) VALUES (1)")
        impression = uuid.uuid4()
        conn.execute("INSERT INTO embedtune_impressions (id, experiment, user_id, query, mode, results) "
                     "VALUES (%s, 'e', 'u', 'q', 'off', '[]')", (impression,))
        for doc in ("d1", "d1", "d1", "d2"):
            conn.execute("INSERT INTO embedtune_clicks (impression_id, doc_id, rank, arm, version) "
                         "VALUES (%s, %s, 1, 'control', 'v')", (impression, doc))
    with connect(empty_db_url, migrate_schema=True) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT doc_id FROM embedtune_clicks")) == ["d1", "d2"]
        (detail,) = conn.execute("SELECT detail FROM embedtune_events WHERE event = 'migrate'").fetchone()
        assert detail == {"schema": 2, "repeated_clicks_removed": 2}


def test_the_service_role_reads_indexes_and_only_adds_to_the_logs(db_url: str, versions,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """After `embedtune roles`, the service runs as a member of embedtune_service: it searches and logs, but
    cannot truncate, update, delete, purge or switch off the append-only triggers; a reader runs the read-only
    commands (versions, ab report) and cannot write."""
    service, reader = _login_role(db_url, "svc"), _login_role(db_url, "rdr")
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", db_url)
    granted = runner.invoke(app, ["roles", "--service", service, "--reader", reader])
    assert granted.exit_code == 0, granted.output
    assert f"{service} is a member of embedtune_service" in granted.output

    service_url = make_conninfo(db_url, user=service)
    server = BackgroundServer(SearchService(service_url, Experiment("as-service")), judge_token="t")
    try:
        body = _search(server)
        click = requests.post(f"{server.url}/click", json={"impression_id": body["impression_id"],
                                                           "doc_id": body["results"][0]["id"]})
        assert click.status_code == 200, click.text
        auth = {"Authorization": "Bearer t"}  # the judging page writes as the service too
        assert requests.post(f"{server.url}/judge/queries", headers=auth, json={"text": "vitamin D"}).ok
        shown = requests.get(f"{server.url}/judge/next", params={"judge": "ann"}, headers=auth).json()
        graded = requests.post(f"{server.url}/judge/grade", headers=auth, json={
            "request_id": str(uuid.uuid4()), "judge": "ann", "query_id": shown["query_id"],
            "doc_id": shown["candidates"][0]["doc_id"], "grade": 2})
        assert graded.status_code == 200, graded.text
    finally:
        server.stop()
    with psycopg.connect(service_url, autocommit=True) as conn:
        for statement in ("TRUNCATE embedtune_clicks", "TRUNCATE embedtune_impressions CASCADE",
                          "UPDATE embedtune_judgements SET grade = 0", "DELETE FROM embedtune_judgements",
                          "UPDATE embedtune_clicks SET rank = 1", "DELETE FROM embedtune_clicks",
                          "DELETE FROM embedtune_impressions",
                          "ALTER TABLE embedtune_clicks DISABLE TRIGGER USER",
                          "INSERT INTO embedtune_events (event) VALUES ('forged')",
                          f"DROP TABLE {versions['base']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", service_url)
    refused = runner.invoke(app, ["purge", "--user", "u1"])
    assert refused.exit_code == 1 and "purging the A/B logs is for their owner" in refused.output

    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", make_conninfo(db_url, user=reader))
    listed = runner.invoke(app, ["versions"])
    assert listed.exit_code == 0 and versions["base"] in listed.output, listed.output
    reported = runner.invoke(app, ["ab", "report", "as-service"])
    assert reported.exit_code == 0 and "Traceback" not in reported.output, reported.output
    with psycopg.connect(make_conninfo(db_url, user=reader), autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO embedtune_experiments (name, mode, control, treatment_share, lexical_weight) "
                     "VALUES ('x', 'off', 'v', 0, 0)")


def test_the_owner_purges_a_user_and_old_logs_and_each_purge_is_logged(db_url: str, versions,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = BackgroundServer(SearchService(db_url, Experiment("erasure")))
    try:
        for user in ("alice", "alice", "bob"):
            body = _search(server, user)
            requests.post(f"{server.url}/click", json={"impression_id": body["impression_id"],
                                                       "doc_id": body["results"][0]["id"]})
    finally:
        server.stop()
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", db_url)
    erased = runner.invoke(app, ["purge", "--user", "alice"])
    assert erased.exit_code == 0 and "purged 2 search(es) and 2 click(s)" in erased.output, erased.output
    assert "purged 0 search(es)" in runner.invoke(app, ["purge", "--older-than-days", "1"]).output  # all are new
    assert runner.invoke(app, ["purge"]).exit_code == 1  # neither a user nor an age
    with connect(db_url) as conn:
        assert [r[0] for r in conn.execute("SELECT user_id FROM embedtune_impressions")] == ["bob"]
        events = [r[0] for r in conn.execute("SELECT detail FROM embedtune_events WHERE event = 'purge' ORDER BY at")]
        assert [(e["by"], e["impressions"], e["clicks"]) for e in events] == [("user", 2, 2), ("age", 0, 0)]
        assert "alice" not in str(events)  # the erased id is not kept in the log of its erasure
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("TRUNCATE embedtune_clicks")  # not even the owner, by accident
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM embedtune_clicks")


def test_readyz_says_whether_searches_can_be_answered(db_url: str, versions) -> None:  # noqa: F811
    """/readyz is 200 while the database answers and the arms' versions are in it; 503 with the reason once an
    arm's version is gone or the database cannot be reached. /healthz (alive) stays 200."""
    server = BackgroundServer(SearchService(db_url, Experiment("probe", "interleave", treatment=versions["perturbed"])))
    try:
        ready = requests.get(f"{server.url}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] and ready.json()["serving"] == versions["base"]
        with connect(db_url) as conn, conn.transaction():  # what `embedtune prune` does to an old version
            conn.execute(f"DROP TABLE {versions['perturbed']}, {versions['perturbed']}_docs")
            conn.execute("DELETE FROM embedtune_versions WHERE version = %s", (versions["perturbed"],))
        gone = requests.get(f"{server.url}/readyz")
        assert gone.status_code == 503 and "no longer in the database" in gone.json()["reason"]
        server.service.pool.close()
        down = requests.get(f"{server.url}/readyz")
        assert down.status_code == 503 and "does not answer" in down.json()["reason"]
        assert requests.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
