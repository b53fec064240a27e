"""Who may do what in embedtune's database, and erasing A/B logs (a user's right to erasure, old logs).

Three kinds of role use a deployment's database:

* the **owner** (the role that runs ``embedtune migrate`` and the reindex stage) owns the tables: it migrates,
  loads and promotes index versions and is the only one that can purge logs (``purge``);
* ``embedtune_service`` (``embedtune serve``) reads the index versions and may only INSERT and SELECT the A/B
  logs (impressions, clicks, experiments) and the judging page's queue, pools and judgements: it cannot UPDATE,
  DELETE or TRUNCATE them, nor change any table;
* ``embedtune_reader`` (``embedtune versions``, ``search``, ``ab report``, dashboards) reads everything.

``grant_roles`` creates the two group roles (NOLOGIN) if missing, grants their rights on today's tables and,
through default privileges, on the tables the owner creates later (each new index version), and makes login
roles members. Roles are per cluster, rights per database.
"""

from __future__ import annotations

from typing import Any

from embedtune.serving.db import IndexError_

SERVICE_ROLE = "embedtune_service"
READER_ROLE = "embedtune_reader"
# INSERT only: the A/B logs and the judging page's queue, pools and judgements
SERVICE_WRITES = ("embedtune_experiments", "embedtune_impressions", "embedtune_clicks", "embedtune_judging_queries",
                  "embedtune_judging_pools", "embedtune_judgements")
SERVICE_SEQUENCES = ("embedtune_clicks_id_seq", "embedtune_judgements_id_seq")


def grant_roles(conn: Any, *, service: list[str] = (), reader: list[str] = ()) -> list[str]:
    """Create ``embedtune_service`` and ``embedtune_reader`` if missing, grant their rights in this database and
    make the login roles ``service`` / ``reader`` their members, in one transaction. Returns what was done."""
    from psycopg import errors, sql

    done = []
    try:
        with conn.transaction():
            for role in (SERVICE_ROLE, READER_ROLE):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                    done.append(f"created role {role}")
            schema = sql.Identifier(conn.execute("SELECT current_schema()").fetchone()[0])
            both = sql.SQL("{}, {}").format(sql.Identifier(SERVICE_ROLE), sql.Identifier(READER_ROLE))
            for statement in (
                "GRANT USAGE ON SCHEMA {schema} TO {both}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {both}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {both}",
            ):
                conn.execute(sql.SQL(statement).format(schema=schema, both=both))
            conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, SERVICE_WRITES)), sql.Identifier(SERVICE_ROLE)))
            conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, SERVICE_SEQUENCES)), sql.Identifier(SERVICE_ROLE)))
            done.append(f"granted {SERVICE_ROLE}: SELECT on all tables, INSERT on {', '.join(SERVICE_WRITES)}")
            done.append(f"granted {READER_ROLE}: SELECT on all tables (and on the index versions loaded later)")
            for group, members in ((SERVICE_ROLE, service), (READER_ROLE, reader)):
                for member in members:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member)))
                    done.append(f"{member} is a member of {group}")
    except errors.InsufficientPrivilege as exc:
        raise IndexError_(f"granting the embedtune roles needs the tables' owner with CREATEROLE (or the roles "
                          f"created by an administrator first): {str(exc).splitlines()[0]}") from None
    except errors.UndefinedObject as exc:
        raise IndexError_(f"{str(exc).splitlines()[0]}: create the login role first (CREATE ROLE ... LOGIN)") from None
    return done


def purge(conn: Any, *, user: str | None = None, older_than_days: float | None = None) -> dict[str, Any]:
    """Delete the impressions (and their clicks) of ``user``, or those older than ``older_than_days``, in one
    transaction, and log the purge in ``embedtune_events`` (how many, by what rule and by which role; not the
    user id, which is what was erased). Only a role with DELETE on the logs (the owner) can."""
    from psycopg import errors
    from psycopg.types.json import Jsonb

    if (user is None) == (older_than_days is None):
        raise IndexError_("purge needs exactly one of a user id or an age in days")
    if older_than_days is not None and not older_than_days >= 0:
        raise IndexError_(f"the age in days must be a number >= 0, got {older_than_days!r}")
    where, args = (("user_id = %s", (user,)) if user is not None
                   else ("at < now() - make_interval(secs => %s)", (older_than_days * 86400,)))
    try:
        with conn.transaction():
            conn.execute("SET LOCAL embedtune.purge = 'on'")
            clicks = conn.execute("DELETE FROM embedtune_clicks WHERE impression_id IN "
                                  f"(SELECT id FROM embedtune_impressions WHERE {where})", args).rowcount
            impressions = conn.execute(f"DELETE FROM embedtune_impressions WHERE {where}", args).rowcount
            role = conn.execute("SELECT current_user").fetchone()[0]
            detail = {"by": "user" if user is not None else "age", "impressions": impressions, "clicks": clicks,
                      "role": role, **({"older_than_days": older_than_days} if user is None else {})}
            conn.execute("INSERT INTO embedtune_events (event, detail) VALUES ('purge', %s)", (Jsonb(detail),))
    except errors.InsufficientPrivilege as exc:
        raise IndexError_(f"purging the A/B logs is for their owner: {str(exc).splitlines()[0]}") from None
    return detail
