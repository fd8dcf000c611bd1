"""The encoder's side of the log: its events and retry commands, each returned only once acknowledged.

G3: everything an attempt does next (mark its claim done, let the consumer commit the offset, delete
staging) is backed by records the brokers have durably written (acks=all). The messages that must
appear together — a dead attempt's JobStalled and the next attempt's PublishCourse — go in one Kafka
transaction, so a job is never requeued without the command that runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from confluent_kafka import Producer

from services.core import bus, codec
from services.core.messages import Envelope, Payload, new_message
from services.core.payloads import EncodeTask, JobStalled, PublishCourse
from services.core.settings import Settings
from services.core.transactions import AtomicPublisher

# A retry command is not run before this epoch time (seconds, as text); the consumer parks it until then.
NOT_BEFORE_HEADER = "coursecast.not_before"

# The commands that start an attempt: a course's (its planning, docs/fan-out.md) or a task's.
WorkCommand = PublishCourse | EncodeTask


class Publisher:
    """Thread-safe producer of this encoder's events and retry commands; every call waits for acks=all."""

    def __init__(self, producer: Producer, settings: Settings, name: str) -> None:
        self._producer = producer
        self._settings = settings
        self.name = name
        self._lock = threading.Lock()
        # A transactional id unique to this process (claims, not Kafka fencing, exclude zombies).
        self._atomic = AtomicPublisher(settings, "encoder", f"coursecast-encoder-{name}")

    def event(self, data: Payload, job_id: UUID, attempt: int, course_job_id: UUID | None = None) -> None:
        """Publish one event and wait for its acknowledgement (a task's names its course)."""
        message = new_message(
            data, job_id=job_id, attempt=attempt, producer=self.name, course_job_id=course_job_id
        )
        with self._lock:
            bus.publish(self._producer, self._settings.events_topic, [message])

    def together(self, batch: Sequence[tuple[str, Envelope]]) -> None:
        """Publish (topic, message) pairs in one Kafka transaction: all of them or none."""
        self._atomic.publish(batch)

    def retry_command(self, command: Envelope[WorkCommand], next_attempt: int, not_before: float) -> None:
        """Put the next attempt's command on the retry topic, due at `not_before` (epoch s)."""
        message = next_command(command, next_attempt, self.name)
        record = bus.Record(
            self._settings.commands_retry_topic,
            codec.encode(message),
            message.kafka_key(),
            headers=[(NOT_BEFORE_HEADER, f"{not_before:.3f}".encode("ascii"))],
        )
        with self._lock:
            bus.produce_and_wait(self._producer, [record])


@dataclass(frozen=True, slots=True)
class AttemptEvents:
    """The publisher bound to one attempt of one job: what its heartbeat and its work publish."""

    publisher: Publisher
    job_id: UUID
    attempt: int
    # The course a task's attempt belongs to; None for a course's own attempt.
    course_job_id: UUID | None = None

    def publish(self, data: Payload) -> None:
        """Publish one event of this attempt and wait for its acknowledgement."""
        self.publisher.event(data, self.job_id, self.attempt, self.course_job_id)

    @property
    def log_extra(self) -> dict[str, Any]:
        """What every log line about this attempt carries."""
        return {"job_id": str(self.job_id), "attempt": self.attempt}


def next_command(command: Envelope[WorkCommand], next_attempt: int, producer: str) -> Envelope[WorkCommand]:
    """The command that runs `command`'s job again, as attempt `next_attempt` (pure)."""
    return new_message(
        command.data,
        job_id=command.job_id,
        attempt=next_attempt,
        producer=producer,
        course_job_id=command.course_job_id,
    )


def stalled_event(
    settings: Settings,
    job_id: UUID,
    stalled: int,
    next_attempt: int | None,
    producer: str,
    course_job_id: UUID | None = None,
) -> Envelope[JobStalled]:
    """JobStalled for a dead worker's attempt `stalled`, saying whether the job runs again (pure)."""
    if next_attempt is not None:
        outcome = f" The job goes back to the queue as attempt {next_attempt}."
    else:
        outcome = f" It was attempt {stalled} of {settings.max_attempts}; retry the job to run it again."
    data = JobStalled(
        last_heartbeat_at=None,
        stall_timeout_s=settings.encoder_lease_s,
        will_retry=next_attempt is not None,
        message=(
            f"The encoder running attempt {stalled} stopped responding (its lease of "
            f"{settings.encoder_lease_s} s expired)." + outcome
        ),
    )
    return new_message(data, job_id=job_id, attempt=stalled, producer=producer, course_job_id=course_job_id)
