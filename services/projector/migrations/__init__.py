"""Versioned SQL migrations of the projector's schema, applied in order, each exactly once."""

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

    Each service that owns tables keeps its migrations in a package of its own, with file names
    unique across packages (the projector's start with a number, others with the service's name).

    Safe to run from several processes at once: an advisory lock per schema serialises them, and a
    migration's record is written in the same transaction as its changes.
    """
    applied: list[str] = []
    with conn.transaction():
        # One lock per schema, whatever the package: migrations of different services never interleave.
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
