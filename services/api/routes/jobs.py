"""Jobs: list, status, history, live stream, retry and cancel. Instructors see their own jobs; admins all."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.api import repository
from services.api.deps import (
    BearerCredentials,
    CurrentUser,
    DbDep,
    ServicesDep,
    StreamingUser,
    bearer_hash,
    credentials_of,
    invalid_token,
    stream_slot,
)
from services.api.handlers import jobs
from services.api.models import JobActionCreate, JobEventList, JobList, JobPublic
from services.api.problems import problem_responses
from services.api.runtime import Services
from services.core.jobs import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# An SSE comment this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0


async def visible_job(job_id: UUID, user: StreamingUser, services: ServicesDep) -> JobPublic:
    """The job, or 404 — resolved before a streaming response sends its headers."""
    async with services.pool.connection() as db:
        return await repository.get_job(db, user, job_id)


VisibleJob = Annotated[JobPublic, Depends(visible_job)]


@router.get("", response_model=JobList, responses=problem_responses(401, 422))
async def list_jobs(
    user: CurrentUser,
    db: DbDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobList:
    """Instructors: their jobs; admins: every job. Newest first, cursor-paginated."""
    items, next_cursor = await repository.list_jobs(db, user, status.value if status else None, cursor, limit)
    return JobList(items=items, next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    responses=problem_responses(401, 404, 422),
    openapi_extra={"security": [{"HTTPBearer": []}]},
)
async def get_job(job_id: UUID, request: Request) -> Response:
    """Owner or admin: the job's status, attempt, progress, error, timestamps and outputs."""
    # The hottest route, kept lean (measured in bench/api.py): no dependency graph, the token check
    # and the read in one query, and the row — whose columns are exactly JobPublic's — straight to
    # JSON. The guarantees are those of CurrentUser: the token is checked against the database on
    # every request, and another instructor's job is a 404.
    services: Services = request.app.state.services
    token = bearer_hash(credentials_of(request.headers.get("authorization")))
    row = await jobs.job_row(services, token, job_id)
    if row is None:
        raise invalid_token()
    return Response(orjson.dumps(row, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get("/{job_id}/events", response_model=JobEventList, responses=problem_responses(401, 404, 422))
async def get_job_events(job_id: UUID, user: CurrentUser, db: DbDep) -> JobEventList:
    """Owner or admin: the job's history in log order, rejected events included with their reasons."""
    return JobEventList(job_id=job_id, items=await jobs.job_history(db, user, job_id))


@router.get(
    "/{job_id}/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "text/event-stream of `job` events (JobPublic as JSON) until the job ends,"
            " or `revoked` when the caller's token is revoked"
        },
        **problem_responses(401, 404, 422, 429),
    },
    dependencies=[Depends(stream_slot)],
)
async def stream_job(
    job_id: UUID,
    request: Request,
    credentials: BearerCredentials,
    services: ServicesDep,
    first: VisibleJob,  # noqa: ARG001  (resolved for its 404, before the stream sends its headers)
) -> AsyncIterator[ServerSentEvent]:
    """Owner or admin: Server-Sent Events of the job's progress and status until it ends.

    Driven by the projector's NOTIFY job_changed (LISTEN), not by polling: each notification re-reads
    the row and sends it if it changed. The connection is held only while a message is read. Each
    read re-checks the caller's token, and a revocation (NOTIFY api_token_revoked) wakes every stream,
    so a revoked user's streams end at once. At most `api_max_streams_per_user` per user (429 past it).
    """
    token = bearer_hash(credentials)
    async with contextlib.aclosing(jobs.watch_job(services, token, job_id, KEEPALIVE_S)) as watch:
        async for seen in watch:
            if isinstance(seen, jobs.TokenRevoked):
                yield ServerSentEvent(event="revoked", data={"detail": "the API token was revoked"})
            elif isinstance(seen, jobs.JobChanged):
                job = seen.job
                yield ServerSentEvent(
                    event="job", id=str(job.updated_at.timestamp()), data=job.model_dump(mode="json")
                )
            elif isinstance(seen, jobs.JobEnded):
                yield ServerSentEvent(event="end", data={"status": seen.status.value})
            elif await request.is_disconnected():
                return
            else:
                yield ServerSentEvent(comment="keep-alive")


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(401, 404, 409, 422, 503),
)
async def retry_job(job_id: UUID, user: CurrentUser, db: DbDep, services: ServicesDep) -> JobPublic:
    """Owner or admin: run a failed job again as attempt + 1 (JobRetryRequested + PublishCourse together)."""
    return await jobs.retry_job(services, db, user, job_id)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(401, 404, 409, 422, 503),
)
async def cancel_job(
    job_id: UUID,
    user: CurrentUser,
    db: DbDep,
    services: ServicesDep,
    body: Annotated[JobActionCreate | None, Body()] = None,
) -> JobPublic:
    """Owner or admin: cancel a queued or processing job.

    Queued: JobCanceled + CancelJob in one transaction, so the job is canceled at once, whether or not
    an encoder is free to read the command (one busy with a long job on the same partition would not
    read it for hours). The race with an encoder picking the job up is settled by the log: JobStarted
    and JobCanceled share the job's partition; either order ends canceled (queued → canceled, or
    processing → canceled), CancelJob makes that encoder stop ffmpeg, and its later events are kept as
    rejected. Once the job is seen canceled, the api deletes its staging folder (a canceled job is
    terminal: nothing will read it again; the encoder skips commands of a canceled job).

    Processing: CancelJob only. The encoder running the job stops ffmpeg (within seconds), cleans up
    and appends JobCanceled itself, so `canceled` means the work has really stopped; if that encoder
    is dead, the next owner of the partition cancels it. Follow the stream for the final status. If
    JobCompleted reaches the log first, the job stays completed.
    """
    return await jobs.cancel_job(services, db, user, job_id, body.reason if body is not None else None)
