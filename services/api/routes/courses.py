"""POST /v1/courses: an instructor or admin submits a course; the answer is 202 and the job's Location."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any
from uuid import UUID, uuid4

import psycopg
from fastapi import APIRouter, Header, Request, Response

from services.api import idempotency
from services.api.deps import Services, ServicesDep, StreamingUser
from services.api.formstream import boundary_of
from services.api.models import CourseAccepted
from services.api.problems import ProblemError, problem_responses
from services.api.submissions import CourseSubmission
from services.core.jobs import JobStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/courses", tags=["courses"])

# Printable ASCII, no spaces at the ends: a key is data (stored, compared), never free text.
IDEMPOTENCY_KEY_FORMAT = r"^[!-~]([ -~]*[!-~])?$"

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "curriculum"],
    "properties": {
        "name": {"type": "string", "description": "course name (any script, 1–200 characters)"},
        "curriculum": {"type": "string", "description": "catalogue code, e.g. CS-101"},
        "videos": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "the lecture videos, in course order",
        },
        "thumbnails": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "optional; thumbnail N belongs to video N",
        },
        "video_upload_ids": {
            "type": "array",
            "items": {"type": "string", "format": "uuid"},
            "description": "completed direct uploads, instead of videos",
        },
        "thumbnail_upload_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    },
}


@router.post(
    "",
    status_code=202,
    response_model=CourseAccepted,
    responses=problem_responses(400, 401, 409, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}}}
    },
)
async def create_course(
    request: Request,
    response: Response,
    user: StreamingUser,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=IDEMPOTENCY_KEY_FORMAT,
            description="printable ASCII; the same key with the same form answers the same job",
        ),
    ] = None,
) -> CourseAccepted:
    """Instructors and admins: stage the course's files and queue its publish job (202 + Location).

    No database connection is held while the body streams: each step borrows one for its queries only.
    """
    settings = services.settings
    boundary = boundary_of(request.headers.get("content-type"))
    digest = idempotency.BodyDigest(boundary)
    held: idempotency.Reservation | None = None
    job_id = uuid4()
    if idempotency_key is not None:
        outcome = await idempotency.reserve(
            services.pool, user, idempotency_key, request.method, request.url.path, job_id,
            settings.api_idempotency_lease_s,
        )  # fmt: skip
        if isinstance(outcome, idempotency.Published):
            # The same key again: the body must be the one it was used for (read, hashed, not stored).
            async for chunk in request.stream():
                digest.update(chunk)
            idempotency.refuse_reuse(outcome, request.method, request.url.path, digest.digest())
            return _accepted(response, outcome.job_id, JobStatus.QUEUED)
        held = outcome
    submission = CourseSubmission(services, user, job_id)
    body = idempotency.digesting(request.stream(), digest)
    lease_s = settings.api_idempotency_lease_s
    with services.changes.subscribe(submission.job_id) as changed:
        try:
            async with idempotency.holding(services.pool, held, lease_s):
                await submission.receive(request.headers.get("content-type"), body)
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
    return _accepted(response, accepted.job_id, JobStatus.QUEUED)


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


def _accepted(response: Response, job_id: UUID, status: JobStatus) -> CourseAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return CourseAccepted(
        job_id=job_id, status=status, status_url=f"/v1/jobs/{job_id}", stream_url=f"/v1/jobs/{job_id}/stream"
    )
