"""Invariants the encoder fault tests check after a job ends: nothing stuck, nothing duplicated."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, TopicPartition

from services.core.kafka_config import consumer_config
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.observe import job_events
from tests.support.services import wait_until

# Events an attempt publishes at most once, whatever is redelivered, killed or rebalanced (G1).
# A course's plan and a task's queueing and completion too (docs/fan-out.md).
ONCE_PER_ATTEMPT = (
    "JobStarted",
    "VideoEncoded",
    "JobCompleted",
    "JobStalled",
    "JobRetryScheduled",
    "CoursePlanned",
    "TaskQueued",
    "TaskCompleted",
)


def commands_drained(settings: Settings) -> bool:
    """Whether the encoder groups have committed every command and retry command ever produced:
    the commands group on the commands topic, the retry group on the retry topic.

    Commands produced in a Kafka transaction (a takeover's or a verdict's next attempt) are followed
    by a commit marker that takes an offset of its own but is never delivered, so an offset below
    the high watermark counts as drained when nothing but such markers lies beyond it.
    """
    committed: dict[tuple[str, int], int] = {}
    for group, topic in (
        (settings.encoder_group_id, settings.commands_topic),
        (settings.encoder_retry_group_id, settings.commands_retry_topic),
    ):
        reader = Consumer(consumer_config(settings, group, "test-probe"))
        try:
            asked = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            committed |= {(tp.topic, tp.partition): tp.offset for tp in reader.committed(asked, timeout=10)}
        finally:
            reader.close()
    # The probe only reads (assign, no commits), in a group of its own.
    probe = Consumer(
        {
            **consumer_config(settings, f"{settings.encoder_group_id}-probe", "test-probe"),
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = [TopicPartition(topic, p) for topic, p in sorted(committed)]
        behind = []
        for tp in partitions:
            _, high = probe.get_watermark_offsets(tp, timeout=10)
            offset = committed[(tp.topic, tp.partition)]
            if high > 0 and offset < high:
                behind.append(TopicPartition(tp.topic, tp.partition, max(offset, 0)))
        return not behind or not _messages_beyond(probe, behind)
    finally:
        probe.close()


def _messages_beyond(probe: Consumer, positions: list[TopicPartition]) -> bool:
    """Whether any committed message (not a transaction marker) lies at or after `positions`."""
    probe.assign(positions)
    at_end: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 10
    while len(at_end) < len(positions) and time.monotonic() < deadline:
        message = probe.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is None:
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            at_end.add((message.topic() or "", message.partition() or 0))
    return len(at_end) < len(positions)  # no answer in time counts as "not drained yet"


def wait_drained(settings: Settings, timeout_s: float, processes: list[subprocess.Popen[bytes]]) -> None:
    """Block until every command is consumed and committed by the encoder group."""
    what = "every command consumed and committed (one left unconsumed: something is stuck)"
    wait_until(what, lambda: commands_drained(settings), timeout_s, processes, interval_s=0.5)


def completed_at_iff_completed(settings: Settings) -> int:
    """How many rows break G4's `completed_at` rule (must be 0)."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        row = store.connection.execute(
            "SELECT count(*) FROM publish_jobs WHERE (status = 'completed') <> (completed_at IS NOT NULL)"
        ).fetchone()
    finally:
        store.close()
    return int(row[0]) if row else -1


def assert_nothing_duplicated(
    settings: Settings, job_id: UUID, completing_attempt: int, completion: str = "JobCompleted"
) -> None:
    """One `completion` in the log (a task's: TaskCompleted), accepted, of `completing_attempt`; no
    once-per-attempt event twice."""
    events = job_events(settings, job_id)
    every = Counter((t, a) for t, a, _ in events)
    assert [(t, a) for t, a, rejection in events if t == completion and rejection is None] == [
        (completion, completing_attempt)
    ]
    assert sum(n for (t, _), n in every.items() if t == completion) == 1
    for (type_, attempt), n in every.items():
        if type_ in ONCE_PER_ATTEMPT:
            assert n == 1, f"{type_} of attempt {attempt} appears {n} times"
    assert completed_at_iff_completed(settings) == 0
