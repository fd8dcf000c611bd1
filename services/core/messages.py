"""The message contract in Python: the envelope every command and event travels in, and the type names."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "LATEST_VERSION",
    "Envelope",
    "MessageType",
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


COMMAND_TYPES: Final[frozenset[str]] = frozenset({MessageType.PUBLISH_COURSE, MessageType.CANCEL_JOB})
EVENT_TYPES: Final[frozenset[str]] = frozenset(MessageType) - COMMAND_TYPES

# The version producers emit today. Consumers always receive this version: the codec upcasts older
# messages of the log to it, so a handler never branches on a version. A test checks it against schemas/.
LATEST_VERSION: Final[Mapping[str, int]] = {t.value: 1 for t in MessageType}


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
    """The Kafka key of every message of a job: one job's messages share a partition and keep their order."""
    return str(job_id).encode("ascii")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One command or event about one attempt of one publish job; `data` is the type-specific payload."""

    event_id: uuid.UUID
    type: str
    version: int
    job_id: uuid.UUID
    attempt: int
    occurred_at: datetime
    producer: str
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        # Every timestamp on the log is an instant in UTC, so ordering and replay never depend on a
        # producer's local clock settings.
        offset = self.occurred_at.utcoffset()
        if offset is None:
            raise ValueError(f"occurred_at must be timezone-aware, got {self.occurred_at!r}")
        if offset != timedelta(0) or self.occurred_at.tzinfo is not UTC:
            object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))

    def __hash__(self) -> int:
        # `data` is a mapping and cannot be hashed; the event id alone identifies a message.
        return hash(self.event_id)

    @property
    def is_command(self) -> bool:
        """True for a command (an order to a service), false for an event (a fact that happened)."""
        return self.type in COMMAND_TYPES

    def timestamp_ms(self) -> int:
        """The Kafka record timestamp: when the event occurred, so the broker's time index is event time."""
        return int(self.occurred_at.timestamp() * 1000)

    def kafka_key(self) -> bytes:
        """The Kafka key of this message: its job id, so the job's messages keep their order."""
        return job_key(self.job_id)


def new_message(
    type: str,
    *,
    job_id: uuid.UUID,
    attempt: int,
    data: Mapping[str, Any],
    producer: str,
    occurred_at: datetime | None = None,
    version: int | None = None,
) -> Envelope:
    """A new message with a fresh event id, stamped now (UTC) at the latest version of its type."""
    if version is None:
        try:
            version = LATEST_VERSION[type]
        except KeyError:
            raise ValueError(f"unknown message type {type!r}") from None
    return Envelope(
        event_id=uuid.uuid4(),
        type=str(type),
        version=version,
        job_id=job_id,
        attempt=attempt,
        occurred_at=datetime.now(UTC) if occurred_at is None else occurred_at,
        producer=producer,
        data=data,
    )
