"""The database schema's versioned SQL migrations and their runner: applied in order, each exactly once.

One history for the whole schema, shared by every service that connects (api, encoder, projector,
watchdog): each applies what is pending at start-up, so the first process up migrates and the others
find nothing to do. File names sort into the order they were written in: the event log and status
tables (`000N_`), then the api's (`api_000N_`) and the encoder's (`encoder_000N_`) tables.
"""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql


def migration_files(package: str = __name__) -> list[tuple[str, str]]:
    """(version, SQL) of every migration in `package`, in order of version."""
    folder = resources.files(package)
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str, package: str = __name__) -> list[str]:
    """Bring `schema` up to the newest migration of `package`; returns the versions applied now.

    Safe to run from several processes at once: an advisory lock per schema serialises them, and a
    migration's record is written in the same transaction as its changes.
    """
    applied: list[str] = []
    with conn.transaction():
        # One lock per schema: migrations started by several processes at once never interleave.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"coursecast-migrate:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, statements in migration_files(package):
            if version in done:
                continue
            conn.execute(statements.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied
