"""An async Postgres pool for a process that works in one schema: autocommit, search_path set on
every connection, each connection named after its process in `application_name`, a bounded wait.

Used by the api (requests) and the notifier (deliveries). A connection returned broken or inside a
transaction is discarded or rolled back by psycopg_pool, never handed out again as it is.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

# Rows are tuples unless a cursor asks for another row factory (e.g. dict_row).
AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
CONNECT_TIMEOUT_S = 5


def schema_pool(
    database_url: str, schema: str, *, size: int, timeout_s: float, name: str
) -> AsyncConnectionPool[AsyncConn]:
    """A closed pool of 1..`size` connections to `schema` (open it with `await pool.open()`); a
    caller waits at most `timeout_s` for a free connection (psycopg_pool.PoolTimeout)."""

    async def configure(conn: AsyncConn) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        timeout=timeout_s,
        kwargs={
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": f"coursecast-{name}:{os.getpid()}",
        },
        configure=configure,
        open=False,
        name=name,
    )
