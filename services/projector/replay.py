"""Replay for analysts: rebuild the status table from the log, compare it with the live one, or see the past.

A replay reads `publish.job-events` from offset 0 into a schema of its own through the very same
`JobStore.apply_batch` the live projector uses, so "the table is a pure function of the log" (G4) is
checked by running it, not by trusting it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition
from psycopg import sql

from services.core import codec
from services.core.kafka_config import reader_config
from services.core.lifecycle import tune_gc_for_batches
from services.core.settings import Settings
from services.projector.catalogue import CATALOGUE_TABLES
from services.projector.pipeline import OrderedBatchWriter
from services.projector.store import JOB_COLUMNS, BatchOutcome, JobStore, LogRecord

# bus.publish stamps each record with its event time, and events reach the log in about that order.
# The broker's time index is searched this much past the as-of time, so an event appended up to this
# late (a producer retrying through a broker outage) is still read; events after the as-of time are
# then filtered out by their own occurred_at.
AS_OF_CLOCK_MARGIN = timedelta(minutes=5)
WATERMARK_TIMEOUT_S = 10.0

Progress = Callable[[int, int], None]
"""Called with (events read so far, events to read in all)."""


@dataclass
class ReplayResult:
    """What a replay read and where it stopped."""

    schema: str
    events: int = 0
    dead: int = 0
    refused: int = 0
    seconds: float = 0.0
    end_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        """Replay throughput."""
        return self.events / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Difference:
    """A publish_jobs row present in one schema and absent (or different) in the other."""

    side: str
    row: tuple[object, ...]


# Indexes only readers need (the migration defines them): a replay builds them once at the end
# instead of updating them on every batch. Keys and constraints stay: they guard the load itself.
READER_INDEXES = ("job_events_by_job", "job_events_by_time")


def fresh_schema(database_url: str, schema: str, topic: str) -> JobStore:
    """A new, empty, migrated schema (any previous one of that name is dropped)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return JobStore.open(database_url, schema, topic, role="replay")


def live_offsets(settings: Settings) -> dict[int, int]:
    """The offsets the live projector has applied up to, per partition."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        return store.stored_offsets()
    finally:
        store.close()


def replay(
    settings: Settings,
    schema: str,
    end_offsets: Mapping[int, int] | None = None,
    *,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Read the log from offset 0 to `end_offsets` (default: its end now) into a fresh `schema`.

    With `until`, events that occurred after it are left out, giving the table as it stood then.
    """
    topic = settings.events_topic
    consumer = Consumer(reader_config(settings, f"coursecast-replay-{uuid4()}", "replay"))
    store = fresh_schema(settings.database_url, schema, topic)
    deferred = [
        row[0]
        for row in store.connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = ANY(%s)",
            (schema, list(READER_INDEXES)),
        )
    ]
    for index in READER_INDEXES:
        store.connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
    tune_gc_for_batches()
    result = ReplayResult(schema)
    started = time.perf_counter()
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=WATERMARK_TIMEOUT_S).topics[topic].partitions)
        ends = dict(end_offsets) if end_offsets is not None else _high_watermarks(consumer, topic, partitions)
        if until is not None:
            ends = _offsets_at(consumer, topic, ends, until + AS_OF_CLOCK_MARGIN)
        result.end_offsets = ends
        total = sum(ends.values())
        pending = {p for p in partitions if ends.get(p, 0) > 0}
        done: dict[int, int] = {}

        def committed(outcome: BatchOutcome, next_offsets: dict[int, int]) -> None:
            done.update(next_offsets)
            result.refused += outcome.refused  # Postgres refuses them again, as it did live
            if progress is not None:
                progress(sum(done.values()), total)

        writer = OrderedBatchWriter(store, committed)
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        while pending:
            records: list[LogRecord] = []
            next_offsets: dict[int, int] = {}
            for message in consumer.consume(settings.projector_batch_size, 1.0):
                partition, offset = message.partition() or 0, message.offset() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                    continue
                if partition not in pending or offset >= ends[partition]:
                    pending.discard(partition)
                    continue
                next_offsets[partition] = offset + 1
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
                try:
                    envelope = codec.decode(message.value())
                except codec.CodecError:
                    result.dead += 1  # the live projector dead-lettered it too
                    continue
                if until is not None and envelope.occurred_at > until:
                    continue
                records.append(LogRecord(envelope, partition, offset))
            if next_offsets:
                writer.submit(records, next_offsets)
                result.events += len(records)
        writer.close()
        for definition in deferred:
            store.connection.execute(definition.encode())
    finally:
        consumer.close()
        store.close()
    result.seconds = time.perf_counter() - started
    return result


def _high_watermarks(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WATERMARK_TIMEOUT_S)[1]
        for p in partitions
    }


def _offsets_at(consumer: Consumer, topic: str, ends: Mapping[int, int], at: datetime) -> dict[int, int]:
    """Per partition, the first offset whose broker timestamp is after `at` (capped at `ends`)."""
    millis = int(at.timestamp() * 1000)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, millis) for p in ends], timeout=WATERMARK_TIMEOUT_S
    )
    # -1 means no record is that late: read the partition to its end.
    return {
        tp.partition: ends[tp.partition] if tp.offset < 0 else min(tp.offset, ends[tp.partition])
        for tp in found
    }


def compare(database_url: str, live_schema: str, replay_schema: str) -> list[Difference]:
    """Rows of publish_jobs, rejected_events, refused_events and the catalogue's tables that differ
    between the two schemas (empty when they are identical)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, JOB_COLUMNS))
    differences: list[Difference] = []
    with psycopg.connect(database_url) as conn:
        for side, left, right in (
            ("live only", live_schema, replay_schema),
            ("replay only", replay_schema, live_schema),
        ):
            query = sql.SQL(
                "SELECT {c} FROM {l}.publish_jobs EXCEPT SELECT {c} FROM {r}.publish_jobs"
            ).format(c=columns, l=sql.Identifier(left), r=sql.Identifier(right))
            differences.extend(Difference(side, row) for row in conn.execute(query))
        for side, left, right in (
            ("live only", live_schema, replay_schema),
            ("replay only", replay_schema, live_schema),
        ):
            query = sql.SQL(
                "SELECT event_id, rejection, reason FROM {l}.rejected_events"
                " EXCEPT SELECT event_id, rejection, reason FROM {r}.rejected_events"
            ).format(l=sql.Identifier(left), r=sql.Identifier(right))
            differences.extend(Difference(f"{side} (rejected_events)", row) for row in conn.execute(query))
            query = sql.SQL(
                "SELECT {c} FROM {l}.refused_events EXCEPT SELECT {c} FROM {r}.refused_events"
            ).format(
                c=sql.SQL("kafka_partition, kafka_offset, event_id, sqlstate, reason"),
                l=sql.Identifier(left),
                r=sql.Identifier(right),
            )
            differences.extend(Difference(f"{side} (refused_events)", row) for row in conn.execute(query))
            # The catalogue of published courses is a function of the same log (catalogue.py).
            for table, table_columns in CATALOGUE_TABLES.items():
                query = sql.SQL("SELECT {c} FROM {l}.{t} EXCEPT SELECT {c} FROM {r}.{t}").format(
                    c=sql.SQL(", ").join(map(sql.Identifier, table_columns)),
                    t=sql.Identifier(table),
                    l=sql.Identifier(left),
                    r=sql.Identifier(right),
                )
                differences.extend(Difference(f"{side} ({table})", row) for row in conn.execute(query))
    return differences


def drop_schema(database_url: str, schema: str) -> None:
    """Remove a replay schema."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
