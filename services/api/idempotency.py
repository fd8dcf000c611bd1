"""Idempotency-Key of POST /v1/courses: reserved before the body streams, fingerprinted, never stuck.

- The key is reserved (owner, key) → a fresh job id, with a lease, BEFORE any body byte is read, so two
  concurrent requests with one key never both stage files: the second gets 409 at once.
- Its fingerprint is (method, path, owner, SHA-256 of the body with the multipart boundary masked — a
  client's library picks a new boundary for each retry of the same form). The same key with another
  body, method or path is refused with 422; with the same body it answers the job it published.
- A request that dies gives its key back: deleted when it fails or its client disconnects, and by lease
  expiry when the process itself died (a live request renews its lease in the background, however
  slowly its client sends; a request that lost its lease anyway — Postgres unreachable for a whole
  lease — finds out before publishing and publishes nothing).
  A lease-expired reservation whose job reached the log anyway (the process died between the Kafka
  commit and recording it) is treated as published, never as free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from services.api.auth import User
from services.api.db import Pool
from services.api.problems import ProblemError

log = logging.getLogger(__name__)

_MASK = b"\x00boundary\x00"

_RESERVE = (
    "INSERT INTO api_idempotency_keys AS k (owner, idempotency_key, method, path, job_id, lease_expires_at)"
    " VALUES (%(owner)s, %(key)s, %(method)s, %(path)s, %(job_id)s, now() + make_interval(secs => %(lease)s))"
    " ON CONFLICT (owner, idempotency_key) DO UPDATE"
    " SET method = EXCLUDED.method, path = EXCLUDED.path, job_id = EXCLUDED.job_id, body_sha256 = NULL,"
    " lease_expires_at = EXCLUDED.lease_expires_at, created_at = now()"
    " WHERE k.lease_expires_at < now()"
    " AND NOT EXISTS (SELECT 1 FROM publish_jobs j WHERE j.job_id = k.job_id)"
    " RETURNING job_id"
)
_EARLIER = (
    "SELECT k.job_id, k.method, k.path, k.body_sha256,"
    " k.lease_expires_at IS NULL OR EXISTS (SELECT 1 FROM publish_jobs j WHERE j.job_id = k.job_id)"
    " FROM api_idempotency_keys k WHERE k.owner = %s AND k.idempotency_key = %s"
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A key this request holds; `job_id` is the job it will publish under it."""

    owner: str
    key: str
    job_id: UUID


@dataclass(frozen=True, slots=True)
class Published:
    """A key an earlier request published a job under, with that request's fingerprint."""

    job_id: UUID
    method: str
    path: str
    body_sha256: bytes | None


def in_progress() -> ProblemError:
    """409 while another live request holds the key."""
    return ProblemError(
        409,
        "idempotency-in-progress",
        "a request with this Idempotency-Key is still being processed; retry shortly",
        headers={"Retry-After": "1"},
    )


async def reserve(
    pool: Pool, user: User, key: str, method: str, path: str, job_id: UUID, lease_s: float
) -> Reservation | Published:
    """Reserve `key` for a new job, or find the earlier publication; 409 while another request holds it."""
    params = {
        "owner": user.name, "key": key, "method": method, "path": path, "job_id": job_id, "lease": lease_s
    }  # fmt: skip
    async with pool.connection() as db:
        cursor = await db.execute(_RESERVE, params)
        if await cursor.fetchone() is not None:
            return Reservation(user.name, key, job_id)
        cursor = await db.execute(_EARLIER, (user.name, key))
        row = await cursor.fetchone()
    if row is None or not row[4]:
        raise in_progress()
    return Published(row[0], row[1], row[2], row[3])


def refuse_reuse(earlier: Published, method: str, path: str, body_sha256: bytes) -> None:
    """422 when the key is replayed with another request than the one it was used for."""
    if (earlier.method, earlier.path) != (method, path) or (
        earlier.body_sha256 is not None and earlier.body_sha256 != body_sha256
    ):
        raise ProblemError(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request (another body); use a new key",
            title="Idempotency-Key reused",
            job_id=str(earlier.job_id),
        )


async def renew(pool: Pool, held: Reservation, lease_s: float) -> None:
    """Push the lease forward while the request is alive."""
    async with pool.connection() as db:
        await db.execute(
            "UPDATE api_idempotency_keys SET lease_expires_at = now() + make_interval(secs => %s)"
            " WHERE job_id = %s AND lease_expires_at IS NOT NULL",
            (lease_s, held.job_id),
        )


@contextlib.asynccontextmanager
async def holding(pool: Pool, held: Reservation | None, lease_s: float) -> AsyncIterator[None]:
    """Renew the reservation's lease every third of it while the block runs (the request is alive)."""
    if held is None:
        yield
        return

    async def renew_forever() -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                await renew(pool, held, lease_s)
            except Exception:
                log.warning("could not renew an Idempotency-Key lease", exc_info=True)

    task = asyncio.create_task(renew_forever(), name=f"idempotency-lease-{held.job_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def record_body(pool: Pool, held: Reservation, body_sha256: bytes) -> None:
    """Record the digest of the body read under the key, before the job is published; 409 if the
    reservation was lost meanwhile (its lease ran out and another request took the key)."""
    async with pool.connection() as db:
        cursor = await db.execute(
            "UPDATE api_idempotency_keys SET body_sha256 = %s WHERE job_id = %s AND lease_expires_at > now()",
            (body_sha256, held.job_id),
        )
    if cursor.rowcount != 1:
        raise in_progress()


async def mark_published(pool: Pool, held: Reservation) -> None:
    """The job is on the log: the key names it from now on (no lease)."""
    async with pool.connection() as db:
        await db.execute(
            "UPDATE api_idempotency_keys SET lease_expires_at = NULL WHERE job_id = %s", (held.job_id,)
        )


async def release(pool: Pool, held: Reservation) -> None:
    """Give the key back: the request failed or its client went away before the job was published."""
    async with pool.connection() as db:
        await db.execute(
            "DELETE FROM api_idempotency_keys WHERE job_id = %s AND lease_expires_at IS NOT NULL",
            (held.job_id,),
        )


class BodyDigest:
    """SHA-256 of a request body as it streams, with every occurrence of the multipart boundary masked."""

    def __init__(self, boundary: bytes | None) -> None:
        self._hash = hashlib.sha256()
        self._boundary = boundary or b""
        self._carry = b""

    def update(self, chunk: bytes) -> None:
        """Add the next chunk of the body."""
        if not self._boundary:
            self._hash.update(chunk)
            return
        data = self._carry + chunk
        start = 0
        while (found := data.find(self._boundary, start)) >= 0:
            self._hash.update(data[start:found])
            self._hash.update(_MASK)
            start = found + len(self._boundary)
        # A boundary may straddle this chunk and the next: keep back what could be its beginning.
        keep = min(len(self._boundary) - 1, len(data) - start)
        split = len(data) - keep
        self._hash.update(data[start:split])
        self._carry = data[split:]

    def digest(self) -> bytes:
        """The digest of everything added so far."""
        self._hash.update(self._carry)
        self._carry = b""
        return self._hash.digest()


async def digesting(body: AsyncIterator[bytes], digest: BodyDigest) -> AsyncIterator[bytes]:
    """The body, unchanged, feeding `digest` as it goes."""
    async for chunk in body:
        digest.update(chunk)
        yield chunk
