"""The message contract in Python: the envelope every command and event travels in, and the type names.

The payloads themselves, one class per type and version, are in services.core.payloads.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Final, Generic

import msgspec
from typing_extensions import TypeIs, TypeVar

from services.core.lanes import lane_key

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "Envelope",
    "MessageType",
    "Payload",
    "carries",
    "control_character",
    "job_key",
    "new_message",
    "printable",
]


class MessageType(StrEnum):
    """Every message type on the CourseCast topics: imperatives are commands, past tense are events."""

    # Commands (publish.commands)
    PUBLISH_COURSE = "PublishCourse"
    CANCEL_JOB = "CancelJob"
    ENCODE_TASK = "EncodeTask"
    # Events (publish.job-events)
    JOB_QUEUED = "JobQueued"
    JOB_STARTED = "JobStarted"
    JOB_PROGRESS = "JobProgress"
    VIDEO_ENCODED = "VideoEncoded"
    THUMBNAIL_SAVED = "ThumbnailSaved"
    JOB_COMPLETED = "JobCompleted"
    JOB_FAILED = "JobFailed"
    JOB_RETRY_SCHEDULED = "JobRetryScheduled"
    JOB_RETRY_REQUESTED = "JobRetryRequested"
    JOB_STALLED = "JobStalled"
    JOB_TIMED_OUT = "JobTimedOut"
    JOB_CANCELED = "JobCanceled"
    # The fan-out of a course into tasks (docs/fan-out.md)
    COURSE_PLANNED = "CoursePlanned"
    TASK_QUEUED = "TaskQueued"
    TASK_COMPLETED = "TaskCompleted"
    LECTURE_PUBLISHED = "LecturePublished"
    # Events of the published course (the catalogue), keyed by the course id, not a job's
    COURSE_UNPUBLISHED = "CourseUnpublished"


COMMAND_TYPES: Final[frozenset[str]] = frozenset(
    {MessageType.PUBLISH_COURSE, MessageType.CANCEL_JOB, MessageType.ENCODE_TASK}
)
EVENT_TYPES: Final[frozenset[str]] = frozenset(MessageType) - COMMAND_TYPES

# The one definition of what the contract (schemas' `pattern`s), the codec and the api refuse in a
# string: Unicode's control characters (Cc). Free text (`message`, `reason`) keeps tab, LF and CR.
CONTROL_IN_LINE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_IN_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first control character of `value` the contract forbids, as U+XXXX, or None (pure)."""
    found = (CONTROL_IN_TEXT if multiline else CONTROL_IN_LINE).search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def printable(text: str) -> str:
    """`text` fit for a free-text field: each control character the contract forbids becomes U+FFFD.

    For text a producer did not write itself (ffmpeg's stderr, an exception's message): the codec
    refuses a message holding a control character, so such text must pass through here first.
    """
    return CONTROL_IN_TEXT.sub("\ufffd", text)


def job_key(job_id: uuid.UUID) -> bytes:
    """The Kafka key of every message of a job: one job's messages share a partition and keep their order.

    The job id's text, then four bytes that put the job on the partition its lane names
    (services/core/lanes.py), so a course's tasks take the partitions in turn.
    """
    return lane_key(job_id)


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The `data` of one version of one message type: the base of the classes in services.core.payloads.

    Each subclass names its type and version (class variables) and mirrors the JSON Schema
    schemas/<type>.v<version>.json field for field; a unit test holds the two together. An optional
    field of the contract is absent rather than null, so its default (None) is left out of the JSON.
    """

    message_type: ClassVar[MessageType]
    version: ClassVar[int]


# A bare `Envelope` is an envelope of any payload (what `decode` returns); `Envelope[JobQueued]` is one
# whose payload is known, e.g. built by `new_message(JobQueued(...), ...)`.
P_co = TypeVar("P_co", bound=Payload, covariant=True, default=Payload)


@dataclass(frozen=True, slots=True)
class Envelope(Generic[P_co]):
    """One command or event about one attempt of one publish job; `data` is the typed payload.

    The type and version of the message are those of its payload's class, so they cannot disagree.
    """

    event_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    occurred_at: datetime
    producer: str
    data: P_co
    # Set on every message about a task (a piece of a course's work, docs/fan-out.md): the course job
    # it belongs to. A task's events are keyed by it, so a course's whole history, its tasks' included,
    # shares one partition and keeps its order; a task's commands are keyed by the task, so tasks
    # spread over the encoder group.
    course_job_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        # Every timestamp on the log is an instant in UTC, so ordering and replay never depend on a
        # producer's local clock settings.
        offset = self.occurred_at.utcoffset()
        if offset is None:
            raise ValueError(f"occurred_at must be timezone-aware, got {self.occurred_at!r}")
        if offset != timedelta(0) or self.occurred_at.tzinfo is not UTC:
            object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))

    def __hash__(self) -> int:
        # The event id alone identifies a message.
        return hash(self.event_id)

    @property
    def type(self) -> MessageType:
        """The message type, e.g. MessageType.JOB_QUEUED: that of the payload's class."""
        return self.data.message_type

    @property
    def version(self) -> int:
        """The version of the payload's schema: that of the payload's class."""
        return self.data.version

    @property
    def is_command(self) -> bool:
        """True for a command (an order to a service), false for an event (a fact that happened)."""
        return self.data.message_type in COMMAND_TYPES

    def timestamp_ms(self) -> int:
        """The Kafka record timestamp: when the event occurred, so the broker's time index is event time."""
        return int(self.occurred_at.timestamp() * 1000)

    def kafka_key(self) -> bytes:
        """The Kafka key of this message: its job, or for a task's event its course (see course_job_id)."""
        if self.course_job_id is not None and not self.is_command:
            return job_key(self.course_job_id)
        return job_key(self.job_id)


P = TypeVar("P", bound=Payload)


def carries(envelope: Envelope, payload: type[P]) -> TypeIs[Envelope[P]]:
    """Whether `envelope`'s data is a `payload`; narrows a decoded envelope for its handler."""
    return isinstance(envelope.data, payload)


def new_message(
    data: P,
    *,
    job_id: uuid.UUID,
    attempt: int,
    producer: str,
    occurred_at: datetime | None = None,
    course_job_id: uuid.UUID | None = None,
) -> Envelope[P]:
    """A new message carrying `data`, with a fresh event id, stamped now (UTC).

    Its type and version are those of `data`'s class: `new_message(JobStarted(worker=...), ...)`.
    """
    return Envelope(
        event_id=uuid.uuid4(),
        job_id=job_id,
        attempt=attempt,
        occurred_at=datetime.now(UTC) if occurred_at is None else occurred_at,
        producer=producer,
        data=data,
        course_job_id=course_job_id,
    )
