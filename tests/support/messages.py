"""The tests' one factory of messages: job events for state-machine and projection tests (one call
per event, valid data, explicit attempt), and the commands the api and the owner send (PublishCourse,
CancelJob), stamped now as a producer would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from services.core.messages import Envelope, MessageType, new_message

T0 = datetime(2026, 6, 15, 8, 18, 12, tzinfo=UTC)


def outputs() -> dict[str, Any]:
    """A one-video JobCompleted outputs object."""
    return {
        "videos": [
            {
                "video_index": 0,
                "master_playlist_url": "http://cdn.test/hls/job/1/0/master.m3u8",
                "renditions": [
                    {
                        "name": "720p",
                        "width": 1280,
                        "height": 720,
                        "bandwidth": 3_000_000,
                        "codecs": "avc1.64001f,mp4a.40.2",
                    }
                ],
                "duration_s": 60.0,
                "thumbnail_url": "http://cdn.test/hls/job/1/0/thumbnail.webp",
                "poster_url": "http://cdn.test/hls/job/1/0/poster.webp",
            }
        ]
    }


def data_for(kind: MessageType, attempt: int, job_id: UUID) -> dict[str, Any]:
    """Schema-valid data for an event of `kind` in attempt `attempt`."""
    match kind:
        case MessageType.JOB_QUEUED:
            return {
                "owner": "instructor-1",
                "course_name": "Limit",
                "curriculum": "SQL",
                "staging_prefix": f"staging/{job_id}/",
                "manifest_key": f"staging/{job_id}/manifest.json",
                "video_count": 1,
            }
        case MessageType.JOB_STARTED:
            return {"worker": "encoder@test:1"}
        case MessageType.JOB_PROGRESS:
            return {"percent": 42.5, "step": "transcoding"}
        case MessageType.VIDEO_ENCODED:
            return {
                k: v for k, v in outputs()["videos"][0].items() if k not in {"thumbnail_url", "poster_url"}
            }
        case MessageType.THUMBNAIL_SAVED:
            return {"video_index": 0, "kind": "thumbnail", "source": "frame", "url": "http://cdn.test/t.webp"}
        case MessageType.JOB_COMPLETED:
            return {"outputs": outputs()}
        case MessageType.JOB_FAILED:
            return {"error_type": "NoSuchKey", "message": "The staged video is gone.", "retryable": False}
        case MessageType.JOB_RETRY_SCHEDULED:
            return {
                "error_type": "s3_unavailable",
                "message": "S3 answered 503",
                "next_attempt": attempt + 1,
                "delay_s": 2.0,
            }
        case MessageType.JOB_RETRY_REQUESTED:
            return {"requested_by": "instructor-1", "next_attempt": attempt + 1}
        case MessageType.JOB_STALLED:
            return {
                "last_heartbeat_at": None,
                "stall_timeout_s": 300,
                "will_retry": attempt < 3,
                "message": "worker went silent",
            }
        case MessageType.JOB_TIMED_OUT:
            return {"time_limit_s": 14400, "will_retry": False, "message": "encode passed its 4 h limit"}
        case MessageType.JOB_CANCELED:
            return {"requested_by": "instructor-1"}
        case _:
            raise ValueError(f"{kind} is not a job event")


def event(
    kind: MessageType,
    job_id: UUID,
    attempt: int = 1,
    *,
    at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> Envelope:
    """An event of `kind` for `job_id`, with a fresh event_id."""
    return Envelope(
        event_id=uuid4(),
        type=kind,
        version=1,
        job_id=job_id,
        attempt=attempt,
        occurred_at=at or T0,
        producer="test",
        data=data if data is not None else data_for(kind, attempt, job_id),
    )


def timeline(job_id: UUID, *kinds: MessageType, attempt: int = 1, start: datetime = T0) -> list[Envelope]:
    """Events of one attempt, one minute apart."""
    return [event(k, job_id, attempt, at=start + timedelta(minutes=i)) for i, k in enumerate(kinds)]


def course_data(job_id: UUID, **fields: Any) -> dict[str, Any]:
    """The data of JobQueued and PublishCourse: a one-video course staged under staging/<job_id>/."""
    return {**data_for(MessageType.JOB_QUEUED, 1, job_id), **fields}


def job_queued(job_id: UUID, data: dict[str, Any] | None = None) -> Envelope:
    """JobQueued as the api writes it (a new event id each call)."""
    return new_message(
        MessageType.JOB_QUEUED, job_id=job_id, attempt=1, data=data or course_data(job_id), producer="test"
    )


def publish_course(job_id: UUID, attempt: int = 1, data: dict[str, Any] | None = None) -> Envelope:
    """A PublishCourse command (a new event id each call, like a redelivery by a producer retry)."""
    return new_message(
        MessageType.PUBLISH_COURSE,
        job_id=job_id,
        attempt=attempt,
        data=data or course_data(job_id),
        producer="test",
    )


def cancel_job(job_id: UUID, requested_by: str = "instructor-1") -> Envelope:
    """A CancelJob command from `requested_by`."""
    return new_message(
        MessageType.CANCEL_JOB, job_id=job_id, attempt=1, data={"requested_by": requested_by}, producer="test"
    )
