"""The tests' one factory of messages: job events for state-machine and projection tests (one call
per event, valid data, explicit attempt), and the commands the api and the owner send (PublishCourse,
CancelJob), stamped now as a producer would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec

from services.core.messages import Envelope, MessageType, Payload, new_message
from services.core.payloads import (
    CancelJob,
    CoursePlanned,
    CourseUnpublished,
    JobCanceled,
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobProgress,
    JobQueued,
    JobRetryRequested,
    JobRetryScheduled,
    JobStalled,
    JobStarted,
    JobTimedOut,
    LecturePublished,
    PlannedLecture,
    ProgressStep,
    PublishCourse,
    PublishedVideo,
    QueuedLecture,
    Rendition,
    TaskCompleted,
    TaskQueued,
    TaskSpec,
    ThumbnailSaved,
    VideoEncoded,
)

T0 = datetime(2026, 6, 15, 8, 18, 12, tzinfo=UTC)


def outputs(job_id: UUID | None = None) -> JobOutputs:
    """A one-video JobCompleted outputs object (under hls/<job_id>/ when a job is given)."""
    folder = f"http://cdn.test/hls/{job_id or 'job'}/1/0"
    return JobOutputs(
        videos=(
            PublishedVideo(
                video_index=0,
                master_playlist_url=f"{folder}/master.m3u8",
                renditions=(
                    Rendition(
                        name="720p",
                        width=1280,
                        height=720,
                        bandwidth=3_000_000,
                        codecs="avc1.64001f,mp4a.40.2",
                    ),
                ),
                duration_s=60.0,
                thumbnail_url=f"{folder}/thumbnail.webp",
                poster_url=f"{folder}/poster.webp",
            ),
        )
    )


def data_for(kind: MessageType, attempt: int, job_id: UUID) -> Payload:
    """Schema-valid data for an event of `kind` in attempt `attempt` (a course event: of course `job_id`)."""
    match kind:
        case MessageType.JOB_QUEUED:
            return JobQueued(
                owner="instructor-1",
                course_name="Limit",
                curriculum="SQL",
                staging_prefix=f"staging/{job_id}/",
                manifest_key=f"staging/{job_id}/manifest.json",
                video_count=1,
                course_id=job_id,
                lectures=(QueuedLecture(index=0, title="Limit 1", filename="Limit 1.mp4"),),
            )
        case MessageType.JOB_STARTED:
            return JobStarted(worker="encoder@test:1")
        case MessageType.JOB_PROGRESS:
            return JobProgress(percent=42.5, step=ProgressStep.TRANSCODING)
        case MessageType.VIDEO_ENCODED:
            video = outputs().videos[0]
            return VideoEncoded(
                video_index=video.video_index,
                master_playlist_url=video.master_playlist_url,
                renditions=video.renditions,
                duration_s=video.duration_s,
            )
        case MessageType.THUMBNAIL_SAVED:
            return ThumbnailSaved(
                video_index=0, kind="thumbnail", source="frame", url="http://cdn.test/t.webp"
            )
        case MessageType.JOB_COMPLETED:
            return JobCompleted(outputs=outputs())
        case MessageType.JOB_FAILED:
            return JobFailed(error_type="NoSuchKey", message="The staged video is gone.", retryable=False)
        case MessageType.JOB_RETRY_SCHEDULED:
            return JobRetryScheduled(
                error_type="s3_unavailable",
                message="S3 answered 503",
                next_attempt=attempt + 1,
                delay_s=2.0,
            )
        case MessageType.JOB_RETRY_REQUESTED:
            return JobRetryRequested(requested_by="instructor-1", next_attempt=attempt + 1)
        case MessageType.JOB_STALLED:
            return JobStalled(
                last_heartbeat_at=None,
                stall_timeout_s=300,
                will_retry=attempt < 3,
                message="worker went silent",
            )
        case MessageType.JOB_TIMED_OUT:
            return JobTimedOut(time_limit_s=14400, will_retry=False, message="encode passed its 4 h limit")
        case MessageType.JOB_CANCELED:
            return JobCanceled(requested_by="instructor-1")
        case MessageType.COURSE_PLANNED:
            spec = task_spec(job_id)
            return CoursePlanned(
                lectures=(PlannedLecture(index=0, title="Limit", duration_s=60.0),),
                tasks=(spec,),
                chunk_s=300,
                segment_s=6,
            )
        case MessageType.TASK_QUEUED:
            return TaskQueued(
                owner="instructor-1",
                course_name="Limit",
                curriculum="SQL",
                staging_prefix=f"staging/{job_id}/",
                task=task_spec(job_id),
            )
        case MessageType.TASK_COMPLETED:
            video = outputs().videos[0]
            return TaskCompleted(
                output_prefix=f"hls/{job_id}/tasks/{job_id}/{attempt}/",
                renditions=video.renditions,
                duration_s=60.0,
            )
        case MessageType.LECTURE_PUBLISHED:
            return LecturePublished(video=outputs().videos[0])
        case MessageType.COURSE_UNPUBLISHED:
            # Keyed by the course id: for a course's first job, the job id (see `event`).
            return CourseUnpublished(course_id=job_id, requested_by="instructor-1")
        case _:
            raise ValueError(f"{kind} is not an event")


def task_spec(task_id: UUID, *, lecture_index: int = 0, chunk_index: int = 0) -> TaskSpec:
    """A video task of one 60 s chunk; `task_id` is the id of the task's job."""
    return TaskSpec(
        task_id=task_id,
        lecture_index=lecture_index,
        media="video",
        chunk_index=chunk_index,
        chunk_count=1,
        start_s=0.0,
        end_s=60.0,
        source_key=f"staging/{task_id}/videos/{lecture_index}-lecture.mp4",
    )


def event(
    kind: MessageType,
    job_id: UUID,
    attempt: int = 1,
    *,
    at: datetime | None = None,
    data: Payload | None = None,
) -> Envelope:
    """An event of `kind` for `job_id`, with a fresh event_id; `data`, if given, must be a `kind`."""
    payload = data if data is not None else data_for(kind, attempt, job_id)
    assert payload.message_type == kind, f"{type(payload).__name__} is not a {kind}"
    return Envelope(
        event_id=uuid4(),
        job_id=job_id,
        attempt=attempt,
        occurred_at=at or T0,
        producer="test",
        data=payload,
    )


def timeline(job_id: UUID, *kinds: MessageType, attempt: int = 1, start: datetime = T0) -> list[Envelope]:
    """Events of one attempt, one minute apart."""
    return [event(k, job_id, attempt, at=start + timedelta(minutes=i)) for i, k in enumerate(kinds)]


def course_data(job_id: UUID, **fields: Any) -> JobQueued:
    """JobQueued of a one-video course under staging/<job_id>/ (its PublishCourse: `.publish_command()`)."""
    queued = data_for(MessageType.JOB_QUEUED, 1, job_id)
    assert isinstance(queued, JobQueued)
    return msgspec.structs.replace(queued, **fields)


def job_queued(job_id: UUID, data: JobQueued | None = None) -> Envelope[JobQueued]:
    """JobQueued as the api writes it (a new event id each call)."""
    return new_message(data or course_data(job_id), job_id=job_id, attempt=1, producer="test")


def publish_course(job_id: UUID, attempt: int = 1, data: JobQueued | None = None) -> Envelope[PublishCourse]:
    """A PublishCourse command (a new event id each call, like a redelivery by a producer retry)."""
    command = (data or course_data(job_id)).publish_command()
    return new_message(command, job_id=job_id, attempt=attempt, producer="test")


def cancel_job(job_id: UUID, requested_by: str = "instructor-1") -> Envelope[CancelJob]:
    """A CancelJob command from `requested_by`."""
    return new_message(CancelJob(requested_by=requested_by), job_id=job_id, attempt=1, producer="test")


def course_job(
    job_id: UUID, course_id: UUID, *, start: datetime = T0, outcome: MessageType = MessageType.JOB_COMPLETED
) -> list[Envelope]:
    """A job of course `course_id` (a re-encode when the ids differ) from JobQueued to `outcome`, one
    minute apart; a completion publishes objects under hls/<job_id>/."""
    queued = event(MessageType.JOB_QUEUED, job_id, at=start, data=course_data(job_id, course_id=course_id))
    started = event(MessageType.JOB_STARTED, job_id, at=start + timedelta(minutes=1))
    ended_at = start + timedelta(minutes=2)
    data = JobCompleted(outputs=outputs(job_id)) if outcome == MessageType.JOB_COMPLETED else None
    return [queued, started, event(outcome, job_id, at=ended_at, data=data)]


def course_unpublished(course_id: UUID, *, at: datetime = T0) -> Envelope:
    """CourseUnpublished of `course_id`, keyed (like the api's) by the course id."""
    return event(MessageType.COURSE_UNPUBLISHED, course_id, at=at)
