"""Kafka adapters shared by every service: produce records and await their acks; dead-letter bad input."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from services.core import codec
from services.core.kafka_config import DELIVERY_TIMEOUT_MS
from services.core.messages import Envelope
from services.core.metrics import DEAD_LETTERED

log = logging.getLogger("coursecast.bus")

# librdkafka's timeout scanner runs about once a second; this margin covers it and the report's trip
# back to this thread.
REPORT_MARGIN_S = 5.0
# How long a caller waits for acknowledgements. Longer than the producer's delivery.timeout.ms, so
# when it runs out librdkafka has already given every record its final delivery report (G3/G5).
FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + REPORT_MARGIN_S
# What a producer still holds when its process shuts down gets this long to be delivered.
CLOSE_FLUSH_S = 10.0


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to produce, already encoded."""

    topic: str
    value: bytes | None
    key: bytes | str | None
    headers: list[tuple[str, str | bytes | None]] | None = None
    # Milliseconds since the epoch; 0 lets the producer stamp the record with its own clock.
    timestamp: int = 0


class DeliveryFailedError(Exception):
    """The brokers did not acknowledge every message in time; the caller must not act as if they had."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where an acknowledged message landed."""

    topic: str
    partition: int
    offset: int


def publish(producer: Producer, topic: str, messages: Sequence[Envelope]) -> list[Delivered]:
    """Produce `messages` keyed by job id and block until all are acknowledged (acks=all).

    G3: callers commit offsets, delete staging files or answer HTTP only after this returns, so
    whatever they do next is backed by events the brokers have durably written.
    """
    records = [
        # Encoding validates against the schema: no service can put a malformed message on a topic.
        # Event time as the record time: `replay --as-of` finds where to stop in the broker's index.
        Record(topic, codec.encode(message), message.kafka_key(), timestamp=message.timestamp_ms())
        for message in messages
    ]
    return produce_and_wait(producer, records)


def produce_and_wait(producer: Producer, records: Sequence[Record]) -> list[Delivered]:
    """Produce `records` and block until every one has its delivery report; raise unless all were
    acknowledged (acks=all). The one place a service waits for its records to be durable (G3)."""
    delivered: list[Delivered] = []
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(f"{message.topic()}: {error.str()}")
            return
        delivered.append(Delivered(message.topic() or "", message.partition() or 0, message.offset() or 0))

    for record in records:
        producer.produce(
            record.topic,
            value=record.value,
            key=record.key,
            headers=record.headers,
            timestamp=record.timestamp,
            on_delivery=on_delivery,
        )
    await_reports(producer, lambda: len(delivered) + len(errors) >= len(records))
    if errors or len(delivered) != len(records):
        raise DeliveryFailedError("; ".join(errors) or "a record got no delivery report")
    return delivered


def await_reports(producer: Producer, reported: Callable[[], bool]) -> None:
    """Serve delivery reports until `reported()` says every record of the caller has its own.

    A record's report always comes within delivery.timeout.ms (kafka_config.DELIVERY_TIMEOUT_MS), so
    this returns within FLUSH_TIMEOUT_S; only if librdkafka broke that promise does it raise, and
    even then it has waited past the point where librdkafka would still send the record.
    """
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while not reported():
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeliveryFailedError(f"no delivery report within {FLUSH_TIMEOUT_S:.0f} s")
        producer.flush(min(left, 1.0))


def flush_on_close(producer: Producer, timeout_s: float = CLOSE_FLUSH_S) -> None:
    """Before a producer is dropped: give what it still holds up to `timeout_s`; log what is left.

    Nothing a caller waits for is left here (produce_and_wait returned only once acknowledged): only
    records nobody awaited, whose loss the log says aloud instead of hiding.
    """
    left = producer.flush(timeout_s)
    if left:
        log.warning("producer closed with %d records not delivered after %.0f s", left, timeout_s)


def dead_letter_headers(source: Message, error: codec.CodecError) -> list[tuple[str, str | bytes | None]]:
    """Headers that say why a message was dead-lettered and where it came from."""
    return [
        ("dlq.reason", error.reason.encode("utf-8")),
        ("dlq.code", error.code.encode("ascii")),
        ("dlq.source.topic", (source.topic() or "").encode("utf-8")),
        ("dlq.source.partition", str(source.partition()).encode("ascii")),
        ("dlq.source.offset", str(source.offset()).encode("ascii")),
    ]


def dead_letter(producer: Producer, dlq_topic: str, source: Message, error: codec.CodecError) -> None:
    """Copy an undecodable message, byte for byte, to its dead-letter topic and wait for the ack (G6)."""
    record = Record(dlq_topic, source.value(), source.key(), headers=dead_letter_headers(source, error))
    produce_and_wait(producer, [record])
    DEAD_LETTERED.labels(dlq_topic, error.code).inc()
