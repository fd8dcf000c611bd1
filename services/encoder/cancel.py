"""Watches for CancelJob of the job this process is running, while the main consumer cannot read it.

The main consumer pauses the running job's partition (one job at a time, offsets after side
effects), so a CancelJob queued behind the PublishCourse on that partition would only be read once
the job had ended. This watcher is a second consumer with a group of its own that never commits:
when a job starts it assigns itself that one commands partition from just after the job's command,
reads everything behind it, and remembers any CancelJob for the job — or, for a task, for its course
(docs/fan-out.md: canceling a course cancels its tasks). The runner asks it between
ffmpeg progress checks (every 0.2 s), so a cancel stops ffmpeg within about a second.
"""

from __future__ import annotations

import logging
import threading
import uuid
from uuid import UUID

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from services.core import codec
from services.core.kafka_config import reader_config
from services.core.messages import carries
from services.core.payloads import CancelJob
from services.core.settings import Settings
from services.encoder.errors import CanceledError

log = logging.getLogger("coursecast.encoder.cancel")

POLL_TIMEOUT_S = 0.2


class CancelWatcher:
    """A never-committing reader of one commands partition, collecting CancelJob for one job."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.commands_topic
        group = f"{settings.encoder_group_id}-cancel-{uuid.uuid4().hex[:12]}"
        # partition EOF tells the watcher it has read everything queued behind the job's command.
        self._consumer = Consumer(reader_config(settings, group, "encoder-cancel"))
        self._caught_up = threading.Event()
        self._lock = threading.Lock()
        self._wanted: tuple[UUID, TopicPartition | None] | None = None
        # The running task's course: its CancelJob stops the task too.
        self._course: UUID | None = None
        self._assigned: TopicPartition | None = None
        self._cancel: CanceledError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cancel-watcher", daemon=True)

    def start(self) -> None:
        """Start the watcher thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        self._thread.join(10)

    def watch(
        self, job_id: UUID, partition: int, after_offset: int | None, course_job_id: UUID | None = None
    ) -> None:
        """Look for a CancelJob of `job_id` (or of its course, `course_job_id`) on `partition`, from
        `after_offset + 1` (or from now)."""
        offset = OFFSET_END if after_offset is None else after_offset + 1
        with self._lock:
            self._wanted = (job_id, TopicPartition(self._topic, partition, offset))
            self._course = course_job_id
            self._cancel = None
            self._caught_up.clear()

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until the watcher has read its partition to the end (or `timeout_s` passed).

        The runner waits for this before JobStarted, so a CancelJob already queued behind the
        command ends the job before it starts.
        """
        return self._caught_up.wait(timeout_s)

    def unwatch(self) -> None:
        """Stop looking (the job ended)."""
        with self._lock:
            self._wanted = None
            self._cancel = None

    def canceled(self, job_id: UUID) -> CanceledError | None:
        """The cancel request seen for `job_id`, if any."""
        with self._lock:
            if self._wanted is not None and self._wanted[0] == job_id:
                return self._cancel
        return None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._follow_wanted()
                if self._assigned is None:
                    self._stop.wait(POLL_TIMEOUT_S)
                    continue
                message = self._consumer.poll(POLL_TIMEOUT_S)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        self._caught_up.set()
                    else:
                        log.warning("cancel watcher: %s", error)
                    continue
                try:
                    envelope = codec.decode(message.value())
                except codec.CodecError:
                    continue  # the main consumer dead-letters it
                if not carries(envelope, CancelJob):
                    continue
                with self._lock:
                    if self._wanted is not None and envelope.job_id in (self._wanted[0], self._course):
                        data = envelope.data
                        self._cancel = CanceledError(data.requested_by, data.reason)
                        log.info("cancel requested", extra={"job_id": str(envelope.job_id)})
        finally:
            self._consumer.close()

    def _follow_wanted(self) -> None:
        with self._lock:
            target = self._wanted[1] if self._wanted is not None else None
            if target is not None:
                self._wanted = (self._wanted[0], None) if self._wanted is not None else None
        if target is not None:
            self._consumer.assign([target])
            self._assigned = target
        elif self._wanted_is_none() and self._assigned is not None:
            self._consumer.unassign()
            self._assigned = None

    def _wanted_is_none(self) -> bool:
        with self._lock:
            return self._wanted is None
