"""``embedtune serve``: an HTTP search service over the pgvector index versions, with A/B testing.

* ``GET /search?q=...&k=10&user=...`` answers from the serving index, or — in an experiment — from the arm the
  user is bucketed into (``bucket``), or from a team-draft interleaving of both arms (``interleave``). Every
  response carries an ``impression_id``.
* ``POST /click`` ``{"impression_id": ..., "doc_id": ...}`` records a click.
* ``GET /`` is a small search page; ``GET /docs`` the OpenAPI UI.

Impressions and clicks go to append-only PostgreSQL tables (a trigger refuses UPDATE and DELETE) with the
model versions, ranks and timestamps, so they survive restarts and feed ``embedtune ab report`` and, exported
as a click log, the next training round. Each arm embeds queries with its own model, and the fingerprint
guard of :mod:`embedtune.index` refuses a model that is not the one its index was built with.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from embedtune import abtest, index
from embedtune.errors import EmbedtuneError

MAX_QUERY_CHARS = 1000
MAX_K = 100
MODES = ("off", "bucket", "interleave")


class BadRequest(EmbedtuneError):
    status = 400


class NotFound(EmbedtuneError):
    status = 404


SCHEMA = """
CREATE TABLE IF NOT EXISTS embedtune_experiments (
    name            text PRIMARY KEY,
    mode            text NOT NULL,
    control         text NOT NULL,
    treatment       text,
    treatment_share double precision NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now()
);
-- BM25's weight in hybrid search: part of an experiment's set-up, so a restart with another weight cannot mix
-- rankings of two systems under one name (experiments from before hybrid search ranked by meaning only: 0)
ALTER TABLE embedtune_experiments ADD COLUMN IF NOT EXISTS lexical_weight double precision NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS embedtune_impressions (
    id         uuid PRIMARY KEY,
    experiment text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    user_id    text NOT NULL,
    query      text NOT NULL,
    mode       text NOT NULL,
    arm        text,
    results    jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS embedtune_impressions_experiment ON embedtune_impressions (experiment, at);
CREATE TABLE IF NOT EXISTS embedtune_clicks (
    id            bigserial PRIMARY KEY,
    impression_id uuid NOT NULL REFERENCES embedtune_impressions(id),
    at            timestamptz NOT NULL DEFAULT now(),
    doc_id        text NOT NULL,
    rank          integer NOT NULL,
    arm           text NOT NULL,
    version       text NOT NULL
);
CREATE INDEX IF NOT EXISTS embedtune_clicks_impression ON embedtune_clicks (impression_id);
CREATE OR REPLACE FUNCTION embedtune_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'embedtune impressions and clicks are append-only'; END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'embedtune_impressions_append_only') THEN
    CREATE TRIGGER embedtune_impressions_append_only BEFORE UPDATE OR DELETE ON embedtune_impressions
      FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'embedtune_clicks_append_only') THEN
    CREATE TRIGGER embedtune_clicks_append_only BEFORE UPDATE OR DELETE ON embedtune_clicks
      FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
  END IF;
END $$;
"""


def ensure_log_schema(conn) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7261)")  # several workers may start at once
        conn.execute(SCHEMA)


@dataclass(frozen=True)
class Experiment:
    name: str
    mode: str = "off"
    control: str | None = None  # version; None: whatever serves
    treatment: str | None = None
    treatment_share: float = 0.5

    def validate(self) -> None:
        if self.mode not in MODES:
            raise BadRequest(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "off" and not self.treatment:
            raise BadRequest(f"mode {self.mode!r} needs a treatment version")
        if not 0.0 <= self.treatment_share <= 1.0:
            raise BadRequest("treatment share must be between 0 and 1")


@dataclass
class Arm:
    name: str
    version: str
    fingerprint: str
    embed: Any  # callable: list of texts -> unit vectors (PyTorch model or ONNX export)


class SearchService:
    """The service's logic, independent of HTTP (the FastAPI app is a thin layer over it)."""

    def __init__(self, url: str, experiment: Experiment, *, ef_search: int = 80, pool_size: int = 8,
                 onnx: dict[str, Path] | None = None, lexical_weight: float = 0.0) -> None:
        from pgvector.psycopg import register_vector
        from psycopg_pool import ConnectionPool

        from embedtune.lexical import check_lexical_weight
        from embedtune.models import load_model

        experiment.validate()
        self.lexical_weight = check_lexical_weight(lexical_weight)
        with index.connect(url) as conn:
            control = experiment.control or index.serving_version(conn)
            if control is None:
                raise NotFound("no index is serving and no control version was given: run `dvc repro` first")
            versions = {"control": index.get_version(conn, control)}
            if experiment.mode != "off":
                versions["treatment"] = index.get_version(conn, experiment.treatment)
            ensure_log_schema(conn)
            conn.execute(
                "INSERT INTO embedtune_experiments (name, mode, control, treatment, treatment_share, lexical_weight) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (experiment.name, experiment.mode, versions["control"].version,
                 versions.get("treatment").version if "treatment" in versions else None, experiment.treatment_share,
                 self.lexical_weight),
            )
            stored = conn.execute("SELECT mode, control, treatment, treatment_share, lexical_weight "
                                  "FROM embedtune_experiments WHERE name = %s", (experiment.name,)).fetchone()
        wanted = (experiment.mode, versions["control"].version,
                  versions["treatment"].version if "treatment" in versions else None, experiment.treatment_share,
                  self.lexical_weight)
        if tuple(stored) != wanted:
            raise BadRequest(f"experiment {experiment.name!r} already exists with another set-up {tuple(stored)}; "
                             "choose a new experiment name")
        self.experiment = experiment
        self.ef_search = ef_search
        self.arms: dict[str, Arm] = {}
        models: dict[str, Any] = {}
        from embedtune.embeddings import encode

        for name, version in versions.items():
            if onnx and name in onnx:
                from embedtune.onnx_export import OnnxEncoder

                encoder = OnnxEncoder(onnx[name])
                source, fingerprint, embed = str(onnx[name]), encoder.fingerprint, encoder.encode
            else:
                source, fingerprint = version.model_path, index.model_fingerprint(Path(version.model_path))
                if version.model_path not in models:
                    models[version.model_path] = load_model(version.model_path)
                model, precision = models[version.model_path], index.query_precision(version)
                embed = lambda texts, model=model, precision=precision: encode(model, texts, precision=precision,
                                                                               show_progress=False)
            if fingerprint != version.fingerprint:
                raise index.FingerprintMismatch(
                    f"the model at {source} (fingerprint {fingerprint[:16]}) is not the model index "
                    f"{version.version} was built with ({version.fingerprint[:16]})")
            self.arms[name] = Arm(name, version.version, fingerprint, embed)
        # hybrid search: a BM25 index of each arm's documents, built once (index.hybrid_search)
        self.lexical: dict[str, index.LexicalIndex] = {}
        if self.lexical_weight > 0:
            with index.connect(url) as conn:
                for arm in self.arms.values():
                    if arm.version not in self.lexical:
                        self.lexical[arm.version] = index.LexicalIndex(conn, arm.version)
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs={"autocommit": True},
                                   configure=register_vector, open=True)

    def close(self) -> None:
        self.pool.close()

    # --- requests ---------------------------------------------------------------------------------------------

    def _ranking(self, conn, arm: Arm, query: str, k: int) -> list[index.Hit]:
        vector = arm.embed([query])[0]
        _, hits = index.hybrid_search(conn, vector, query, self.lexical.get(arm.version),
                                      model_fingerprint=arm.fingerprint, lexical_weight=self.lexical_weight, k=k,
                                      ef_search=self.ef_search, version=arm.version)
        return hits

    def search(self, query: str, k: int = 10, user_id: str | None = None) -> dict:
        query = (query or "").strip()
        if not query:
            raise BadRequest("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= k <= MAX_K:
            raise BadRequest(f"k must be between 1 and {MAX_K}")
        user_id = (user_id or "anonymous")[:200]
        impression = uuid.uuid4()
        mode, arm_name = self.experiment.mode, None
        with self.pool.connection() as conn:
            if mode == "interleave":
                rankings = {name: self._ranking(conn, arm, query, k) for name, arm in self.arms.items()}
                hits_by_id = {h.id: h for hits in rankings.values() for h in hits}
                slots = abtest.team_draft_interleave([h.id for h in rankings["control"]],
                                                     [h.id for h in rankings["treatment"]], k,
                                                     random.Random(impression.int))
                results = [(hits_by_id[s.doc_id], s.arm) for s in slots]
            else:
                arm_name = "control" if mode == "off" else abtest.bucket(user_id, self.experiment.name,
                                                                          self.experiment.treatment_share)
                results = [(hit, arm_name) for hit in self._ranking(conn, self.arms[arm_name], query, k)]
            logged = [{"doc_id": hit.id, "rank": rank, "arm": arm, "version": self.arms[arm].version,
                       "score": round(hit.score, 5)} for rank, (hit, arm) in enumerate(results, start=1)]
            conn.execute(
                "INSERT INTO embedtune_impressions (id, experiment, user_id, query, mode, arm, results) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (impression, self.experiment.name, user_id, query, mode, arm_name, json.dumps(logged)),
            )
        return {
            "impression_id": str(impression),
            "query": query,
            "results": [{"rank": rank, "id": hit.id, "title": hit.title, "snippet": hit.text[:300],
                         "score": round(hit.score, 4)} for rank, (hit, _) in enumerate(results, start=1)],
        }

    def click(self, impression_id: str, doc_id: str) -> dict:
        try:
            impression = uuid.UUID(str(impression_id))
        except ValueError:
            raise BadRequest("impression_id must be the UUID returned by /search") from None
        with self.pool.connection() as conn:
            row = conn.execute("SELECT results FROM embedtune_impressions WHERE id = %s", (impression,)).fetchone()
            if row is None:
                raise NotFound(f"unknown impression {impression}")
            shown = {r["doc_id"]: r for r in row[0]}
            if doc_id not in shown:
                raise BadRequest(f"document {doc_id!r} was not among the results of impression {impression}")
            entry = shown[doc_id]
            conn.execute("INSERT INTO embedtune_clicks (impression_id, doc_id, rank, arm, version) "
                         "VALUES (%s, %s, %s, %s, %s)", (impression, doc_id, entry["rank"], entry["arm"],
                                                          entry["version"]))
        return {"ok": True, "impression_id": str(impression), "doc_id": doc_id, "rank": entry["rank"]}


# --- reading the logs back -----------------------------------------------------------------------------------


def _impressions(conn, experiment: str) -> Iterator[tuple]:
    yield from conn.execute(
        "SELECT i.id, i.at, i.user_id, i.query, i.mode, i.arm, i.results, "
        "coalesce(array_agg(c.doc_id ORDER BY c.at) FILTER (WHERE c.doc_id IS NOT NULL), '{}') "
        "FROM embedtune_impressions i LEFT JOIN embedtune_clicks c ON c.impression_id = i.id "
        "WHERE i.experiment = %s GROUP BY i.id ORDER BY i.at", (experiment,))


def report(conn, experiment: str) -> dict:
    """The A/B report of an experiment: per arm metrics, interleaving outcome, verdict."""
    ensure_log_schema(conn)
    row = conn.execute("SELECT mode, control, treatment, treatment_share, started_at, lexical_weight "
                       "FROM embedtune_experiments WHERE name = %s", (experiment,)).fetchone()
    if row is None:
        raise NotFound(f"unknown experiment {experiment!r}")
    mode, control, treatment, share, started, lexical_weight = row
    out: dict[str, Any] = {"experiment": experiment, "mode": mode, "control": control, "treatment": treatment,
                           "treatment_share": share, "started_at": started.isoformat(), "lexical_weight": lexical_weight}
    outcomes, per_arm = [], {"control": [], "treatment": []}
    for _, _, _, _, imp_mode, arm, results, clicked in _impressions(conn, experiment):
        clicked = set(clicked)
        if imp_mode == "interleave":
            slots = [abtest.Slot(r["doc_id"], r["arm"]) for r in results]
            outcomes.append(abtest.interleaving_outcome(slots, clicked) if clicked else "no click")
            for name, ranks in per_arm.items():
                ranks.append([r["rank"] for r in results if r["doc_id"] in clicked and r["arm"] == name])
        else:
            per_arm[arm or "control"].append([r["rank"] for r in results if r["doc_id"] in clicked])
    if mode == "interleave":
        decided = [o for o in outcomes if o != "no click"]
        out["interleaving"] = abtest.interleaving_report(decided)
        out["interleaving"]["searches_without_click"] = len(outcomes) - len(decided)
        out["impressions"] = len(outcomes)
        out["verdict"] = out["interleaving"]["verdict"]
    else:
        out.update(abtest.bucket_report(per_arm["control"], per_arm["treatment"]))
        out["impressions"] = len(per_arm["control"]) + len(per_arm["treatment"])
    return out


def export_clicks(conn, experiment: str, path: Path) -> int:
    """Write the experiment's searches in the click-log format (:mod:`embedtune.sources`) for retraining."""
    ensure_log_schema(conn)
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _, at, user, query, _, _, results, clicked in _impressions(conn, experiment):
            shown = [r["doc_id"] for r in sorted(results, key=lambda r: r["rank"])]
            handle.write(json.dumps({"query": query, "shown": shown, "clicked": [d for d in dict.fromkeys(clicked)],
                                     "timestamp": at.isoformat(), "session": user}) + "\n")
            n += 1
    return n


# --- HTTP -----------------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>embedtune search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:820px;margin:2rem auto;padding:0 1rem;color:#1d2430}
 form{display:flex;gap:.5rem} input[type=search]{flex:1;padding:.6rem;font-size:1rem}
 button{padding:.6rem 1rem} .hit{padding:.7rem 0;border-bottom:1px solid #e3e6ea}
 .hit a{font-weight:600;color:#1f5fd1;cursor:pointer;text-decoration:none} .meta{color:#6b7480;font-size:.8rem}
 .clicked a{color:#6b2fd1} .snippet{font-size:.9rem;margin-top:.2rem} #status{color:#6b7480;margin:.8rem 0}
</style></head><body>
<h1>embedtune search</h1>
<form id="f"><input id="q" type="search" name="q" placeholder="Search the corpus" autofocus required maxlength="1000">
<button type="submit">Search</button></form>
<div id="status"></div><div id="results"></div>
<script>
const user = localStorage.getItem("embedtune-user") || crypto.randomUUID();
localStorage.setItem("embedtune-user", user);
const $ = (id) => document.getElementById(id);
$("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("status").textContent = "Searching…"; $("results").innerHTML = "";
  const r = await fetch(`/search?q=${encodeURIComponent($("q").value)}&k=10&user=${encodeURIComponent(user)}`);
  const body = await r.json();
  if (!r.ok) { $("status").textContent = body.detail; return; }
  $("status").textContent = `${body.results.length} results`;
  for (const hit of body.results) {
    const div = document.createElement("div"); div.className = "hit"; div.dataset.id = hit.id;
    const a = document.createElement("a"); a.textContent = hit.title || hit.id;
    const meta = document.createElement("div"); meta.className = "meta"; meta.textContent = `${hit.id} · score ${hit.score}`;
    const snip = document.createElement("div"); snip.className = "snippet"; snip.textContent = hit.snippet;
    a.addEventListener("click", async () => {
      const c = await fetch("/click", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({impression_id: body.impression_id, doc_id: hit.id})});
      if (c.ok) div.classList.add("clicked");
    });
    div.append(a, meta, snip); $("results").append(div);
  }
});
</script></body></html>
"""


class ClickIn(BaseModel):
    """A click on a search result."""

    impression_id: str = Field(..., max_length=100, description="the impression_id returned by /search")
    doc_id: str = Field(..., min_length=1, max_length=1000, description="id of the clicked result")


def create_app(service: SearchService):
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="embedtune search", version="1", description=__doc__)

    @app.exception_handler(EmbedtuneError)
    async def _user_error(request: Request, exc: EmbedtuneError):
        return JSONResponse(status_code=getattr(exc, "status", 400), content={"detail": str(exc)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True, "experiment": service.experiment.name, "mode": service.experiment.mode,
                "arms": {name: arm.version for name, arm in service.arms.items()}}

    @app.get("/search")
    def search(q: str = Query(..., max_length=MAX_QUERY_CHARS * 2), k: int = Query(10, ge=1, le=MAX_K),
               user: str | None = Query(None, max_length=200)) -> dict:
        return service.search(q, k, user)

    @app.post("/click")
    def click(body: ClickIn) -> dict:
        return service.click(body.impression_id, body.doc_id)

    return app


class BackgroundServer:
    """The service on a free loopback port in a background thread (tests, benchmarks, simulations)."""

    def __init__(self, service: SearchService, host: str = "127.0.0.1") -> None:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        self.service = service
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(create_app(service), host=host, port=port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the search service did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self.service.close()
