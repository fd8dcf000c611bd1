"""What the api does to and for a job once it exists: retry it, cancel it, read its history, follow it.

The api never writes the status table: a retry or a cancel appends messages to the log (in one Kafka
transaction) and then reads the job back once the projector has moved it, or when a short wait ends.
Deciding which messages a request appends is pure (`retry_messages`, `cancel_messages`); appending,
waiting and reading are the handlers'.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from anyio import to_thread

from services.api import repository
from services.api.auth import User
from services.api.db import AsyncConn
from services.api.models import JobEventPublic, JobPublic
from services.api.problems import ProblemError, kafka_unavailable
from services.api.publisher import KafkaUnavailableError
from services.api.runtime import Services
from services.core.jobs import ENDED_STATUSES, TERMINAL_STATUSES, JobStatus
from services.core.manifest import staging_prefix
from services.core.messages import Envelope, new_message
from services.core.payloads import CancelJob, JobCanceled, JobRetryRequested, PublishCourse
from services.core.settings import Settings
from services.core.storage import delete_prefix

# How long a retry or the cancel of a queued job waits for the projector to show its effect.
ACTION_WAIT_S = 2.0
PRODUCER = "api"

Appends = list[tuple[str, Envelope]]


# --- deciding (pure) ---------------------------------------------------------------------------------


def check_retryable(job: JobPublic) -> None:
    """409 unless the job has failed: only a failed job can be retried."""
    if job.status != JobStatus.FAILED:
        raise ProblemError(
            409,
            "job-not-failed",
            f"only a failed job can be retried; this job is {job.status.value}",
            title="Job cannot be retried",
            job_status=job.status.value,
        )


def retry_messages(
    job: JobPublic, requested_by: str, command_data: PublishCourse, topics: Settings
) -> Appends:
    """JobRetryRequested (this attempt) + PublishCourse (the next one) for a failed job.

    `command_data` is the PublishCourse the job was queued with.
    """
    next_attempt = job.attempt + 1
    requested = new_message(
        JobRetryRequested(requested_by=requested_by, next_attempt=next_attempt),
        job_id=job.job_id,
        attempt=job.attempt,
        producer=PRODUCER,
    )
    command = new_message(command_data, job_id=job.job_id, attempt=next_attempt, producer=PRODUCER)
    return [(topics.events_topic, requested), (topics.commands_topic, command)]


def check_cancelable(job: JobPublic) -> None:
    """409 once the job has ended: only a queued or processing job can be canceled."""
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


def cancel_messages(
    job: JobPublic,
    requested_by: str,
    reason: str | None,
    topics: Settings,
    open_tasks: Sequence[tuple[UUID, int]] = (),
) -> Appends:
    """What canceling a queued or processing job appends:
    - processing, its attempt running on an encoder: CancelJob alone (the encoder appends JobCanceled
      once ffmpeg has stopped);
    - queued: JobCanceled + CancelJob, so it ends whether or not an encoder is free to read the command;
    - a planned course (processing, its work now its tasks', docs/fan-out.md): JobCanceled at once,
      CancelJob, and a CancelJob to each of its open tasks, so the encoders running them stop now
      (the conductor cancels whatever task this list missed)."""
    reason = reason or None
    command = new_message(
        CancelJob(requested_by=requested_by, reason=reason),
        job_id=job.job_id,
        attempt=job.attempt,
        producer=PRODUCER,
    )
    planned = job.status == JobStatus.PROCESSING and bool(job.lectures)
    if job.status == JobStatus.PROCESSING and not planned:
        return [(topics.commands_topic, command)]
    canceled = new_message(
        JobCanceled(requested_by=requested_by, reason=reason),
        job_id=job.job_id,
        attempt=job.attempt,
        producer=PRODUCER,
    )
    tasks = [
        new_message(
            CancelJob(requested_by=requested_by, reason=reason),
            job_id=task_id,
            attempt=attempt,
            producer=PRODUCER,
            course_job_id=job.job_id,
        )
        for task_id, attempt in (open_tasks if planned else ())
    ]
    return [(topics.events_topic, canceled), (topics.commands_topic, command)] + [
        (topics.commands_topic, task) for task in tasks
    ]


# --- handlers ----------------------------------------------------------------------------------------


async def retry_job(services: Services, db: AsyncConn, user: User, job_id: UUID) -> JobPublic:
    """Run a failed job again as attempt + 1 (JobRetryRequested + PublishCourse together)."""
    job = await repository.get_job(db, user, job_id)
    check_retryable(job)
    # The state machine accepts one JobRetryRequested per failed attempt; a concurrent second one is
    # rejected as a stale attempt, and its PublishCourse for the same attempt runs at most once (G1).
    messages = retry_messages(job, user.name, await _publish_data(db, job), services.settings)
    return await _append_and_wait(services, user, job_id, messages)


async def cancel_job(
    services: Services, db: AsyncConn, user: User, job_id: UUID, reason: str | None
) -> JobPublic:
    """Cancel a queued or processing job.

    Queued: JobCanceled + CancelJob together, so the job is canceled whether or not an encoder is free
    to read the command; once the job shows canceled its staging folder is deleted (a canceled job is
    terminal: nothing reads it again). Processing: CancelJob only, answered at once; the encoder
    running the job appends JobCanceled itself once ffmpeg has stopped. A planned course (its work is
    its tasks'): canceled at once like a queued job, and each open task sent its CancelJob.
    """
    job = await repository.get_job(db, user, job_id)
    check_cancelable(job)
    open_tasks = await repository.open_tasks(db, job_id) if job.lectures else []
    messages = cancel_messages(job, user.name, reason, services.settings, open_tasks)
    topics = services.settings
    if job.status == JobStatus.PROCESSING and not job.lectures:
        return await _append_and_wait(services, user, job_id, messages, wait_s=0)
    after = await _append_and_wait(services, user, job_id, messages)
    if after.status == JobStatus.CANCELED:
        await to_thread.run_sync(delete_prefix, services.s3, topics.s3_bucket, staging_prefix(job_id))
    return after


async def job_row(services: Services, token: bytes, job_id: UUID) -> dict[str, Any] | None:
    """The job's columns (exactly JobPublic's) as the token's user sees them, checking the token and
    reading the job in one query; None when the token is unknown or revoked, 404 for a job it may not
    see."""
    async with services.pool.connection() as db:
        found = await repository.authenticated_job_row(db, token, job_id)
    return None if found is None else found[1]


async def job_history(db: AsyncConn, user: User, job_id: UUID) -> list[JobEventPublic]:
    """The job's events in log order, if the user may see the job; 404 otherwise."""
    await repository.get_job(db, user, job_id)
    return await repository.job_events(db, job_id)


async def _publish_data(db: AsyncConn, job: JobPublic) -> PublishCourse:
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
    messages: Appends,
    wait_s: float = ACTION_WAIT_S,
) -> JobPublic:
    """Append the messages in one transaction, then answer with the job once the projector moved it."""
    with services.changes.subscribe(job_id) as changed:
        try:
            await to_thread.run_sync(services.publisher.publish, messages)
        except KafkaUnavailableError:
            raise kafka_unavailable("nothing was changed") from None
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.get(), wait_s)
    async with services.pool.connection() as db:
        return await repository.get_job(db, user, job_id)


# --- following a job -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobChanged:
    """The job as the caller sees it now (differs from what was last told)."""

    job: JobPublic


@dataclass(frozen=True, slots=True)
class JobEnded:
    """The job reached an ended status: nothing more will be told."""

    status: JobStatus


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    """The caller's token was revoked: nothing more will be told."""


@dataclass(frozen=True, slots=True)
class Quiet:
    """Nothing changed for a while; the watch goes on."""


JobWatch = JobChanged | JobEnded | TokenRevoked | Quiet


async def watch_job(
    services: Services, token: bytes, job_id: UUID, quiet_s: float
) -> AsyncGenerator[JobWatch, None]:
    """What happens to a job, as the token's user sees it, until it ends or the token is revoked.

    Driven by the projector's NOTIFY job_changed (LISTEN), not by polling: each notification re-reads
    the row, and a changed row is told. The connection is held only while the row is read. Each read
    re-checks the token, and a revocation (NOTIFY api_token_revoked) wakes every watch, so a revoked
    user's watches end at once. `Quiet` comes after `quiet_s` without a change.
    Close the iterator (contextlib.aclosing) to stop listening before it ends.
    """
    with services.changes.subscribe(job_id) as changed:
        # Read once subscribed, so no change between the caller's first read and LISTEN is missed.
        job = await _read_as_caller(services, token, job_id)
        last = None
        while True:
            if job is None:
                yield TokenRevoked()
                return
            if job != last:
                yield JobChanged(job)
                last = job
            if job.status in ENDED_STATUSES:
                yield JobEnded(job.status)
                return
            try:
                await asyncio.wait_for(changed.get(), quiet_s)
            except TimeoutError:
                yield Quiet()
            job = await _read_as_caller(services, token, job_id)


async def _read_as_caller(services: Services, token: bytes, job_id: UUID) -> JobPublic | None:
    """The job as the token's user sees it; None once the token is revoked."""
    row = await job_row(services, token, job_id)
    return None if row is None else JobPublic.model_validate(row)
