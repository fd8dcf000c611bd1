"""Kafka adapters shared by every service: publish envelopes and await their acks; dead-letter bad input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from services.core import codec
from services.core.messages import Envelope

FLUSH_TIMEOUT_S = 30.0


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
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if errors or remaining or len(delivered) != len(messages):
        detail = (
            "; ".join(errors) or f"{remaining} message(s) still unacknowledged after {FLUSH_TIMEOUT_S:.0f} s"
        )
        raise DeliveryFailedError(detail)
    return delivered


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
    failures: list[Any] = []
    producer.produce(
        dlq_topic,
        value=source.value(),
        key=source.key(),
        headers=dead_letter_headers(source, error),
        on_delivery=lambda err, _msg: failures.append(err) if err is not None else None,
    )
    if producer.flush(FLUSH_TIMEOUT_S) or failures:
        raise DeliveryFailedError(f"dead letter to {dlq_topic} was not acknowledged: {failures}")
