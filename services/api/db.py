"""Postgres for the api: a small async connection pool, migrations, and the LISTEN side of job_changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from services.projector.migrations import migrate
from services.projector.store import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
CONNECT_TIMEOUT_S = 5


def migrate_api(database_url: str, schema: str) -> list[str]:
    """Apply the projector's migrations (the api reads its tables) and then the api's own."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        applied = migrate(conn, schema)
        applied += migrate(conn, schema, package="services.api.migrations")
    return applied


class Pool:
    """A fixed set of autocommit connections shared by requests; a broken one is replaced on return."""

    def __init__(self, database_url: str, schema: str, size: int) -> None:
        self._url = database_url
        self._schema = schema
        self._size = size
        self._idle: asyncio.Queue[AsyncConn] = asyncio.Queue()
        self._opened = 0
        self._lock = asyncio.Lock()

    async def _connect(self) -> AsyncConn:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """Borrow a connection for one unit of work."""
        conn: AsyncConn | None = None
        if self._idle.empty():
            async with self._lock:
                if self._opened < self._size:
                    self._opened += 1
                    try:
                        conn = await self._connect()
                    except BaseException:
                        self._opened -= 1
                        raise
        if conn is None:
            conn = await self._idle.get()
        try:
            yield conn
        finally:
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                # Never hand the next request a connection in an unknown state.
                await conn.close()
                self._opened -= 1
            else:
                self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close every idle connection."""
        while not self._idle.empty():
            await self._idle.get_nowait().close()


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
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    self._ready.set()
                    # Waiters re-read the row after a reconnect, so a notification missed while the
                    # connection was down only delays them.
                    self._wake_all()
                    async for notify in conn.notifies():
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
