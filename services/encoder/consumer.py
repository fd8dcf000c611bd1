"""The encoder's consumer loop: thin. Poll, decode (poison → DLQ), decide by claim, hand off, commit.

How a long encode keeps its group membership (G2) and its offset discipline (G3):
- Two consumers, one per topic, each in a consumer group of its own: the commands topic in
  COURSECAST_ENCODER_GROUP_ID, the retry topic in `<that>.retry` (Settings.encoder_retry_group_id).
  cooperative-sticky evens out the number of partitions per member of a group, not per topic: in one
  group of both topics a second encoder could be given every retry partition and no commands one, so
  a course's EncodeTasks (keyed by task id over the commands topic) all ran on one encoder. Apart,
  each topic is spread over every encoder by itself. The main loop polls both; a partition's pause,
  seek, commit and resume go to the consumer of its topic.
- One job at a time per process. When a job starts, every assigned partition is paused and the job
  runs in a worker thread; this thread keeps calling poll(), which returns no records for paused
  partitions but keeps the member alive (max.poll.interval.ms counts time between polls, not job
  length) and serves rebalance callbacks. Partitions assigned mid-job are paused on arrival.
- The job's offset is committed synchronously only after the runner's final events are
  acknowledged; then the partitions resume. The staging folder is deleted later, and only once the
  projector shows the job ended as this encoder said (staging.py): a rejected end keeps the files.
- Every Postgres connection names its process and role (application_name), and is reopened after
  Postgres drops it; a dropped connection defers the delivery, it never stops the process.
- A delivery that must wait (a retry not yet due, or a job whose live claim is held elsewhere) is
  parked: its partition is paused and rewound to it, and resumed when due. Other partitions flow.
- SIGTERM mid-job abandons the attempt: ffmpeg is killed, the lease released, the offset left
  uncommitted, so the partition's next owner takes the job over at once (as the next attempt).
- A revoked in-flight job keeps running: its results are fenced by its claim (claims.py), so the
  partition's new owner waits for the claim to end and then skips the command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from psycopg.conninfo import make_conninfo

from services.core import bus, codec, faults
from services.core.jobs import JobStatus
from services.core.kafka_config import consumer_config, producer_config
from services.core.manifest import staging_prefix
from services.core.messages import Envelope, carries
from services.core.payloads import CancelJob, EncodeTask, JobCanceled, PublishCourse
from services.core.settings import Settings
from services.core.storage import s3_client
from services.encoder.attempt import JobRunner, Outcome
from services.encoder.cancel import CancelWatcher
from services.encoder.claims import ClaimStore, Verdict, decide
from services.encoder.publisher import NOT_BEFORE_HEADER, Publisher, WorkCommand
from services.encoder.staging import StagingJanitor

log = logging.getLogger("coursecast.encoder")

POLL_TIMEOUT_S = 0.2
# A parked delivery whose claim is held by a live worker is looked at again this often.
WAIT_RECHECK_S = 2.0

Partition = tuple[str, int]


@dataclass
class ActiveJob:
    """The job this process is running, and the delivery to commit when it ends."""

    runner: JobRunner
    thread: threading.Thread
    message: Partition
    offset: int
    staging_prefix: str


class Encoder:
    """One encoder process: a member of the encoder groups of the commands and the retry topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = f"encoder@{socket.gethostname()}:{os.getpid()}"
        # Topic → the consumer that reads it, in the group of that topic (see the module's docstring).
        self._consumers: dict[str, Consumer] = {
            settings.commands_topic: Consumer(
                consumer_config(settings, settings.encoder_group_id, "encoder")
            ),
            settings.commands_retry_topic: Consumer(
                consumer_config(settings, settings.encoder_retry_group_id, "encoder-retry")
            ),
        }
        self._producer = Producer(producer_config(settings, "encoder"))
        self._publisher = Publisher(self._producer, settings, self.worker)
        self._claim_store: ClaimStore | None = self._open_claims()
        self._s3 = s3_client(settings)
        self._watcher = CancelWatcher(settings)
        self._janitor = StagingJanitor(
            lambda: self._open_claims("staging"),
            self._s3,
            settings.s3_bucket,
            settings.staging_cleanup_wait_s,
            timedelta(days=settings.source_retention_days),
        )
        self._active: ActiveJob | None = None
        self._assigned: set[Partition] = set()
        self._parked: dict[Partition, float] = {}

    def _open_claims(self, role: str = "main") -> ClaimStore:
        """A claim connection of its own per thread; application_name names the process and the role
        (`coursecast-encoder-lease:1234`), so an operator or a fault test can find it in pg_stat_activity."""
        s = self.settings
        url = make_conninfo(s.database_url, application_name=f"coursecast-encoder-{role}:{os.getpid()}")
        return ClaimStore.open(url, s.database_schema, self.worker, s.encoder_lease_s)

    @property
    def _claims(self) -> ClaimStore:
        """The main thread's claim connection, reopened after Postgres dropped it."""
        if self._claim_store is None:
            self._claim_store = self._open_claims()
        return self._claim_store

    def _drop_claims(self) -> None:
        if self._claim_store is not None:
            with contextlib.suppress(Exception):
                self._claim_store.close()
        self._claim_store = None

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; a running job is finished first (SIGTERM drains)."""
        topics = list(self._consumers)
        for topic, consumer in self._consumers.items():
            consumer.subscribe(
                [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
        self._watcher.start()
        self._janitor.start()
        log.info("encoder started", extra={"worker": self.worker, "topics": topics})
        # Each consumer waits its share of one poll timeout: a command on either topic waits no longer
        # than with one consumer, and both keep their membership (G2: each one polls every round).
        poll_timeout_s = POLL_TIMEOUT_S / len(self._consumers)
        try:
            while not stop.is_set() or self._active is not None:
                for consumer in self._consumers.values():
                    if stop.is_set() and self._active is not None:
                        # SIGTERM mid-job: stop ffmpeg, release the lease, leave the offset
                        # uncommitted; the partition's next owner takes the job over as the next attempt.
                        self._active.runner.abandon()
                    message = consumer.poll(poll_timeout_s)
                    self._reap_finished_job()
                    self._resume_due()
                    if message is not None and not stop.is_set():
                        self._deliver(message)
        finally:
            self._janitor.close()
            self._watcher.close()
            for consumer in self._consumers.values():
                consumer.close()
            bus.flush_on_close(self._producer)
            self._drop_claims()

    def _deliver(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", error)
            return
        try:
            self._handle(message)
        except psycopg.OperationalError:
            # Postgres restarted or dropped the connection: nothing was decided, so the
            # delivery is read again shortly, on a new connection (G3: no offset moved).
            log.warning("claims database unreachable; delivery deferred", exc_info=True)
            self._drop_claims()
            self._park(message, WAIT_RECHECK_S)

    def _pause(self, partitions: Iterable[Partition]) -> None:
        """Pause partitions, each through the consumer of its topic."""
        for consumer, tps in self._by_consumer(partitions):
            consumer.pause(tps)

    def _resume(self, partitions: Iterable[Partition]) -> None:
        """Resume partitions, each through the consumer of its topic."""
        for consumer, tps in self._by_consumer(partitions):
            consumer.resume(tps)

    def _by_consumer(self, partitions: Iterable[Partition]) -> list[tuple[Consumer, list[TopicPartition]]]:
        by_topic: dict[str, list[TopicPartition]] = {}
        for topic, partition in sorted(set(partitions)):
            by_topic.setdefault(topic, []).append(TopicPartition(topic, partition))
        return [(self._consumers[topic], tps) for topic, tps in by_topic.items()]

    # --- rebalancing ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        if self._active is not None:
            consumer.pause(partitions)  # one job at a time: new partitions wait for it too
        else:
            # librdkafka keeps a partition's pause across a revoke and a later assignment: one that was
            # paused (a job ran, a delivery was parked) when it left would never flow again.
            consumer.resume(partitions)
        log.info("assigned", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._assigned -= revoked
        for key in revoked:
            self._parked.pop(key, None)
        if self._active is not None and self._active.message in revoked:
            log.warning(
                "the running job's partition was revoked; its result stays fenced by its claim",
                extra={"job_id": str(self._active.runner.job_id), "event": "running_partition_revoked"},
            )
        log.info("revoked", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    # --- one delivery --------------------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        if self._active is not None:
            # Paused partitions deliver nothing, but a record fetched before the pause must not start
            # a second job in this process: rewind it, it is read again after the running job.
            self._rewind(message.topic() or "", message.partition() or 0, message.offset() or 0)
            return
        try:
            envelope = codec.decode(message.value())
        except codec.CodecError as exc:
            # G6: poison goes aside with its reason; the commands behind it keep flowing.
            bus.dead_letter(self._producer, self.settings.commands_dlq_topic, message, exc)
            log.warning(
                "dead-lettered %s: %s",
                _where(message),
                exc.reason,
                extra={"event": "dead_lettered", "code": exc.code},
            )
            self._commit(message)
            return
        if carries(envelope, CancelJob):
            self._cancel_idle_job(envelope)
            self._commit(message)
            return
        if not (carries(envelope, PublishCourse) or carries(envelope, EncodeTask)):
            log.warning(
                "ignored %s on the commands topic", envelope.type, extra={"job_id": str(envelope.job_id)}
            )
            self._commit(message)
            return
        not_before = _not_before(message)
        if not_before is not None and not_before > time.time():
            self._park(message, not_before - time.time())
            return
        self._start_or_skip(message, envelope)

    def _start_or_skip(self, message: Message, envelope: Envelope[WorkCommand]) -> None:
        extra = {"job_id": str(envelope.job_id), "attempt": envelope.attempt, "delivery": _where(message)}
        claim = self._claims.claim(envelope.job_id)
        job = self._claims.job(envelope.job_id)
        decision = decide(envelope.attempt, claim, job, self.settings.max_attempts)
        if decision.verdict is Verdict.SKIP:
            # G1: a redelivered command for a running, completed, failed or canceled job.
            log.info("command skipped: %s", decision.reason, extra={**extra, "event": "command_skipped"})
            is_course = envelope.course_job_id is None
            if is_course and job is not None and job.status in (JobStatus.COMPLETED, JobStatus.CANCELED):
                # The encoder that ended it may have died before deleting staging: same rule here.
                self._janitor.after_end(
                    envelope.job_id, job.attempt, job.status, envelope.data.staging_prefix
                )
            self._commit(message)
            return
        if decision.verdict is Verdict.WAIT:
            log.info("command waits: %s", decision.reason, extra=extra)
            self._park(message, WAIT_RECHECK_S)
            return
        if not self._claims.acquire(envelope.job_id, decision, envelope.attempt, claim):
            log.info("claim won by another encoder; looking again shortly", extra=extra)
            self._park(message, WAIT_RECHECK_S)
            return
        log.info(
            "claimed: %s",
            decision.reason,
            extra={**extra, "event": "claimed", "run_attempt": decision.attempt},
        )
        runner = JobRunner(
            self.settings,
            envelope,
            decision,
            self._open_claims("job"),
            self._publisher,
            self._s3,
            self._watcher,
            open_claims=lambda: self._open_claims("job"),
        )
        topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
        # The watcher reads the commands partition behind this command: a CancelJob already queued
        # there, or produced during the encode, reaches the runner (cancel.py).
        self._watcher.watch(
            envelope.job_id,
            partition,
            offset if topic == self.settings.commands_topic else None,
            envelope.course_job_id,
        )
        self._pause(self._assigned)
        thread = threading.Thread(target=runner.run, name=f"job-{envelope.job_id}", daemon=True)
        self._active = ActiveJob(runner, thread, (topic, partition), offset, envelope.data.staging_prefix)
        thread.start()

    def _reap_finished_job(self) -> None:
        active = self._active
        if active is None or active.thread.is_alive():
            return
        self._active = None
        self._watcher.unwatch()
        result = active.runner.result
        topic, partition = active.message
        if result is not None and result.outcome is Outcome.ABANDONED:
            log.info("job abandoned for shutdown; offset left for the next owner")
        elif result is None or result.outcome is Outcome.UNPUBLISHED:
            # The final events were not acknowledged: leave the offset, re-read the command later;
            # the claim (still running, ours) makes that delivery wait for the lease, then take over.
            if self._rewind(topic, partition, active.offset):
                self._parked[active.message] = time.monotonic() + WAIT_RECHECK_S
        else:
            # G3: the offset moves only now, after the attempt's final events were acknowledged.
            self._commit_offset(topic, partition, active.offset + 1)
            faults.reach("encoder.after_commit")
            if result.delete_staging:
                # Deleted only once publish_jobs shows this end for this attempt (staging.py).
                ended_as = JobStatus.COMPLETED if result.outcome is Outcome.COMPLETED else JobStatus.CANCELED
                self._janitor.after_end(
                    active.runner.job_id, active.runner.attempt, ended_as, active.staging_prefix
                )
        self._resume(key for key in self._assigned if key not in self._parked)

    def _cancel_idle_job(self, envelope: Envelope[CancelJob]) -> None:
        """CancelJob read by the main consumer: ends a job no live encoder is running (queued, or
        processing under an expired lease). A running job's own encoder sees it through its watcher."""
        extra = {"job_id": str(envelope.job_id)}
        job = self._claims.job(envelope.job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
            log.info("cancel skipped: job is %s", job.status if job else "unknown", extra=extra)
            if envelope.course_job_id is None and job is not None and job.status == JobStatus.CANCELED:
                # A redelivered cancel (its first reader may have died before deleting staging).
                self._janitor.after_end(
                    envelope.job_id, job.attempt, job.status, staging_prefix(envelope.job_id)
                )
            return
        data = JobCanceled(requested_by=envelope.data.requested_by, reason=envelope.data.reason or None)
        # JobCanceled is acknowledged (acks=all) inside the claim's transaction, before it commits
        # the claim as done: a crash in between leaves the claim open and JobCanceled on the log,
        # never a claim done with no JobCanceled anywhere (which would leave the job queued forever).
        with self._claims.closing_queued(envelope.job_id, job.attempt, "canceled") as ours:
            if not ours:
                log.info("cancel left to the encoder running the job", extra=extra)
                return
            self._publisher.event(data, envelope.job_id, job.attempt, envelope.course_job_id)
            faults.reach("encoder.cancel_acked")
        log.info("queued job canceled", extra={**extra, "event": "job_canceled"})
        if envelope.course_job_id is not None:
            return  # a task's end is not its course's: the course's staging stays
        self._janitor.after_end(
            envelope.job_id, job.attempt, JobStatus.CANCELED, staging_prefix(envelope.job_id)
        )

    # --- offsets and parking -------------------------------------------------------------------

    def _park(self, message: Message, delay_s: float) -> None:
        key = (message.topic() or "", message.partition() or 0)
        if self._rewind(key[0], key[1], message.offset() or 0):
            self._parked[key] = time.monotonic() + delay_s

    def _rewind(self, topic: str, partition: int, offset: int) -> bool:
        """Pause a partition we own and seek it back to `offset`; False if it is no longer ours.

        A cooperative rebalance may revoke the partition while its job runs; librdkafka then refuses
        the seek (_STATE). Nothing is lost by not seeking: the offset was not committed, so the new
        owner reads the command again and its claim decides (G1, G3).
        """
        if (topic, partition) not in self._assigned:
            log.warning(
                "%s[%d] is no longer ours; its new owner re-reads it from @%d",
                topic,
                partition,
                offset,
                extra={"event": "rewind_skipped"},
            )
            return False
        tp = TopicPartition(topic, partition, offset)
        try:
            consumer = self._consumers[topic]
            consumer.pause([tp])
            consumer.seek(tp)
        except KafkaException as exc:
            log.warning("%s[%d] could not be rewound to @%d: %s", topic, partition, offset, exc)
            return False
        return True

    def _resume_due(self) -> None:
        if not self._parked or self._active is not None:
            return
        now = time.monotonic()
        due = [key for key, at in self._parked.items() if at <= now]
        for key in due:
            del self._parked[key]
        self._resume(key for key in due if key in self._assigned)

    def _commit(self, message: Message) -> None:
        self._commit_offset(message.topic() or "", message.partition() or 0, (message.offset() or 0) + 1)

    def _commit_offset(self, topic: str, partition: int, offset: int) -> None:
        try:
            self._consumers[topic].commit(
                offsets=[TopicPartition(topic, partition, offset)], asynchronous=False
            )
        except KafkaException as exc:
            # The partition moved to another member: it re-reads the command and the claim decides.
            log.warning("commit of %s[%d]@%d failed: %s", topic, partition, offset, exc)


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def _not_before(message: Message) -> float | None:
    headers = message.headers() or []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == NOT_BEFORE_HEADER and value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def run_encoder(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `coursecast encoder`."""
    Encoder(settings).run(stop)
