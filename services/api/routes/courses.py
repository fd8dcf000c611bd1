"""Courses: submit one (POST, 202 and the job's Location), read the published catalogue, take one down.

POST /v1/courses queues a publish job; the course appears under GET /v1/courses once that job has
completed (the projector's catalogue), and DELETE /v1/courses/{id} unpublishes it.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response

from services.api import repository
from services.api.deps import CurrentUser, DbDep, ServicesDep, StreamingUser
from services.api.handlers.catalogue import unpublish_course
from services.api.handlers.courses import submit_course
from services.api.models import CourseAccepted, CourseList, CoursePublic
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
        "titles": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": "optional; the field repeated once per video, in the order of the videos"
            " (title N names video N; 1–200 characters, no control characters). Without it each"
            " lecture is titled after its file's name, without the extension",
        },
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


@router.get("", response_model=CourseList, responses=problem_responses(401, 422))
async def list_courses(
    user: CurrentUser,
    db: DbDep,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CourseList:
    """Instructors: their published courses; admins: every one. Newest first, cursor-paginated.

    A course is listed once a job of it has completed, with its lectures in order; a course taken
    down (DELETE) is not.
    """
    items, next_cursor = await repository.list_courses(db, user, cursor, limit)
    return CourseList(items=items, next_cursor=next_cursor)


@router.get("/{course_id}", response_model=CoursePublic, responses=problem_responses(401, 404, 422))
async def get_course(course_id: UUID, user: CurrentUser, db: DbDep) -> CoursePublic:
    """Owner or admin: the published course with its lectures' titles and playback URLs.

    The URLs stay valid while the course is published: a re-encode publishes new objects and the
    catalogue switches every lecture to them in one transaction.
    """
    return await repository.get_course(db, user, course_id)


@router.delete(
    "/{course_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 404, 422, 503),
)
async def delete_course(course_id: UUID, user: CurrentUser, services: ServicesDep) -> Response:
    """Owner or admin: unpublish the course (204). CourseUnpublished goes on the log, the catalogue
    drops the course (its history stays), and its HLS objects are deleted.

    Idempotent: a repeated DELETE of an unpublished course deletes its objects again and answers 204.
    """
    await unpublish_course(services, user, course_id)
    return Response(status_code=204)


def _accepted(response: Response, job_id: UUID, status: JobStatus) -> CourseAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return CourseAccepted(
        job_id=job_id, status=status, status_url=f"/v1/jobs/{job_id}", stream_url=f"/v1/jobs/{job_id}/stream"
    )
