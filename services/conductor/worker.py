"""The conductor's loop: read the events log, decide (rules.py), stitch, publish — exactly once per event.

A consumer group on the events topic, like the projector's; each member conducts the courses of its
partitions. Every batch is one Kafka transaction: the messages its events decided and the batch's
consumer offsets are committed together (send_offsets_to_transaction), so a crash either keeps both
or neither, and a read_committed reader never sees a decision whose event would be read again (G3).

The book (book.py) is the fold of everything before the committed offsets, rebuilt from the log when
partitions are assigned and after any failed batch (the book had already folded the failed batch's
events). It is never stored anywhere: the log is the state (G4).

Stitching and deleting a completed course's staging are the only side effects outside Kafka.
Stitching writes the same bytes to the same keys however often it runs, so a batch replayed after a
crash stitches again harmlessly. A stitch that cannot succeed (the tasks' outputs do not make a
whole lecture) fails the course with the reason, rather than being retried forever; an unreachable
S3 fails the batch, which is retried after a back-off.

Staging under fan-out (G4): the course's planning attempt ends 'planned' and leaves staging/<course>/
to the tasks, and no encoder publishes the course's end, so no encoder's janitor is handed a completed
course. The conductor is the process that ends it: when its book folds the course's JobCompleted back
from the log (the same fold as publish_jobs: an accepted completion, never a rejected one), the
course's staging is deleted at once if COURSECAST_SOURCE_RETENTION_DAYS is 0, and otherwise retained
for `coursecast staging sweep`. The delete happens inside the batch that read the completion, before
its offsets are committed: a crash before the delete replays the batch, which deletes (idempotent)
again. A failed course keeps its staging (the owner's retry plans again from it); a canceled course's
staging is deleted by the encoder that ended it, once publish_jobs shows the cancel
(services/encoder/staging.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.conductor import metrics
from services.conductor.book import Book
from services.conductor.rules import PRODUCER, Decision, Stitch, completes_course, decide, lecture_published
from services.conductor.stitcher import Stitcher
from services.core import bus, codec, faults
from services.core.kafka_config import consumer_config, reader_config, transactional_producer_config
from services.core.manifest import staging_prefix
from services.core.messages import Envelope, new_message
from services.core.payloads import JobFailed
from services.core.settings import Settings
from services.core.stitch import StitchError
from services.core.storage import delete_prefix, s3_client
from services.core.ts_continuity import TsError

log = logging.getLogger("coursecast.conductor")

BATCH_SIZE = 500
POLL_TIMEOUT_S = 0.5
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
TRANSACTION_TIMEOUT_S = 30.0


class Conductor:
    """One member of the conductor group; `run` until `stop` is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = f"{PRODUCER}@{socket.gethostname()}:{os.getpid()}"
        self.book = Book()
        config = consumer_config(settings, settings.conductor_group_id, "conductor")
        # The whole assignment at each rebalance (not incremental): the book is rebuilt for it.
        config["partition.assignment.strategy"] = "roundrobin"
        self._consumer = Consumer(config)
        # Unique per process; a zombie's batch is fenced by the group generation its offsets carry.
        self._producer = Producer(
            transactional_producer_config(settings, "conductor", f"coursecast-conductor-{self.name}")
        )
        self._s3 = s3_client(settings)
        self._stitcher = Stitcher(settings, self._s3)
        self._assigned: list[TopicPartition] = []
        self._rebuild = False

    def run(self, stop: threading.Event) -> None:
        self._producer.init_transactions(TRANSACTION_TIMEOUT_S)
        topic = self.settings.events_topic
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("conductor started", extra={"worker": self.name, "topics": [topic]})
        delay = RETRY_FIRST_S
        try:
            while not stop.is_set():
                if self._rebuild:
                    self._rebuild_book()
                messages = self._consumer.consume(BATCH_SIZE, POLL_TIMEOUT_S)
                if not messages or self._rebuild:
                    continue
                try:
                    self._conduct(messages)
                    delay = RETRY_FIRST_S
                except (KafkaException, bus.DeliveryFailedError, OSError, BotoCoreError, ClientError) as exc:
                    # Nothing of the batch is committed: read it again on a book rebuilt without it.
                    log.warning("batch not committed (%s); retrying in %.1f s", exc, delay, exc_info=True)
                    metrics.batch_retried()
                    self._abort()
                    self._rebuild = True
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
        finally:
            self._consumer.close()
            bus.flush_on_close(self._producer)

    # --- one batch -----------------------------------------------------------------------------

    def _conduct(self, messages: Sequence[Message]) -> None:
        self._producer.begin_transaction()
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", error)
                continue
            next_offsets[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1
            try:
                event = codec.decode(message.value())
            except codec.CodecError:
                continue  # G6: the projector dead-letters it; it decides nothing here
            change = self.book.observe(event)
            if change is None:
                continue
            if completes_course(change):
                self._after_course_completed(change.course.course_job_id, change.after.attempt)
            self._carry_out(decide(change, producer=self.name))
        faults.reach("conductor.before_commit")
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        self._producer.send_offsets_to_transaction(
            offsets, self._consumer.consumer_group_metadata(), TRANSACTION_TIMEOUT_S
        )
        self._producer.commit_transaction(TRANSACTION_TIMEOUT_S)
        faults.reach("conductor.after_commit")

    def _after_course_completed(self, course_job_id: UUID, attempt: int) -> None:
        """The log accepted the course's completion: its staging goes now, or after its retention."""
        extra = {"job_id": str(course_job_id), "attempt": attempt}
        retention_days = self.settings.source_retention_days
        if retention_days > 0:
            log.info(
                "sources retained for re-encodes; `coursecast staging sweep` deletes them once expired",
                extra={**extra, "event": "sources_retained", "retention_days": retention_days},
            )
            return
        deleted = delete_prefix(self._s3, self.settings.s3_bucket, staging_prefix(course_job_id))
        log.info("staging deleted", extra={**extra, "objects": deleted, "event": "staging_deleted"})

    def _carry_out(self, decision: Decision) -> None:
        for stitch in decision.stitch:
            self._produce(self._stitched(stitch))
        for message in decision.messages:
            self._produce(message)

    def _stitched(self, job: Stitch) -> Envelope:
        """LecturePublished for a stitched lecture, or the course's failure when it cannot be stitched."""
        try:
            video = self._stitcher.publish(job)
        except (StitchError, TsError) as exc:
            log.error(
                "lecture %d of course %s cannot be stitched: %s",
                job.lecture.index,
                job.course_job_id,
                exc,
                extra={"job_id": str(job.course_job_id), "event": "stitch_failed"},
            )
            metrics.stitched(ok=False)
            failed = JobFailed(
                error_type="stitch_failed",
                message=(
                    f'Lecture {job.lecture.index + 1} "{job.lecture.title}" could not be put together '
                    "from its encoded parts. Retry the course to encode it again."
                ),
                retryable=True,
            )
            return new_message(
                failed, job_id=job.course_job_id, attempt=job.course_attempt, producer=self.name
            )
        metrics.stitched(ok=True)
        log.info(
            "lecture %d of course %s stitched",
            job.lecture.index,
            job.course_job_id,
            extra={"job_id": str(job.course_job_id), "event": "lecture_stitched"},
        )
        return lecture_published(job, video, self.name)

    def _produce(self, message: Envelope) -> None:
        s = self.settings
        topic = s.commands_topic if message.is_command else s.events_topic
        self._producer.produce(
            topic, value=codec.encode(message), key=message.kafka_key(), timestamp=message.timestamp_ms()
        )
        self._producer.poll(0)

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("abort failed: %s", exc)

    # --- the book ----------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = list(partitions)
        self._rebuild = True
        log.info("assigned", extra={"partitions": [p.partition for p in partitions]})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = []
        self.book.forget_all()
        log.info("revoked", extra={"partitions": [p.partition for p in partitions]})

    def _rebuild_book(self) -> None:
        """Fold every event before the committed offsets of the assigned partitions into a new book,
        then resume consuming at those offsets."""
        self._rebuild = False
        self.book.forget_all()
        if not self._assigned:
            return
        committed = self._consumer.committed(self._assigned, timeout=TRANSACTION_TIMEOUT_S)
        ends = {tp.partition: max(tp.offset, 0) for tp in committed}
        folded = _fold_log(self.settings, self.book, ends)
        for tp in committed:
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        log.info("book rebuilt", extra={"events": folded, "courses": len(self.book.courses)})


def _fold_log(settings: Settings, book: Book, ends: dict[int, int]) -> int:
    """Fold events [0, ends[p]) of each partition into `book`; returns how many were read."""
    todo = {p: end for p, end in ends.items() if end > 0}
    if not todo:
        return 0
    reader = Consumer(reader_config(settings, f"{settings.conductor_group_id}-rebuild", "conductor-rebuild"))
    topic = settings.events_topic
    read = 0
    try:
        reader.assign([TopicPartition(topic, p, 0) for p in todo])
        while todo:
            for message in reader.consume(BATCH_SIZE, POLL_TIMEOUT_S):
                if message.error() is not None:
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                end = todo.get(partition)
                if end is None or offset >= end:
                    continue
                read += 1
                with contextlib.suppress(codec.CodecError):
                    book.observe(codec.decode(message.value()))
                if offset + 1 >= end:
                    del todo[partition]
            # A partition whose end lies behind aborted records or markers reaches it via its position.
            for tp in reader.position([TopicPartition(topic, p) for p in list(todo)]):
                if tp.offset >= todo.get(tp.partition, 0) > 0:
                    todo.pop(tp.partition, None)
    finally:
        reader.close()
    return read


def run_conductor(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `coursecast conductor`."""
    Conductor(settings).run(stop)
