"""The search service's logic, independent of HTTP: each arm of an A/B experiment ranks with its own model.

``search`` answers from the serving index, or, in an experiment, from the arm the user is bucketed into
(``bucket``) or from a team-draft interleaving of both arms (``interleave``); every answer is logged as an
impression, and ``click`` records a click on one of its results. Both go to append-only tables (schema.sql) with
the versions, ranks and times, so they survive restarts and feed ``embedtune ab report`` and, exported as a
click log, the next training run. Each arm embeds queries with its own model, and the fingerprint guard of
:mod:`embedtune.serving.search` refuses a model that is not the one its index was built with.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtune.errors import EmbedtuneError
from embedtune.serving import abtest, judging
from embedtune.serving.batching import DEFAULT_MAX_BATCH, DEFAULT_WINDOW_MS, QueryBatcher
from embedtune.serving.db import connect
from embedtune.serving.search import FingerprintMismatch, Hit, LexicalIndex, add_ms, hybrid_search, search
from embedtune.serving.versions import Version, documents_table, get_version, query_precision, serving_version

MAX_QUERY_CHARS = 1000
MAX_K = 100
MODES = ("off", "bucket", "interleave")


class BadRequest(EmbedtuneError):
    status = 400


class NotFound(EmbedtuneError):
    status = 404


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
    batcher: QueryBatcher | None = None  # concurrent requests' queries encoded together (None: each alone)

    def embed_query(self, text: str) -> Any:
        return self.batcher.encode(text) if self.batcher is not None else self.embed([text])[0]


class SearchService:
    """The service's logic, independent of HTTP (the FastAPI app in ``serving.app`` is a thin layer over it).

    ``max_batch``: concurrent requests' queries are encoded together, up to this many per forward pass
    (``serving.batching``); 1 encodes each request's query alone, in its own thread."""

    def __init__(self, url: str, experiment: Experiment, *, ef_search: int = 80, pool_size: int = 8,
                 onnx: dict[str, Path] | None = None, lexical_weight: float = 0.0,
                 max_batch: int = DEFAULT_MAX_BATCH, window_ms: float = DEFAULT_WINDOW_MS,
                 judge_versions: tuple[str, ...] = (), judge_depth: int = judging.DEFAULT_DEPTH) -> None:
        from pgvector.psycopg import register_vector
        from psycopg_pool import ConnectionPool

        from embedtune.lexical import check_lexical_weight

        experiment.validate()
        self.experiment, self.ef_search = experiment, ef_search
        self.lexical_weight = check_lexical_weight(lexical_weight)
        with connect(url) as conn:
            versions = _arm_versions(conn, experiment)
            _register(conn, experiment, versions, self.lexical_weight)
            models: dict[str, Any] = {}
            self.arms = {name: _arm(name, version, (onnx or {}).get(name), models)
                         for name, version in versions.items()}
            # the judging page pools the arms' rankings, BM25's and those of further versions (e.g. the base model)
            extra = [get_version(conn, v) for v in judge_versions]
            self.judge_systems = {**{f"dense:{a.version}": a for a in self.arms.values()},
                                  **{f"dense:{v.version}": _arm("judge", v, None, models) for v in extra}}
            if max_batch > 1:
                for arm in self.arms.values():
                    arm.batcher = QueryBatcher(arm.embed, max_batch=max_batch, window_ms=window_ms,
                                               name=f"query-batcher-{arm.name}")
            # hybrid search: a BM25 index of each arm's documents, built once (search.hybrid_search)
            self.lexical: dict[str, LexicalIndex] = {}
            for arm in self.arms.values():
                if self.lexical_weight > 0 and arm.version not in self.lexical:
                    self.lexical[arm.version] = LexicalIndex(conn, arm.version)
        if isinstance(judge_depth, bool) or not isinstance(judge_depth, int) or not 1 <= judge_depth <= MAX_K:
            raise BadRequest(f"the judging pool depth must be a whole number from 1 to {MAX_K}, got {judge_depth!r}")
        self.judge_depth, self._judge_lexical = judge_depth, None
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs={"autocommit": True},
                                   configure=register_vector, open=True)

    def close(self) -> None:
        for arm in self.arms.values():
            if arm.batcher is not None:
                arm.batcher.close()
        self.pool.close()

    def readiness(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Whether searches can be answered now (``ready``): the database answers within ``timeout_s`` and every
        arm's index version is still in it. Also the version serving in the database, which differs from the
        control arm's after a promotion since this service started (it keeps what it loaded)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        loaded = {name: arm.version for name, arm in self.arms.items()}
        try:
            with self.pool.connection(timeout=timeout_s) as conn:
                present = {row[0] for row in conn.execute(
                    "SELECT version FROM embedtune_versions WHERE version = ANY(%s)", (list(loaded.values()),))}
                serving = serving_version(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            return {"ready": False, "reason": f"the database does not answer ({type(exc).__name__})", "arms": loaded}
        missing = sorted(v for v in loaded.values() if v not in present)
        if missing:
            return {"ready": False, "reason": f"index version(s) {', '.join(missing)} no longer in the database",
                    "arms": loaded, "serving": serving}
        return {"ready": True, "arms": loaded, "serving": serving}

    # --- the judging page (serving.judging) -------------------------------------------------------------------

    @property
    def judge_version(self) -> str:
        """The index version whose documents are judged: the control arm's."""
        return self.arms["control"].version

    def _judge_rankings(self, query: str) -> dict[str, list[str]]:
        """Each pooled system's top ``judge_depth`` for ``query``: every model by meaning alone, and BM25 over the
        judged version's documents."""
        rankings = {}
        for system, arm in self.judge_systems.items():
            vector = arm.embed_query(query)
            with self.pool.connection() as conn:
                _, hits = search(conn, vector, model_fingerprint=arm.fingerprint, k=self.judge_depth,
                                 ef_search=self.ef_search, version=arm.version)
            rankings[system] = [hit.id for hit in hits]
        if self._judge_lexical is None:
            with self.pool.connection() as conn:
                self._judge_lexical = LexicalIndex(conn, self.judge_version)
        scores = self._judge_lexical.ranker.scores([query])[0]
        best = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: -scores[i])[:self.judge_depth]
        rankings["bm25"] = [self._judge_lexical.ids[i] for i in best]
        return rankings

    def judge_next(self, judge: str) -> dict[str, Any]:
        """The next query for ``judge`` with its blind pool (titles and texts), what they graded of it, progress."""
        with self.pool.connection() as conn:
            query_id = judging.next_query(conn, judge, self.judge_version)
            state = {"progress": judging.progress(conn, judge)}
            if query_id is None:
                return {**state, "done": True}
        with self.pool.connection() as conn:
            stored = conn.execute("SELECT 1 FROM embedtune_judging_pools WHERE query_id = %s AND version = %s",
                                  (query_id, self.judge_version)).fetchone()
        rank = self._judge_rankings if stored is None else (lambda _text: {})  # encode only for a new pool
        with self.pool.connection() as conn:
            pool = judging.pool_for(conn, query_id, rank, version=self.judge_version, depth=self.judge_depth)
            texts = {r[0]: (r[1], r[2]) for r in conn.execute(
                f"SELECT id, title, text FROM {documents_table(self.judge_version)} WHERE id = ANY(%s)",
                (pool["ids"],))}
            mine = judging.latest_grades(conn, "judge = %s AND query_id = %s", (judge, query_id))
        return {**state, "done": False, "query_id": query_id, "text": pool["text"],
                "candidates": [{"doc_id": d, "title": texts.get(d, ("", ""))[0], "text": texts.get(d, ("", ""))[1]}
                               for d in pool["ids"]],
                "judged": {doc_id: grade for (_, _, doc_id), grade in mine.items()}}

    def judge_add(self, text: str) -> dict[str, Any]:
        with self.pool.connection() as conn:
            added = judging.add_queries(conn, [(None, text)], "typed")
        return {"ok": True, "query_id": judging.query_id_for(text.strip()), "added": bool(added)}

    def judge_record(self, **judgement: Any) -> dict[str, Any]:
        with self.pool.connection() as conn:
            return judging.record(conn, version=self.judge_version, **judgement)

    def query_batches(self) -> dict[str, dict[int, int]]:
        """Per arm, how many query batches of each size were encoded (empty without batching)."""
        return {name: dict(sorted((arm.batcher.batch_sizes if arm.batcher else Counter()).items()))
                for name, arm in self.arms.items()}

    # --- requests ---------------------------------------------------------------------------------------------

    def _rankings(self, arms: dict[str, Arm], query: str, k: int,
                  timings: dict[str, float] | None) -> dict[str, list[Hit]]:
        """Each of ``arms``' ranking of ``query``. The query is encoded first (batched with other requests'), and
        a pooled connection is taken for the searches only: a request waiting for the model holds none."""
        started = time.perf_counter()
        vectors = {name: arm.embed_query(query) for name, arm in arms.items()}
        add_ms(timings, "encode", started)
        with self.pool.connection() as conn:
            return {name: hybrid_search(conn, vectors[name], query, self.lexical.get(arm.version),
                                        model_fingerprint=arm.fingerprint, lexical_weight=self.lexical_weight, k=k,
                                        ef_search=self.ef_search, version=arm.version, timings=timings)[1]
                    for name, arm in arms.items()}

    def search(self, query: str, k: int = 10, user_id: str | None = None,
               timings: dict[str, float] | None = None) -> dict:
        """The ranked results for ``query`` (logged as an impression). ``timings``, when given, receives the
        milliseconds spent encoding, in vector search, in BM25, logging the impression, and in all."""
        started = time.perf_counter()
        query = (query or "").strip()
        if not query:
            raise BadRequest("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= k <= MAX_K:
            raise BadRequest(f"k must be between 1 and {MAX_K}")
        if "\x00" in query or "\x00" in (user_id or ""):
            raise BadRequest("the query and the user id may not contain NUL characters (%00)")
        user_id = (user_id or "anonymous")[:200]
        impression = uuid.uuid4()
        mode, arm_name = self.experiment.mode, None
        if mode == "interleave":
            rankings = self._rankings(self.arms, query, k, timings)
            hits_by_id = {h.id: h for hits in rankings.values() for h in hits}
            slots = abtest.team_draft_interleave([h.id for h in rankings["control"]],
                                                 [h.id for h in rankings["treatment"]], k,
                                                 random.Random(impression.int))
            results = [(hits_by_id[s.doc_id], s.arm) for s in slots]
        else:
            arm_name = "control" if mode == "off" else abtest.bucket(user_id, self.experiment.name,
                                                                      self.experiment.treatment_share)
            hits = self._rankings({arm_name: self.arms[arm_name]}, query, k, timings)[arm_name]
            results = [(hit, arm_name) for hit in hits]
        logged = [{"doc_id": hit.id, "rank": rank, "arm": arm, "version": self.arms[arm].version,
                   "score": round(hit.score, 5)} for rank, (hit, arm) in enumerate(results, start=1)]
        logging_started = time.perf_counter()
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO embedtune_impressions (id, experiment, user_id, query, mode, arm, results) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (impression, self.experiment.name, user_id, query, mode, arm_name, json.dumps(logged)),
            )
        add_ms(timings, "log", logging_started)
        add_ms(timings, "total", started)
        return {
            "impression_id": str(impression),
            "query": query,
            "results": [{"rank": rank, "id": hit.id, "title": hit.title, "snippet": hit.text[:300],
                         "source": hit.source, "page": hit.page, "provenance": hit.provenance,
                         "score": round(hit.score, 4)}
                        for rank, (hit, _) in enumerate(results, start=1)],
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
            stored = conn.execute("INSERT INTO embedtune_clicks (impression_id, doc_id, rank, arm, version) "
                                  "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (impression_id, doc_id) DO NOTHING "
                                  "RETURNING id", (impression, doc_id, entry["rank"], entry["arm"],
                                                   entry["version"])).fetchone()
        return {"ok": True, "impression_id": str(impression), "doc_id": doc_id, "rank": entry["rank"],
                "repeat": stored is None}  # a repeated click on one result of one search is stored once


def _arm_versions(conn: Any, experiment: Experiment) -> dict[str, Version]:
    """The index version of each arm: control (default: the serving one) and, in an experiment, treatment."""
    control = experiment.control or serving_version(conn)
    if control is None:
        raise NotFound("no index is serving and no control version was given: run `dvc repro` first")
    versions = {"control": get_version(conn, control)}
    if experiment.mode != "off":
        versions["treatment"] = get_version(conn, experiment.treatment)
    return versions


def _register(conn: Any, experiment: Experiment, versions: dict[str, Version], lexical_weight: float) -> None:
    """Record the experiment's set-up at its first start; a restart with another set-up is refused."""
    wanted = (experiment.mode, versions["control"].version,
              versions["treatment"].version if "treatment" in versions else None, experiment.treatment_share,
              lexical_weight)
    conn.execute("INSERT INTO embedtune_experiments (name, mode, control, treatment, treatment_share, lexical_weight) "
                 "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING", (experiment.name, *wanted))
    stored = conn.execute("SELECT mode, control, treatment, treatment_share, lexical_weight "
                          "FROM embedtune_experiments WHERE name = %s", (experiment.name,)).fetchone()
    if tuple(stored) != wanted:
        raise BadRequest(f"experiment {experiment.name!r} already exists with another set-up {tuple(stored)}; "
                         "choose a new experiment name")


def _arm(name: str, version: Version, onnx: Path | None, models: dict[str, Any]) -> Arm:
    """An arm that embeds queries with ``version``'s model (loaded once per path into ``models``) or with the
    ONNX export ``onnx`` of it; a model that is not the version's is refused."""
    from embedtune.embed.encoder import encode
    from embedtune.models import load_model, model_fingerprint

    if onnx is not None:
        from embedtune.embed.onnx import OnnxEncoder

        encoder = OnnxEncoder(onnx)
        source, fingerprint, embed = str(onnx), encoder.fingerprint, encoder.encode
    else:
        source, fingerprint = version.model_path, model_fingerprint(Path(version.model_path))
        if version.model_path not in models:
            models[version.model_path] = load_model(version.model_path)
        model, precision = models[version.model_path], query_precision(version)

        def embed(texts: list[str]) -> Any:
            return encode(model, texts, precision=precision, show_progress=False)
    if fingerprint != version.fingerprint:
        raise FingerprintMismatch(f"the model at {source} (fingerprint {fingerprint[:16]}) is not the model index "
                                  f"{version.version} was built with ({version.fingerprint[:16]})")
    return Arm(name, version.version, fingerprint, embed)
