"""Taking a published course down (DELETE /v1/courses/{id}): an event on the log, then its objects.

Order of effects, and why a crash anywhere is repaired by asking again:
1. the course must be the caller's, published or already unpublished (else 404);
2. a published course gets CourseUnpublished on the log (keyed by the course id), acknowledged by
   every in-sync replica (G3); from then on the log says the course is down, and the projector drops
   its catalogue rows (courses, lectures) while its history stays in job_events;
3. the answer waits (bounded) for the projector, so the next GET already says 404;
4. the HLS objects of every job of the course (hls/<job_id>/…) are deleted.
A crash after 2 leaves objects behind but the course unpublished: the same DELETE again finds the
course unpublished, appends nothing, deletes the objects again and answers 204. Deleting is
idempotent, so a repeated or concurrent DELETE is harmless. A crash before 2 changed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from anyio import to_thread

from services.api import repository
from services.api.auth import User
from services.api.problems import kafka_unavailable
from services.api.publisher import KafkaUnavailableError
from services.api.runtime import Services
from services.core.messages import new_message
from services.core.payloads import CourseUnpublished
from services.core.storage import delete_prefix, published_prefix

log = logging.getLogger(__name__)

PRODUCER = "api"


async def unpublish_course(services: Services, user: User, course_id: UUID) -> int:
    """Take the user's course down and delete its published objects; returns how many were deleted."""
    settings = services.settings
    async with services.pool.connection() as db:
        standing = await repository.course_standing(db, user, course_id)
    if standing == "published":
        event = new_message(
            CourseUnpublished(course_id=course_id, requested_by=user.name),
            job_id=course_id,  # keyed by the course id: the partition of the course's first job
            attempt=1,
            producer=PRODUCER,
        )
        # The projector announces the course's change under its id (that of its first job).
        with services.changes.subscribe(course_id) as changed:
            try:
                await to_thread.run_sync(services.publisher.publish, [(settings.events_topic, event)])
            except KafkaUnavailableError:
                raise kafka_unavailable("the course is still published") from None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.get(), settings.read_your_writes_timeout_s)
    # The log says the course is down: its objects go, whether this is the first DELETE or a repeat.
    async with services.pool.connection() as db:
        job_ids = await repository.course_job_ids(db, course_id)
    deleted = 0
    for job_id in job_ids:
        deleted += await to_thread.run_sync(
            delete_prefix, services.s3, settings.s3_bucket, published_prefix(job_id)
        )
    log.info(
        "course unpublished",
        extra={"course_id": str(course_id), "objects_deleted": deleted, "already": standing != "published"},
    )
    return deleted
