"""Jobs: list, status, history, live stream, retry and cancel. Instructors see their own jobs; admins all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import orjson
from anyio import to_thread
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.api import repository
from services.api.auth import User
from services.api.deps import (
    BearerCredentials,
    CurrentUser,
    DbDep,
    Services,
    ServicesDep,
    StreamingUser,
    bearer_hash,
    credentials_of,
    invalid_token,
    stream_slot,
)
from services.api.models import JobActionCreate, JobEventList, JobList, JobPublic
from services.api.problems import ProblemError, problem_responses
from services.api.publisher import KafkaUnavailableError
from services.api.staging import delete_prefix
from services.core.jobs import ENDED_STATUSES, TERMINAL_STATUSES, JobStatus
from services.core.manifest import staging_prefix
from services.core.messages import Envelope, new_message
from services.core.payloads import CancelJob, JobCanceled, JobRetryRequested, PublishCourse

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# An SSE comment this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
ACTION_WAIT_S = 2.0


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
    async with services.pool.connection() as db:
        found = await repository.authenticated_job_row(db, token, job_id)
    if found is None:
        raise invalid_token()
    return Response(orjson.dumps(found[1], option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get("/{job_id}/events", response_model=JobEventList, responses=problem_responses(401, 404, 422))
async def get_job_events(job_id: UUID, user: CurrentUser, db: DbDep) -> JobEventList:
    """Owner or admin: the job's history in log order, rejected events included with their reasons."""
    await repository.get_job(db, user, job_id)
    return JobEventList(job_id=job_id, items=await repository.job_events(db, job_id))


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
    first: VisibleJob,
) -> AsyncIterator[ServerSentEvent]:
    """Owner or admin: Server-Sent Events of the job's progress and status until it ends.

    Driven by the projector's NOTIFY job_changed (LISTEN), not by polling: each notification re-reads
    the row and sends it if it changed. The connection is held only while a message is read. Each
    read re-checks the caller's token, and a revocation (NOTIFY api_token_revoked) wakes every stream,
    so a revoked user's streams end at once. At most `api_max_streams_per_user` per user (429 past it).
    """
    token = bearer_hash(credentials)
    job: JobPublic | None = first
    with services.changes.subscribe(job_id) as changed:
        # Read again once subscribed, so no change between the first read and LISTEN is missed.
        job = await _read_as_caller(services, token, job_id)
        last = None
        while True:
            if job is None:
                yield ServerSentEvent(event="revoked", data={"detail": "the API token was revoked"})
                return
            if job != last:
                yield ServerSentEvent(
                    event="job", id=str(job.updated_at.timestamp()), data=job.model_dump(mode="json")
                )
                last = job
            if job.status in ENDED_STATUSES:
                yield ServerSentEvent(event="end", data={"status": job.status.value})
                return
            try:
                await asyncio.wait_for(changed.get(), KEEPALIVE_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ServerSentEvent(comment="keep-alive")
            job = await _read_as_caller(services, token, job_id)


async def _read_as_caller(services: Services, token: bytes, job_id: UUID) -> JobPublic | None:
    """The job as the token's user sees it; None once the token is revoked."""
    async with services.pool.connection() as db:
        found = await repository.authenticated_job_row(db, token, job_id)
    return None if found is None else JobPublic.model_validate(found[1])


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(401, 404, 409, 422, 503),
)
async def retry_job(job_id: UUID, user: CurrentUser, db: DbDep, services: ServicesDep) -> JobPublic:
    """Owner or admin: run a failed job again as attempt + 1 (JobRetryRequested + PublishCourse together)."""
    job = await repository.get_job(db, user, job_id)
    if job.status != JobStatus.FAILED:
        raise ProblemError(
            409,
            "job-not-failed",
            f"only a failed job can be retried; this job is {job.status.value}",
            title="Job cannot be retried",
            job_status=job.status.value,
        )
    next_attempt = job.attempt + 1
    requested = new_message(
        JobRetryRequested(requested_by=user.name, next_attempt=next_attempt),
        job_id=job_id,
        attempt=job.attempt,
        producer="api",
    )
    command = new_message(
        await _publish_data(db, job),
        job_id=job_id,
        attempt=next_attempt,
        producer="api",
    )
    # The state machine accepts one JobRetryRequested per failed attempt; a concurrent second one is
    # rejected as a stale attempt, and its PublishCourse for the same attempt runs at most once (G1).
    return await _append_and_wait(
        services,
        user,
        job_id,
        [(services.settings.events_topic, requested), (services.settings.commands_topic, command)],
    )


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
    job = await repository.get_job(db, user, job_id)
    if job.status in ENDED_STATUSES:
        why = (
            "it has already ended"
            if job.status in TERMINAL_STATUSES
            else "it has failed (retry it, or leave it)"
        )
        raise ProblemError(
            409,
            "job-ended",
            f"the job is {job.status.value}: {why}; only a queued or processing job can be canceled",
            title="Job cannot be canceled",
            job_status=job.status.value,
        )
    reason = body.reason if body is not None and body.reason else None
    topics = services.settings
    command = new_message(
        CancelJob(requested_by=user.name, reason=reason), job_id=job_id, attempt=job.attempt, producer="api"
    )
    if job.status == JobStatus.PROCESSING:
        return await _append_and_wait(services, user, job_id, [(topics.commands_topic, command)], wait_s=0)
    canceled = new_message(
        JobCanceled(requested_by=user.name, reason=reason), job_id=job_id, attempt=job.attempt, producer="api"
    )
    after = await _append_and_wait(
        services, user, job_id, [(topics.events_topic, canceled), (topics.commands_topic, command)]
    )
    if after.status == JobStatus.CANCELED:
        await delete_prefix(services.s3, topics.s3_bucket, staging_prefix(job_id))
    return after


async def _publish_data(db: DbDep, job: JobPublic) -> PublishCourse:
    cursor = await db.execute(
        "SELECT staging_prefix, manifest_key FROM publish_jobs WHERE job_id = %s", (job.job_id,)
    )
    row = await cursor.fetchone()
    if row is None:
        raise repository.not_found(job.job_id)
    return PublishCourse(
        owner=job.owner,
        course_name=job.course_name,
        curriculum=job.curriculum,
        staging_prefix=row[0],
        manifest_key=row[1],
        video_count=job.video_count,
    )


async def _append_and_wait(
    services: Services,
    user: User,
    job_id: UUID,
    messages: list[tuple[str, Envelope]],
    wait_s: float = ACTION_WAIT_S,
) -> JobPublic:
    """Append the messages in one transaction, then answer with the job once the projector moved it."""
    with services.changes.subscribe(job_id) as changed:
        try:
            await to_thread.run_sync(services.publisher.publish, messages)
        except KafkaUnavailableError:
            raise ProblemError(
                503,
                "kafka-unavailable",
                "the job log is unreachable right now; nothing was changed, try again later",
                headers={"Retry-After": "5"},
            ) from None
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.get(), wait_s)
    async with services.pool.connection() as db:
        return await repository.get_job(db, user, job_id)
