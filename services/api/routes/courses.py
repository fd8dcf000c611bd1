"""POST /v1/courses: an instructor or admin submits a course; the answer is 202 and the job's Location."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response

from services.api.deps import ServicesDep, StreamingUser
from services.api.handlers.courses import submit_course
from services.api.models import CourseAccepted
from services.api.problems import problem_responses
from services.core.jobs import JobStatus

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
    accepted = await submit_course(
        services,
        user,
        content_type=request.headers.get("content-type"),
        body=request.stream(),
        idempotency_key=idempotency_key,
        method=request.method,
        path=request.url.path,
    )
    return _accepted(response, accepted.job_id, JobStatus.QUEUED)


def _accepted(response: Response, job_id: UUID, status: JobStatus) -> CourseAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return CourseAccepted(
        job_id=job_id, status=status, status_url=f"/v1/jobs/{job_id}", stream_url=f"/v1/jobs/{job_id}/stream"
    )
