"""Which events of the log become a notification, and the notification's JSON (pure).

A course job's end is notified (never a task's): JobCompleted (course.completed), JobFailed and a
watchdog verdict that leaves no attempt (JobStalled / JobTimedOut with will_retry false:
course.failed), JobCanceled (course.canceled). Only an event the state machine *accepted* is
notified: the projector's verdict on it (services/core/jobs.py, applied in Postgres) is awaited
first, so a redelivered JobFailed of a completed job (the seed incident) or an end of a stale
attempt never reaches a receiver (G1, G4).

The body is a function of the event and the job alone, so every attempt of a notification, before
and after a restart, sends the same bytes under the same id (the event's id).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec
import orjson

from services.core.messages import Envelope
from services.core.payloads import JobCanceled, JobCompleted, JobFailed, JobStalled, JobTimedOut


class NotificationType(StrEnum):
    """What a receiver subscribes to."""

    COMPLETED = "course.completed"
    FAILED = "course.failed"
    CANCELED = "course.canceled"


def notification_type(envelope: Envelope) -> NotificationType | None:
    """The notification `envelope` would make if the state machine accepts it; None for most events.

    Only a course job's end is notified: a task's (a piece of a course's work, docs/fan-out.md, whose
    events name their course in `course_job_id`) is the course's business, which ends on its own.
    """
    if envelope.course_job_id is not None:
        return None
    match envelope.data:
        case JobCompleted():
            return NotificationType.COMPLETED
        case JobFailed():
            return NotificationType.FAILED
        case JobStalled(will_retry=False) | JobTimedOut(will_retry=False):
            return NotificationType.FAILED
        case JobCanceled():
            return NotificationType.CANCELED
    return None


@dataclass(frozen=True, slots=True)
class Job:
    """What the notification says about the job, from the projector's row: its owner and its course."""

    owner: str
    course_name: str
    curriculum: str
    video_count: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """The projector applied the event: notify the owner's endpoints."""

    job: Job


@dataclass(frozen=True, slots=True)
class Refused:
    """The projector did not apply the event (a rejection, or Postgres refused it): notify nobody."""

    why: str


Verdict = Accepted | Refused


def _error(envelope: Envelope) -> dict[str, Any]:
    match envelope.data:
        case JobFailed(error_type=error_type, message=message):
            return {"type": error_type, "message": message}
        case JobStalled(message=message):
            return {"type": "stalled", "message": message}
        case JobTimedOut(message=message):
            return {"type": "timeout", "message": message}
    raise ValueError(f"{envelope.type} carries no error")


def notification(envelope: Envelope, kind: NotificationType, job: Job) -> dict[str, Any]:
    """The notification of `envelope` as a JSON-ready dict."""
    data: dict[str, Any] = {
        "job_id": str(envelope.job_id),
        "attempt": envelope.attempt,
        "owner": job.owner,
        "course_name": job.course_name,
        "curriculum": job.curriculum,
        "video_count": job.video_count,
        "status_url": f"/v1/jobs/{envelope.job_id}",
    }
    if isinstance(envelope.data, JobCompleted):
        data["outputs"] = msgspec.to_builtins(envelope.data.outputs)
    elif kind is NotificationType.FAILED:
        data["error"] = _error(envelope)
    elif isinstance(envelope.data, JobCanceled):
        data["canceled_by"] = envelope.data.requested_by
        data["reason"] = envelope.data.reason
    return {
        "id": str(envelope.event_id),
        "type": kind.value,
        "occurred_at": envelope.occurred_at.isoformat(),
        "data": data,
    }


def notification_body(envelope: Envelope, kind: NotificationType, job: Job) -> bytes:
    """The request body: the notification as compact JSON with sorted keys (the same bytes every time)."""
    return orjson.dumps(notification(envelope, kind, job), option=orjson.OPT_SORT_KEYS)
