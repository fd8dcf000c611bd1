"""Round-trip one event through the real broker: produce it with acks=all, read it back, commit."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from confluent_kafka import Consumer, Producer, TopicPartition

from services.core import bus, codec
from services.core.kafka_config import consumer_config, producer_config
from services.core.messages import Envelope, MessageType, new_message
from services.core.settings import Settings

READ_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """The event sent, the event read back, and where it sits on the log."""

    sent: Envelope
    received: Envelope
    delivered: bus.Delivered
    committed_offset: int


def roundtrip(settings: Settings, group_id: str = "coursecast-roundtrip") -> RoundTrip:
    """Publish a JobQueued for a new job and consume exactly that record back through a consumer group."""
    job_id = uuid4()
    sent = new_message(
        MessageType.JOB_QUEUED,
        job_id=job_id,
        attempt=1,
        producer="roundtrip",
        data={
            "owner": "demo",
            "course_name": "Round trip",
            "curriculum": "demo",
            "staging_prefix": f"staging/{job_id}/",
            "manifest_key": f"staging/{job_id}/manifest.json",
            "video_count": 1,
        },
    )
    producer = Producer(producer_config(settings, "roundtrip"))
    (delivered,) = bus.publish(producer, settings.events_topic, [sent])

    consumer = Consumer(consumer_config(settings, group_id, "roundtrip"))
    try:
        # Read the one record we wrote, at the offset the broker acknowledged.
        partition = TopicPartition(delivered.topic, delivered.partition, delivered.offset)
        consumer.assign([partition])
        message = consumer.poll(READ_TIMEOUT_S)
        if message is None:
            raise TimeoutError(f"no record at {delivered} within {READ_TIMEOUT_S:.0f} s")
        if message.error():
            raise RuntimeError(f"consume failed: {message.error()}")
        received = codec.decode(message.value())
        # G3: the offset is committed only after the record was decoded and checked.
        next_offset = TopicPartition(delivered.topic, delivered.partition, (message.offset() or 0) + 1)
        (committed,) = consumer.commit(offsets=[next_offset], asynchronous=False) or [next_offset]
    finally:
        consumer.close()
    return RoundTrip(sent, received, delivered, committed.offset)
