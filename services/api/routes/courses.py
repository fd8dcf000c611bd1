"""POST /v1/courses: an instructor or admin submits a course; the answer is 202 and the job's Location."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response

from services.api.deps import CurrentUser, DbDep, ServicesDep
from services.api.models import CourseAccepted
from services.api.problems import problem_responses
from services.api.submissions import CourseSubmission, find_idempotent
from services.core.jobs import JobStatus

router = APIRouter(prefix="/v1/courses", tags=["courses"])

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
    user: CurrentUser,
    db: DbDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255, min_length=1)] = None,
) -> CourseAccepted:
    """Instructors and admins: stage the course's files and queue its publish job (202 + Location)."""
    if idempotency_key is not None:
        earlier = await find_idempotent(db, user, idempotency_key)
        if earlier is not None:
            return _accepted(response, earlier.job_id, JobStatus.QUEUED)
    submission = CourseSubmission(services, user, idempotency_key)
    with services.changes.subscribe(submission.job_id) as changed:
        try:
            await submission.receive(request.headers.get("content-type"), request.stream())
            name, curriculum = await submission.validate(db)
            accepted = await submission.publish(db, name, curriculum)
        except BaseException:
            await asyncio.shield(submission.discard())
            raise
        if not accepted.replayed:
            await _until_projected(db, accepted.job_id, changed, services.settings.read_your_writes_timeout_s)
    return _accepted(response, accepted.job_id, JobStatus.QUEUED)


async def _until_projected(db: DbDep, job_id: UUID, changed: asyncio.Queue[None], timeout_s: float) -> None:
    """Wait (bounded) for the projector's NOTIFY of the new job.

    Not needed for correctness — GET falls back to the api's published submission — but it makes the
    common case answer from the projector's row, with the log's own view of the job.
    """
    cursor = await db.execute("SELECT 1 FROM publish_jobs WHERE job_id = %s", (job_id,))
    if await cursor.fetchone() is not None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.get(), timeout_s)


def _accepted(response: Response, job_id: UUID, status: JobStatus) -> CourseAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return CourseAccepted(
        job_id=job_id, status=status, status_url=f"/v1/jobs/{job_id}", stream_url=f"/v1/jobs/{job_id}/stream"
    )
