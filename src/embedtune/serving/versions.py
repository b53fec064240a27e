"""Index versions in PostgreSQL + pgvector: loaded whole or not at all, promoted blue/green, pruned.

Vectors from different models live in different spaces; mixing them returns nonsense. So:

* every version gets its **own table** of (id, view, vector), named from a fingerprint of the model's weights and
  a digest of what was loaded (ids, vectors, extra views such as the tails of long documents, titles and texts:
  ``table_for``); a table never holds vectors of two models, two layouts or two states of the corpus. So the same
  model over a corpus that gained, lost or changed documents is a new version, never a silent no-op on the old
  one. Its titles and texts are kept with it (``<version>_docs``), so an older version keeps showing, and
  searching by words, the text it was loaded with;
* a version is loaded and indexed (HNSW, cosine) **inside one transaction** together with its metadata row:
  an interrupted load (killed process, lost connection) rolls back and leaves nothing behind;
* the serving version is switched in **one transaction** (the ``embedtune_serving`` row and the
  ``embedtune_search`` view together), so a reader sees the complete old index or the complete new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from embedtune.embed.views import ExtraViews
from embedtune.serving.db import IndexError_

SERVING_VIEW = "embedtune_search"
TABLE = re.compile(r"^emb_[0-9a-f]{16}$")
# How a version stores its vectors, and the HNSW operator class for cosine distance on them: ``halfvec`` keeps
# each component in 16 bits (half the table, index and I/O of ``vector``'s 32; benchmarks/halfvec.py measures
# what it costs in recall), distances are computed the same way.
VECTOR_TYPES = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}


def documents_table(version: str) -> str:
    """The table of ``version``'s titles and texts (checked, so it can be named in SQL)."""
    if not TABLE.match(version):
        raise IndexError_(f"unexpected table name {version!r}")
    return f"{version}_docs"


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
    evaluation does (recorded when the version was loaded)."""
    return str(version.metrics["query_precision"])


def list_versions(conn) -> list[Version]:
    serving = serving_version(conn)
    rows = conn.execute(
        "SELECT version, fingerprint, model_path, dim, rows, source_commit, metrics, build_seconds, created_at "
        "FROM embedtune_versions ORDER BY created_at, version"
    ).fetchall()
    return [Version(*row, serving=(row[0] == serving)) for row in rows]


def get_version(conn, version: str) -> Version:
    """The version named ``version``, or else the newest one of the model whose fingerprint starts with it. An
    empty name, or a prefix of two models' fingerprints, is an error that lists the candidates."""
    versions = list_versions(conn)
    named = [v for v in versions if v.version == version]
    if named:
        return named[0]
    listing = ", ".join(v.version for v in versions) or "none yet"
    if not version.strip():
        raise IndexError_(f"no version named: give one of {listing}")
    models = {v.fingerprint for v in versions if v.fingerprint.startswith(version)}
    if len(models) > 1:
        raise IndexError_(f"{version!r} begins the fingerprints of {len(models)} models: give a longer prefix or a "
                          "version name: " + ", ".join(f"{v.version} ({v.fingerprint[:16]})" for v in versions
                                                       if v.fingerprint in models))
    for v in reversed(versions):
        if v.fingerprint in models:
            return v
    raise IndexError_(f"no index version {version!r}; `embedtune versions` lists them ({listing})")


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
    query_precision: str = "fp32",
    metadata: Sequence[Mapping[str, Any]] | None = None,
    vector_type: str = "vector",
) -> LoadResult:
    """Create, bulk-load (COPY BINARY) and index the table for one model version, atomically.

    ``views`` are more vectors of some documents (view 1, the tail of a long one); ``layout`` names them
    (``table_for``); ``query_precision`` is the one the vectors were encoded in, for the queries; ``metadata`` is
    each document's ``source`` file and ``page`` where it has them (a documents folder's chunks), which searches
    show; ``vector_type`` is how the vectors are stored (``VECTOR_TYPES``: another type is another version). The
    version is
    named by the model and what is loaded (``content_digest``): the same model, corpus and vectors again is a
    no-op; a changed corpus is a new version. One transaction: a load that dies half-way leaves nothing behind.
    """
    if views is not None and len(views) and not layout:
        raise IndexError_("vectors with extra views need a layout name (e.g. 'tail128') to version them by")
    if vectors.ndim != 2 or len(ids) != vectors.shape[0] or len(titles) != len(ids) or len(texts) != len(ids):
        raise IndexError_(f"{len(ids)} ids, {len(titles)} titles, {len(texts)} texts but vectors of shape {vectors.shape}")
    if metadata is not None and len(metadata) != len(ids):
        raise IndexError_(f"{len(ids)} ids but {len(metadata)} metadata records")
    if vector_type not in VECTOR_TYPES:
        raise IndexError_(f"vector type must be one of {sorted(VECTOR_TYPES)}, got {vector_type!r}")
    # the same model and content stored as vector keep the name they always had
    layout_key = layout if vector_type == "vector" else f"{layout}:{vector_type}"
    version = table_for(fingerprint, layout_key, content_digest(ids, vectors, titles, texts, views))
    existing = conn.execute("SELECT rows, metrics->'build' FROM embedtune_versions WHERE version = %s",
                            (version,)).fetchone()
    if existing is not None:  # complete already (loads are atomic): nothing to do
        return LoadResult(version, False, int(existing[0]), existing[1]["load_seconds"], existing[1]["index_seconds"])
    rows, dim = _vector_rows(ids, vectors, views), int(vectors.shape[1])
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{_safe_setting(maintenance_work_mem)}'")
        conn.execute(f"SET LOCAL max_parallel_maintenance_workers = {int(parallel_workers)}")
        conn.execute(f"DROP TABLE IF EXISTS {version}, {version}_docs")  # stray tables (made outside a transaction)
        started = time.perf_counter()
        _load_vectors(conn, version, dim, rows, vector_type)
        load_seconds = time.perf_counter() - started
        _load_documents(conn, version, ids, titles, texts, metadata)
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {version}_hnsw ON {version} USING hnsw (embedding {VECTOR_TYPES[vector_type]}) "
                     f"WITH (m = {int(hnsw_m)}, ef_construction = {int(hnsw_ef_construction)})")
        index_seconds = time.perf_counter() - started
        build = {"load_seconds": round(load_seconds, 4), "index_seconds": round(index_seconds, 4),
                 "documents": len(ids), "layout": layout or "one vector per document", "vector_type": vector_type}
        conn.execute(
            "INSERT INTO embedtune_versions (version, fingerprint, model_path, dim, rows, source_commit, metrics, "
            "build_seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (version, fingerprint, model_path, dim, len(rows), source_commit,
             json.dumps({**(metrics or {}), "query_precision": query_precision, "build": build}),
             round(load_seconds + index_seconds, 3)),
        )
        _log(conn, "loaded", version, {"rows": len(rows), **build})
    return LoadResult(version, True, len(rows), load_seconds, index_seconds)


def _vector_rows(ids: Sequence[str], vectors: np.ndarray, views: ExtraViews | None) -> list[tuple]:
    """(id, view, vector) rows: view 0 is each document's own vector, view 1 the tail view of a long one."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = [(id_, 0, vectors[i]) for i, id_ in enumerate(ids)]
    if views is not None and len(views):
        if views.vectors.shape[1:] != vectors.shape[1:]:
            raise IndexError_(f"views of shape {views.vectors.shape} for vectors of {vectors.shape[1]} dimensions")
        extra = np.ascontiguousarray(views.vectors, dtype=np.float32)
        rows += [(ids[owner], 1, extra[j]) for j, owner in enumerate(views.owners)]
    return rows


def _load_vectors(conn, version: str, dim: int, rows: Sequence[tuple], vector_type: str = "vector") -> None:
    """The version's vector table (``vector_type`` columns), filled by one binary COPY."""
    from pgvector import HalfVector

    conn.execute(f"CREATE TABLE {version} (id text NOT NULL, view smallint NOT NULL DEFAULT 0, "
                 f"embedding {vector_type}({dim}) NOT NULL, PRIMARY KEY (id, view))")
    with conn.cursor() as cur, cur.copy(f"COPY {version} (id, view, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", "int2", vector_type])
        for id_, view, vector in rows:
            copy.write_row((id_, view, HalfVector(vector) if vector_type == "halfvec" else vector))


def _load_documents(conn, version: str, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str],
                    metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
    """The version's own copy of its documents' titles, texts and provenance (``<version>_docs``): what its
    searches show and what its BM25 index reads stay those the vectors were computed from, whatever a later
    version loads. ``source`` and ``page`` (NULL where a document has none) say which file and page a chunk of a
    documents folder came from."""
    conn.execute(f"CREATE TABLE {version}_docs (id text PRIMARY KEY, title text NOT NULL, text text NOT NULL, "
                 "source text, page integer)")
    with conn.cursor() as cur, cur.copy(f"COPY {version}_docs (id, title, text, source, page) "
                                        "FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "text", "text", "int4"])
        for i, id_ in enumerate(ids):
            source, page = _provenance(metadata[i] if metadata is not None else None)
            copy.write_row((id_, titles[i], texts[i], source, page))


def _provenance(metadata: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """A document's source file and page from its metadata; None for what it lacks or holds in another type (a
    corpus.jsonl written by hand may say ``"page": "iv"``)."""
    source, page = (metadata or {}).get("source"), (metadata or {}).get("page")
    return (source if isinstance(source, str) and source else None,
            page if isinstance(page, int) and not isinstance(page, bool) else None)


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
        # last tokens); a reader ranking documents keeps each id's best row, as ``search`` does.
        conn.execute(f"CREATE VIEW {SERVING_VIEW} AS SELECT e.id, e.view, d.title, d.text, e.embedding "
                     f"FROM {target} e LEFT JOIN {documents_table(target)} d USING (id)")
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


