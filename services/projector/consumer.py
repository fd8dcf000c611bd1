"""The projector's consumer loop: poll a batch, dead-letter poison, apply in Postgres, then commit to Kafka.

Thin by design (decode, call the store, commit). The guarantees live in the order of the steps:
- Postgres commits the events *and* the next offsets together (store.apply_batch), setting aside
  any event Postgres refuses and riding out a lost connection, so neither stops the loop;
- only then is the Kafka offset committed — a crash in between re-reads records the store skips;
- on every assignment the consumer seeks to the offsets stored in Postgres, not to Kafka's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services.core import bus, codec, faults
from services.core.kafka_config import consumer_config, producer_config
from services.core.lifecycle import tune_gc_for_batches
from services.core.settings import Settings
from services.projector import metrics
from services.projector.pipeline import OrderedBatchWriter
from services.projector.store import BatchOutcome, EventCounts, JobStore, LogRecord

log = logging.getLogger("coursecast.projector")

POLL_TIMEOUT_S = 0.5


@dataclass
class ProjectorStats(EventCounts):
    """Running totals, for logs and tests."""

    batches: int = 0
    dead_lettered: int = 0


class Projector:
    """One projector process: a member of the projector group on the job-event log."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.stats = ProjectorStats()
        self._consumer = Consumer(consumer_config(settings, settings.projector_group_id, "projector"))
        self._dlq_producer = Producer(producer_config(settings, "projector-dlq"))
        self._writer = OrderedBatchWriter(store, self._committed)
        self._on_batch: Callable[[BatchOutcome], None] | None = None

    def run(self, stop: threading.Event, on_batch: Callable[[BatchOutcome], None] | None = None) -> None:
        """Consume until `stop` is set; each batch is applied, then its offsets are committed.

        Two batches are in flight at most: while Postgres applies batch N on the writer thread, this
        thread consumes and decodes batch N+1. Batch N's Kafka commit still waits for its Postgres
        commit, and batches are applied strictly in order.
        """
        tune_gc_for_batches()
        self._on_batch = on_batch
        self._consumer.subscribe([self.settings.events_topic], on_assign=self._on_assign)
        try:
            while not stop.is_set():
                messages = self._next_batch()
                batch = self._decode(messages) if messages else None
                if batch is not None:
                    self._writer.submit(*batch)
                else:
                    self._writer.finish()
        finally:
            self._writer.close()
            self._consumer.close()
            bus.flush_on_close(self._dlq_producer)

    def _next_batch(self) -> list[Message]:
        """Wait for one message, then take whatever else is already fetched, up to the batch size.

        Waiting only for the first keeps the event-to-API lag at milliseconds when traffic is light;
        taking the rest without waiting keeps batches large when it is heavy.
        """
        first = self._consumer.consume(1, POLL_TIMEOUT_S)
        if not first or self.settings.projector_batch_size == 1:
            return first
        return first + self._consumer.consume(self.settings.projector_batch_size - 1, 0)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # G3: Postgres holds the truth about what was applied; Kafka's committed offset may lag it.
        # The batch in flight is finished first, so the offsets read here include it.
        self._writer.finish()
        stored = self.store.stored_offsets(p.partition for p in partitions)
        positioned = [
            TopicPartition(p.topic, p.partition, stored.get(p.partition, OFFSET_BEGINNING))
            for p in partitions
        ]
        log.info("assigned %s", {p.partition: p.offset for p in positioned})
        consumer.incremental_assign(positioned)

    def _decode(self, messages: list[Message]) -> tuple[list[LogRecord], dict[int, int]] | None:
        """Decode a batch; poison goes to the DLQ. None when the batch held only consumer errors."""
        records: list[LogRecord] = []
        next_offsets: dict[int, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", error)
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            next_offsets[partition] = offset + 1
            try:
                envelope = codec.decode(message.value())
            except codec.CodecError as exc:
                # G6: poison is set aside with its reason; the events behind it keep flowing.
                bus.dead_letter(self._dlq_producer, self.settings.events_dlq_topic, message, exc)
                self.stats.dead_lettered += 1
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    message.topic(),
                    partition,
                    offset,
                    exc.reason,
                    extra={"event": "dead_lettered", "code": exc.code},
                )
                continue
            records.append(LogRecord(envelope, partition, offset))
        if not next_offsets:
            return None
        return records, next_offsets

    def _committed(self, outcome: BatchOutcome, next_offsets: dict[int, int]) -> None:
        """Postgres has committed a batch: now, and only now, commit its offsets to Kafka."""
        faults.reach("projector.after_db_commit")
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self.settings.events_topic, p, o) for p, o in next_offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # Harmless: Postgres already holds these offsets, and the next owner seeks to them.
            log.info("kafka commit skipped (%s); postgres offsets remain authoritative", exc)
        self.stats.batches += 1
        self.stats.count(outcome)
        metrics.count_batch(outcome)
        if self._on_batch is not None:
            self._on_batch(outcome)


def run_projector(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `coursecast projector`."""
    store = JobStore.open(
        settings.database_url,
        settings.database_schema,
        settings.events_topic,
        role="projector",
        reconnect_timeout_s=settings.projector_reconnect_timeout_s,
    )
    try:
        Projector(settings, store).run(stop)
    finally:
        store.close()
