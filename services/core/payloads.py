"""The payload of every message: one class per type and version, mirroring schemas/<Type>.v<N>.json.

Producers build these (`new_message(JobStarted(worker=name), ...)`) and handlers read their attributes;
the codec turns JSON into them and back. The JSON Schema files stay the contract: the codec validates
every message against them before a class is built, and a unit test checks that each class and its
schema agree field for field (names, required or optional, types), both ways.

Naming: a class is named after its type while it is the latest version of it. When a version N + 1
is published, the old class is renamed `<Type>V<N>` and kept, registered with an upcaster in the codec;
consumers only ever receive the latest class (the codec upcasts older messages first).

Lists are tuples, so a frozen payload is immutable all the way down.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal
from uuid import UUID

import msgspec

from services.core.messages import MessageType, Payload

__all__ = [
    "LATEST_PAYLOADS",
    "LATEST_VERSION",
    "PAYLOAD_CLASSES",
    "CancelJob",
    "CoursePlanned",
    "CourseUnpublished",
    "EncodeTask",
    "ImageKind",
    "ImageSource",
    "JobCanceled",
    "JobCompleted",
    "JobFailed",
    "JobOutputs",
    "JobProgress",
    "JobQueued",
    "JobQueuedV1",
    "JobRetryRequested",
    "JobRetryScheduled",
    "JobStalled",
    "JobStarted",
    "JobTimedOut",
    "LecturePublished",
    "PlannedLecture",
    "ProgressStep",
    "PublishCourse",
    "PublishedVideo",
    "QueuedLecture",
    "Rendition",
    "TaskCompleted",
    "TaskMedia",
    "TaskQueued",
    "TaskSpec",
    "ThumbnailSaved",
    "VideoEncoded",
]


class ProgressStep(StrEnum):
    """What a running attempt is doing, as JobProgress reports it (like MediaConvert's phases)."""

    PROBING = "probing"
    TRANSCODING = "transcoding"
    THUMBNAILS = "thumbnails"
    UPLOADING = "uploading"


ImageKind = Literal["thumbnail", "poster"]
"""Which image of a video ThumbnailSaved reports."""
ImageSource = Literal["uploaded", "frame"]
"""Where the image came from: uploaded by the instructor, or taken from a video frame."""


class Rendition(msgspec.Struct, frozen=True, kw_only=True):
    """One rung of a video's HLS ladder."""

    name: str
    width: int
    height: int
    bandwidth: int
    codecs: str


class PublishedVideo(msgspec.Struct, frozen=True, kw_only=True):
    """One published video of a completed job, in manifest order."""

    video_index: int
    master_playlist_url: str
    renditions: tuple[Rendition, ...]
    duration_s: float
    thumbnail_url: str
    poster_url: str | None


TaskMedia = Literal["lecture", "video", "audio"]
"""What a task encodes: a whole lecture (up to the chunk length: its ladder with its audio, thumbnail
and poster, as one encode), or for a longer lecture one chunk of its video ladder, or its whole audio
(with its thumbnail and poster)."""


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One piece of a course's work (docs/fan-out.md): what an encoder needs to run it, and nothing else.

    A lecture up to the chunk length is one "lecture" task. A longer one is one "audio" task (which
    also takes the lecture's thumbnail and poster) and one "video" task per chunk; a chunk is
    [start_s, end_s) of the lecture's timeline, cut on a segment boundary.
    """

    task_id: UUID
    lecture_index: int
    media: TaskMedia
    chunk_index: int
    chunk_count: int
    start_s: float
    end_s: float
    source_key: str
    thumbnail_key: str | None = None


class PlannedLecture(msgspec.Struct, frozen=True, kw_only=True):
    """One lecture of a planned course: its title and its duration as the probe measured it."""

    index: int
    title: str
    duration_s: float


class JobOutputs(msgspec.Struct, frozen=True, kw_only=True):
    """What a completed job published: one entry per video."""

    videos: tuple[PublishedVideo, ...]


# --- commands (publish.commands) -------------------------------------------------------------------


class PublishCourse(Payload, frozen=True, kw_only=True):
    """Command to the encoder group: transcode and publish every staged video of the envelope's attempt."""

    message_type = MessageType.PUBLISH_COURSE
    version = 1

    owner: str
    course_name: str
    curriculum: str
    staging_prefix: str
    manifest_key: str
    video_count: int


class CancelJob(Payload, frozen=True, kw_only=True):
    """Command: stop a queued or running job."""

    message_type = MessageType.CANCEL_JOB
    version = 1

    requested_by: str
    reason: str | None = None


class EncodeTask(Payload, frozen=True, kw_only=True):
    """Command to the encoder group: run one task of a course (its envelope: the task's id and attempt,
    and the course in `course_job_id`)."""

    message_type = MessageType.ENCODE_TASK
    version = 1

    owner: str
    staging_prefix: str
    task: TaskSpec


# --- events (publish.job-events) -------------------------------------------------------------------


class QueuedLecture(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One lecture of a queued course: its video's place in the manifest, its title and original name."""

    index: int
    title: str
    filename: str | None = None


class JobQueuedV1(Payload, frozen=True, kw_only=True):
    """JobQueued as first published: no course id, no lecture titles (upcast to v2 by the codec)."""

    message_type = MessageType.JOB_QUEUED
    version = 1

    owner: str
    course_name: str
    curriculum: str
    staging_prefix: str
    manifest_key: str
    video_count: int


class JobQueued(Payload, frozen=True, kw_only=True):
    """A publish job was accepted and staged; it starts the job's history (attempt 1).

    `course_id` names the published course the job publishes: the job's own id for a new course, an
    existing course's id for a re-encode. `lectures` holds one title per video, in manifest order.
    """

    message_type = MessageType.JOB_QUEUED
    version = 2

    owner: str
    course_name: str
    curriculum: str
    staging_prefix: str
    manifest_key: str
    video_count: int
    course_id: UUID
    lectures: tuple[QueuedLecture, ...]

    def publish_command(self) -> PublishCourse:
        """The data of every attempt's PublishCourse: the job as it was queued."""
        return PublishCourse(
            owner=self.owner,
            course_name=self.course_name,
            curriculum=self.curriculum,
            staging_prefix=self.staging_prefix,
            manifest_key=self.manifest_key,
            video_count=self.video_count,
        )


class JobStarted(Payload, frozen=True, kw_only=True):
    """An encoder took the job's current attempt and began working on it."""

    message_type = MessageType.JOB_STARTED
    version = 1

    worker: str


class JobProgress(Payload, frozen=True, kw_only=True):
    """A running attempt reports progress; it is also the heartbeat that proves the worker is alive."""

    message_type = MessageType.JOB_PROGRESS
    version = 1

    percent: float
    step: ProgressStep
    video_index: int | None = None
    message: str | None = None


class VideoEncoded(Payload, frozen=True, kw_only=True):
    """One video of the job was transcoded to HLS and uploaded."""

    message_type = MessageType.VIDEO_ENCODED
    version = 1

    video_index: int
    master_playlist_url: str
    renditions: tuple[Rendition, ...]
    duration_s: float


class ThumbnailSaved(Payload, frozen=True, kw_only=True):
    """A thumbnail or poster image of one video was saved."""

    message_type = MessageType.THUMBNAIL_SAVED
    version = 1

    video_index: int
    kind: ImageKind
    source: ImageSource
    url: str


class JobCompleted(Payload, frozen=True, kw_only=True):
    """Every video of the attempt was published; the job is done (terminal)."""

    message_type = MessageType.JOB_COMPLETED
    version = 1

    outputs: JobOutputs


class JobFailed(Payload, frozen=True, kw_only=True):
    """The attempt failed and will not be retried automatically."""

    message_type = MessageType.JOB_FAILED
    version = 1

    error_type: str
    message: str
    retryable: bool


class JobRetryScheduled(Payload, frozen=True, kw_only=True):
    """The attempt hit a transient error; the job goes back to the queue as the next attempt."""

    message_type = MessageType.JOB_RETRY_SCHEDULED
    version = 1

    error_type: str
    message: str
    next_attempt: int
    delay_s: float


class JobRetryRequested(Payload, frozen=True, kw_only=True):
    """The owner asked to run a failed job again."""

    message_type = MessageType.JOB_RETRY_REQUESTED
    version = 1

    requested_by: str
    next_attempt: int


class JobStalled(Payload, frozen=True, kw_only=True):
    """The watchdog's verdict: the running attempt went silent and its worker is presumed dead."""

    message_type = MessageType.JOB_STALLED
    version = 1

    last_heartbeat_at: datetime | None
    stall_timeout_s: int
    will_retry: bool
    message: str


class JobTimedOut(Payload, frozen=True, kw_only=True):
    """The running attempt passed its hard time limit and was stopped."""

    message_type = MessageType.JOB_TIMED_OUT
    version = 1

    time_limit_s: int
    will_retry: bool
    message: str


class JobCanceled(Payload, frozen=True, kw_only=True):
    """The job was canceled (terminal)."""

    message_type = MessageType.JOB_CANCELED
    version = 1

    requested_by: str
    reason: str | None = None


class CoursePlanned(Payload, frozen=True, kw_only=True):
    """The course's attempt measured its lectures and cut them into tasks; the conductor runs them."""

    message_type = MessageType.COURSE_PLANNED
    version = 1

    lectures: tuple[PlannedLecture, ...]
    tasks: tuple[TaskSpec, ...]
    chunk_s: int
    segment_s: int


class TaskQueued(Payload, frozen=True, kw_only=True):
    """A task of a course was queued; it starts the task's own history (attempt 1), like JobQueued."""

    message_type = MessageType.TASK_QUEUED
    version = 1

    owner: str
    course_name: str
    curriculum: str
    staging_prefix: str
    task: TaskSpec

    def encode_command(self) -> EncodeTask:
        """The data of every attempt's EncodeTask: the task as it was queued."""
        return EncodeTask(owner=self.owner, staging_prefix=self.staging_prefix, task=self.task)


class TaskCompleted(Payload, frozen=True, kw_only=True):
    """A task's output is in object storage under `output_prefix`, ready to be stitched (terminal)."""

    message_type = MessageType.TASK_COMPLETED
    version = 1

    output_prefix: str
    renditions: tuple[Rendition, ...]
    duration_s: float
    # A "lecture" task's output is the published lecture itself: its master playlist.
    master_playlist_url: str | None = None
    thumbnail_url: str | None = None
    poster_url: str | None = None


class LecturePublished(Payload, frozen=True, kw_only=True):
    """Every task of one lecture completed and its playlists were stitched and published."""

    message_type = MessageType.LECTURE_PUBLISHED
    version = 1

    video: PublishedVideo


# --- events of the published course (publish.job-events, keyed by the course id) ----------------


class CourseUnpublished(Payload, frozen=True, kw_only=True):
    """The owner took a published course down: the catalogue drops it; its history stays on the log.

    Its envelope's `job_id` is the course id (the id of the job that first published it), so the
    event shares a partition with that job's events and follows its completion.
    """

    message_type = MessageType.COURSE_UNPUBLISHED
    version = 1

    course_id: UUID
    requested_by: str


PAYLOAD_CLASSES: Final[Mapping[tuple[str, int], type[Payload]]] = {
    (cls.message_type.value, cls.version): cls
    for cls in (
        PublishCourse,
        CancelJob,
        JobQueuedV1,
        JobQueued,
        JobStarted,
        JobProgress,
        VideoEncoded,
        ThumbnailSaved,
        JobCompleted,
        JobFailed,
        JobRetryScheduled,
        JobRetryRequested,
        JobStalled,
        JobTimedOut,
        JobCanceled,
        EncodeTask,
        CoursePlanned,
        TaskQueued,
        TaskCompleted,
        LecturePublished,
        CourseUnpublished,
    )
}
"""Every payload class by (type, version): the codec pairs each schema file with its class here."""


def _latest() -> dict[str, type[Payload]]:
    latest: dict[str, type[Payload]] = {}
    for (type_, version), cls in sorted(PAYLOAD_CLASSES.items()):
        if type_ not in latest or version > latest[type_].version:
            latest[type_] = cls
    return latest


LATEST_PAYLOADS: Final[Mapping[str, type[Payload]]] = _latest()
"""The class of the latest version of each type: the class every consumer receives for that type."""

# The version producers emit today. Consumers always receive this version: the codec upcasts older
# messages of the log to it, so a handler never branches on a version. A test checks it against schemas/.
LATEST_VERSION: Final[Mapping[str, int]] = {t: cls.version for t, cls in LATEST_PAYLOADS.items()}
