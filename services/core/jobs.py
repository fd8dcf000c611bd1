"""The publish-job state machine: a pure function of (state, event) to a new state or a named rejection.

This module is the whole of the job state machine (docs/guarantees.md) and nothing else: no I/O, no clock, no
randomness. Every timestamp it writes comes from the event itself, so replaying the log rebuilds the
same table (G4). Rules are named checks; each refusal is a named rejection with a readable reason.

Invariants kept by construction (and checked by property tests):
- `completed_at` is set if and only if status is `completed` (the seed incident's broken row cannot exist);
  likewise `failed_at` iff `failed` and `canceled_at` iff `canceled`.
- A terminal state (`completed`, `canceled`) never changes.
- Only events of the current attempt move a job; the attempt only grows, one step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from services.core.messages import Envelope, MessageType
from services.core.payloads import (
    CoursePlanned,
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
    PublishedVideo,
    TaskCompleted,
    TaskQueued,
    TaskSpec,
    ThumbnailSaved,
    VideoEncoded,
)


class JobStatus(StrEnum):
    """Where a publish job stands."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


# A terminal job accepts nothing more. `failed` is not terminal: its owner may ask for a new attempt.
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.CANCELED})
# Statuses in which a job has ended for its current attempt: no command delivery may change it (G1).
ENDED_STATUSES = TERMINAL_STATUSES | {JobStatus.FAILED}


@dataclass(frozen=True, slots=True)
class JobState:
    """One job as the log has made it: the row of the status table."""

    job_id: UUID
    status: JobStatus
    attempt: int
    owner: str
    course_name: str
    curriculum: str
    staging_prefix: str
    manifest_key: str
    video_count: int
    created_at: datetime
    updated_at: datetime
    last_event_id: UUID
    progress_percent: float = 0.0
    current_step: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    canceled_at: datetime | None = None
    outputs: JobOutputs | None = None
    # A task (one piece of a course's work, docs/fan-out.md) is a job of its own with these set: the
    # course it belongs to, what it encodes, and, once completed, what it wrote.
    course_job_id: UUID | None = None
    task: TaskSpec | None = None
    task_result: TaskCompleted | None = None
    # A course once planned: its lectures, and each lecture as it is published (by video_index).
    lectures: tuple[PlannedLecture, ...] = ()
    published: tuple[PublishedVideo, ...] = ()

    @property
    def has_ended(self) -> bool:
        """True when no delivery of a command may change this job any more."""
        return self.status in ENDED_STATUSES

    @property
    def is_task(self) -> bool:
        """True for a task of a course, false for a course job."""
        return self.task is not None


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event the state machine refuses; it is recorded with its reason and changes nothing."""

    reason: str

    @property
    def name(self) -> str:
        """The kind of rejection, as the rejected_events table and the DLQ record it: the class name."""
        return type(self).__name__


# The kinds of rejection. Each is its own class so callers can match on it.
class TerminalState(Rejection):
    """The job has completed or was canceled; nothing may change it."""


class StaleAttempt(Rejection):
    """The event belongs to an attempt other than the job's current one."""


class UnknownJob(Rejection):
    """The event names a job the log has never queued."""


class IllegalTransition(Rejection):
    """The event is not allowed in the job's current status."""


Outcome = JobState | Rejection

# The error_type a watchdog verdict leaves on the job.
_VERDICTS: dict[str, str] = {MessageType.JOB_STALLED: "stalled", MessageType.JOB_TIMED_OUT: "timeout"}


def apply(state: JobState | None, event: Envelope) -> Outcome:
    """The job's next state after `event`, or the rejection that leaves it unchanged."""
    if state is None:
        return _birth(event)
    if state.status in TERMINAL_STATUSES:
        return TerminalState(
            f"job is {state.status}; {event.type} of attempt {event.attempt} "
            "cannot change a job that has ended"
        )
    if event.type in (MessageType.JOB_QUEUED, MessageType.TASK_QUEUED):
        return IllegalTransition(f"job already exists (status {state.status}); it cannot be queued again")
    if event.attempt != state.attempt:
        return StaleAttempt(
            f"{event.type} belongs to attempt {event.attempt}, but the job is on attempt {state.attempt}"
        )
    moved = _transition(state, event)
    if moved is None:
        return IllegalTransition(f"{event.type} is not allowed while the job is {state.status}")
    return moved


def _birth(event: Envelope) -> Outcome:
    """A job's first row: a course's from JobQueued, a task's from TaskQueued (its course's names,
    its own source, and the task it runs); both start queued at attempt 1."""
    data = event.data
    if not isinstance(data, JobQueued | TaskQueued):
        return UnknownJob(f"{event.type} names job {event.job_id}, which was never queued")
    what = "task" if isinstance(data, TaskQueued) else "job"
    if event.attempt != 1:
        return IllegalTransition(f"a {what} is queued at attempt 1, not attempt {event.attempt}")
    if isinstance(data, TaskQueued):
        if event.course_job_id is None or event.course_job_id == event.job_id:
            return IllegalTransition("a task must name the course it belongs to, other than itself")
        if data.task.task_id != event.job_id:
            return IllegalTransition(
                f"TaskQueued for task {data.task.task_id} was sent as job {event.job_id}"
            )
        manifest_key, video_count, course_job_id, task = (
            data.task.source_key,
            1,
            event.course_job_id,
            data.task,
        )
    else:
        manifest_key, video_count, course_job_id, task = (data.manifest_key, data.video_count, None, None)
    return JobState(
        job_id=event.job_id,
        status=JobStatus.QUEUED,
        attempt=1,
        owner=data.owner,
        course_name=data.course_name,
        curriculum=data.curriculum,
        staging_prefix=data.staging_prefix,
        created_at=event.occurred_at,
        updated_at=event.occurred_at,
        last_event_id=event.event_id,
        manifest_key=manifest_key,
        video_count=video_count,
        course_job_id=course_job_id,
        task=task,
    )


def _transition(state: JobState, event: Envelope) -> JobState | None:
    """The transition table (docs/guarantees.md), row by row; None: the pair (status, event) has no row."""
    changes = _changes(state, event)
    if changes is None:
        return None
    # One copy per event: every row also stamps the event's time and id on the job.
    changes["updated_at"] = event.occurred_at
    changes["last_event_id"] = event.event_id
    return _evolve(state, changes)


_FIELDS = tuple(f.name for f in fields(JobState))
_set = object.__setattr__


def _evolve(state: JobState, changes: dict[str, Any]) -> JobState:
    """`dataclasses.replace` without its per-call introspection: this runs once per applied event."""
    copy = object.__new__(JobState)
    for name in _FIELDS:
        _set(copy, name, changes[name] if name in changes else getattr(state, name))
    return copy


def _changes(state: JobState, event: Envelope) -> dict[str, Any] | None:
    at = event.occurred_at
    status = state.status

    # One case per payload class, each guarded by the statuses in which the table has a row for it.
    match event.data:
        case JobStarted() if status == JobStatus.QUEUED:
            return {
                "status": JobStatus.PROCESSING,
                "started_at": at,
                "progress_percent": 0.0,
                "current_step": None,
                "error_type": None,
                "error_message": None,
            }
        case JobProgress(percent=percent, step=step) if status == JobStatus.PROCESSING:
            return {"progress_percent": float(percent), "current_step": step}
        case VideoEncoded() | ThumbnailSaved() if status == JobStatus.PROCESSING:
            return {}
        case TaskCompleted() as result if status == JobStatus.PROCESSING and state.is_task:
            return {
                "status": JobStatus.COMPLETED,
                "completed_at": at,
                "progress_percent": 100.0,
                "current_step": None,
                "task_result": result,
            }
        case CoursePlanned(lectures=lectures) if status == JobStatus.PROCESSING and not state.is_task:
            return {"lectures": lectures}
        case LecturePublished(video=video) if status == JobStatus.PROCESSING and state.lectures:
            # One entry per lecture: publishing a lecture again (after a retry) replaces its entry.
            kept = tuple(v for v in state.published if v.video_index != video.video_index)
            return {"published": tuple(sorted((*kept, video), key=lambda v: v.video_index))}
        case JobCompleted(outputs=outputs) if status == JobStatus.PROCESSING and not state.is_task:
            return {
                "status": JobStatus.COMPLETED,
                "completed_at": at,
                "progress_percent": 100.0,
                "current_step": None,
                "outputs": outputs,
            }
        case JobFailed(error_type=error_type, message=message) if status == JobStatus.PROCESSING:
            return _failed(at, error_type, message)
        case JobRetryScheduled() as retry if status == JobStatus.PROCESSING:
            return _requeued(state, retry.next_attempt, retry.error_type, retry.message)
        case JobStalled() | JobTimedOut() as verdict if status == JobStatus.PROCESSING:
            if verdict.will_retry:
                return _requeued(state, state.attempt + 1, _VERDICTS[event.type], verdict.message)
            return _failed(at, _VERDICTS[event.type], verdict.message)
        case JobCanceled() if status in (JobStatus.QUEUED, JobStatus.PROCESSING):
            return {"status": JobStatus.CANCELED, "canceled_at": at, "current_step": None}
        case JobRetryRequested(next_attempt=next_attempt) if status == JobStatus.FAILED:
            return _requeued(state, next_attempt, None, None)
    return None


def _failed(at: datetime, error_type: str, message: str) -> dict[str, Any]:
    return {
        "status": JobStatus.FAILED,
        "failed_at": at,
        "current_step": None,
        "error_type": error_type,
        "error_message": message,
    }


def _requeued(
    state: JobState, next_attempt: int, error_type: str | None, message: str | None
) -> dict[str, Any] | None:
    # The attempt grows by exactly one, so two events can never both open "the next" attempt.
    if next_attempt != state.attempt + 1:
        return None
    return {
        "status": JobStatus.QUEUED,
        "attempt": next_attempt,
        "progress_percent": 0.0,
        "current_step": None,
        "started_at": None,
        "failed_at": None,
        # The reason for the retry stays visible until the next attempt starts.
        "error_type": error_type,
        "error_message": message,
    }
