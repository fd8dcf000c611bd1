"""Accepting a course (POST /v1/courses): the Idempotency-Key, the submission, the wait for the projector.

Order of effects (see `services.api.submissions` for the submission's own):
1. an Idempotency-Key, if any, is reserved for a fresh job id before any body byte is read; the same
   key again answers the job published under it (after checking the body is the one it was used for);
2. the form is staged and checked, the job published (JobQueued + PublishCourse in one transaction);
3. the key is marked published, then the answer waits (bounded) for the projector's row.
A failure before the job is on the log deletes what was staged and gives the key back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import psycopg

from services.api import idempotency
from services.api.auth import User
from services.api.formstream import boundary_of
from services.api.problems import ProblemError
from services.api.runtime import Services
from services.api.submissions import Accepted, CourseSubmission

log = logging.getLogger(__name__)


async def submit_course(
    services: Services,
    user: User,
    *,
    content_type: str | None,
    body: AsyncIterator[bytes],
    idempotency_key: str | None,
    method: str,
    path: str,
) -> Accepted:
    """Stage the course's files and queue its publish job; `method` and `path` fingerprint the key.

    No database connection is held while the body streams: each step borrows one for its queries only.
    """
    settings = services.settings
    boundary = boundary_of(content_type)
    digest = idempotency.BodyDigest(boundary)
    held: idempotency.Reservation | None = None
    job_id = uuid4()
    if idempotency_key is not None:
        outcome = await idempotency.reserve(
            services.pool, user, idempotency_key, method, path, job_id, settings.api_idempotency_lease_s
        )
        if isinstance(outcome, idempotency.Published):
            # The same key again: the body must be the one it was used for (read, hashed, not stored).
            async for chunk in body:
                digest.update(chunk)
            idempotency.refuse_reuse(outcome, method, path, digest.digest())
            return Accepted(outcome.job_id, replayed=True)
        held = outcome
    submission = CourseSubmission(services, user, job_id)
    digested = idempotency.digesting(body, digest)
    lease_s = settings.api_idempotency_lease_s
    with services.changes.subscribe(submission.job_id) as changed:
        try:
            async with idempotency.holding(services.pool, held, lease_s):
                await submission.receive(content_type, digested)
                if held is not None:
                    await idempotency.record_body(services.pool, held, digest.digest())
                async with services.pool.connection() as db:
                    name, curriculum = await submission.validate(db)
                async with services.pool.connection() as db:
                    accepted = await submission.publish(db, name, curriculum)
        except BaseException:
            await asyncio.shield(_undo(services, submission, held))
            raise
        # The job is on the log: nothing below may undo it, and nothing below may fail the request.
        if held is not None:
            try:
                await asyncio.shield(idempotency.mark_published(services.pool, held))
            except Exception:
                # The lease runs out, and the key is then answered as published (its job is projected).
                log.exception("could not mark an Idempotency-Key published", extra={"job_id": str(job_id)})
        await _until_projected(services, accepted.job_id, changed, settings.read_your_writes_timeout_s)
    return accepted


async def _undo(
    services: Services, submission: CourseSubmission, held: idempotency.Reservation | None
) -> None:
    """Delete what was staged and give the Idempotency-Key back (the job was never published)."""
    try:
        await submission.discard()
    finally:
        if held is not None and not submission.keep_staging:
            await idempotency.release(services.pool, held)


async def _until_projected(
    services: Services, job_id: UUID, changed: asyncio.Queue[None], timeout_s: float
) -> None:
    """Wait (bounded) for the projector's NOTIFY of the new job.

    Not needed for correctness — GET falls back to the api's published submission — but it makes the
    common case answer from the projector's row, with the log's own view of the job.
    """
    try:
        async with services.pool.connection() as db:  # returned before the wait
            cursor = await db.execute("SELECT 1 FROM publish_jobs WHERE job_id = %s", (job_id,))
            if await cursor.fetchone() is not None:
                return
    except (ProblemError, psycopg.Error):
        return  # the pool is busy or Postgres is down: the job is accepted all the same
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.get(), timeout_s)
