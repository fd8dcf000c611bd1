"""Postgres for the api: the connection pool, migrations, LISTEN for job_changed and token revocations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import PoolTimeout

from services.api.auth import TOKEN_REVOKED_CHANNEL
from services.api.problems import ProblemError
from services.core.job_changes import JOB_CHANGED_CHANNEL
from services.core.migrations import migrate
from services.core.pg_pool import CONNECT_TIMEOUT_S, schema_pool
from services.core.pg_pool import AsyncConn as AsyncConn  # re-exported: the api's modules type with it

log = logging.getLogger(__name__)

POOL_RETRY_AFTER_S = 2


def migrate_api(database_url: str, schema: str) -> list[str]:
    """Apply the schema's pending migrations (the api's tables and the status tables it reads)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        return migrate(conn, schema)


class Pool:
    """The api's Postgres connections (psycopg_pool): autocommit, search_path set, bounded wait.

    A request borrows a connection only for its queries, never while a body or a stream flows, so slow
    clients cannot drain the pool. When every connection is busy for `timeout_s`, the request gets a
    503 problem with Retry-After instead of waiting forever. A connection returned broken or inside a
    transaction is discarded or rolled back by the pool, never handed to the next request as it is.
    """

    def __init__(self, database_url: str, schema: str, size: int, timeout_s: float) -> None:
        self._pool = schema_pool(database_url, schema, size=size, timeout_s=timeout_s, name="api")

    async def open(self) -> None:
        """Start the pool (connections are made in the background)."""
        await self._pool.open(wait=False)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """Borrow a connection for one unit of work; 503 when none is free in time."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise pool_exhausted() from None

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()


def pool_exhausted() -> ProblemError:
    """503 for a request that found no free database connection in time."""
    return ProblemError(
        503,
        "database-busy",
        "the api has no free database connection right now; try again shortly",
        headers={"Retry-After": str(POOL_RETRY_AFTER_S)},
    )


class JobChanges:
    """One LISTEN connection per process, fanning the projector's NOTIFY job_changed out to waiters.

    The projector notifies at commit, so a waiter woken for a job reads a row that already changed.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._waiters: defaultdict[UUID, set[asyncio.Queue[None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start listening in the background; returns once LISTEN is in place."""
        self._task = asyncio.create_task(self._run(), name="job-changes")
        await asyncio.wait_for(self._ready.wait(), timeout=CONNECT_TIMEOUT_S * 2)

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(JOB_CHANGED_CHANNEL)))
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(TOKEN_REVOKED_CHANNEL)))
                    self._ready.set()
                    # Waiters re-read the row after a reconnect, so a notification missed while the
                    # connection was down only delays them.
                    self._wake_all()
                    async for notify in conn.notifies():
                        if notify.channel == TOKEN_REVOKED_CHANNEL:
                            # Every waiter re-checks its caller's token when woken: a revoked
                            # user's streams end, the others carry on.
                            self._wake_all()
                            continue
                        try:
                            job_id = UUID(notify.payload)
                        except ValueError:
                            continue
                        for queue in self._waiters.get(job_id, ()):
                            queue.put_nowait(None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job_changed listener lost its connection; reconnecting")
                await asyncio.sleep(1.0)

    def _wake_all(self) -> None:
        for queues in self._waiters.values():
            for queue in queues:
                queue.put_nowait(None)

    @contextlib.contextmanager
    def subscribe(self, job_id: UUID) -> Iterator[asyncio.Queue[None]]:
        """A queue that receives None each time `job_id` changes, while the block runs."""
        queue: asyncio.Queue[None] = asyncio.Queue()
        self._waiters[job_id].add(queue)
        try:
            yield queue
        finally:
            self._waiters[job_id].discard(queue)
            if not self._waiters[job_id]:
                del self._waiters[job_id]
