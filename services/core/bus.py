"""Kafka adapters shared by every service: publish envelopes and await their acks; dead-letter bad input."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from services.core import codec
from services.core.kafka_config import DELIVERY_TIMEOUT_MS
from services.core.messages import Envelope

# librdkafka's timeout scanner runs about once a second; this margin covers it and the report's trip
# back to this thread.
REPORT_MARGIN_S = 5.0
# How long a caller waits for acknowledgements. Longer than the producer's delivery.timeout.ms, so
# when it runs out librdkafka has already given every record its final delivery report (G3/G5).
FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + REPORT_MARGIN_S


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
    delivered: list[Delivered] = []
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(f"{message.topic()}: {error.str()}")
            return
        delivered.append(Delivered(message.topic() or topic, message.partition() or 0, message.offset() or 0))

    for message in messages:
        # Encoding validates against the schema: no service can put a malformed message on a topic.
        producer.produce(
            topic,
            value=codec.encode(message),
            key=message.kafka_key(),
            # Event time as the record time: `replay --as-of` finds where to stop in the broker's index.
            timestamp=message.timestamp_ms(),
            on_delivery=on_delivery,
        )
    await_reports(producer, lambda: len(delivered) + len(errors) >= len(messages))
    if errors or len(delivered) != len(messages):
        raise DeliveryFailedError("; ".join(errors) or "a message got no delivery report")
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
    reports: list[KafkaError | None] = []
    producer.produce(
        dlq_topic,
        value=source.value(),
        key=source.key(),
        headers=dead_letter_headers(source, error),
        on_delivery=lambda err, _msg: reports.append(err),
    )
    await_reports(producer, lambda: bool(reports))
    if reports[0] is not None:
        raise DeliveryFailedError(f"dead letter to {dlq_topic} was not acknowledged: {reports[0]}")
