"""Round-trip one event through the real broker: produce it with acks=all, read it back, commit, verify.

It uses a topic of its own, created and deleted around the trip, so a health check never leaves a
job-shaped event on the real log.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from services.core import bus, codec
from services.core.kafka_config import admin_config, consumer_config, producer_config
from services.core.manifest import manifest_key, staging_prefix
from services.core.messages import Envelope, new_message
from services.core.payloads import JobQueued, QueuedLecture
from services.core.settings import Settings

TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """The event sent, the event read back, where it sat, and the offset the group has committed."""

    sent: Envelope
    received: Envelope
    delivered: bus.Delivered
    committed_offset: int


def roundtrip(settings: Settings, group_id: str = "coursecast-roundtrip") -> RoundTrip:
    """Publish a schema-checked JobQueued and consume exactly that record back through a consumer group."""
    topic = f"coursecast.roundtrip.{uuid4().hex[:12]}"
    admin = AdminClient(admin_config(settings))
    created = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=settings.topic_replication_factor)]
    )
    created[topic].result(timeout=TIMEOUT_S)
    try:
        return _trip(settings, topic, group_id)
    finally:
        admin.delete_topics([topic])[topic].result(timeout=TIMEOUT_S)


def _trip(settings: Settings, topic: str, group_id: str) -> RoundTrip:
    job_id = uuid4()
    sent = new_message(
        JobQueued(
            owner="roundtrip",
            course_name="Round trip",
            curriculum="HEALTH-1",
            staging_prefix=staging_prefix(job_id),
            manifest_key=manifest_key(job_id),
            video_count=1,
            course_id=job_id,
            lectures=(QueuedLecture(index=0, title="Round trip"),),
        ),
        job_id=job_id,
        attempt=1,
        producer="roundtrip",
    )
    (delivered,) = bus.publish(Producer(producer_config(settings, "roundtrip")), topic, [sent])

    consumer = Consumer(consumer_config(settings, group_id, "roundtrip"))
    try:
        consumer.assign([TopicPartition(topic, delivered.partition, delivered.offset)])
        message = consumer.poll(TIMEOUT_S)
        if message is None:
            raise TimeoutError(f"no record at {delivered} within {TIMEOUT_S:.0f} s")
        if message.error():
            raise RuntimeError(f"consume failed: {message.error()}")
        received = codec.decode(message.value())
        # G3: the offset is committed only after the record was decoded and checked...
        next_offset = TopicPartition(topic, delivered.partition, (message.offset() or 0) + 1)
        consumer.commit(offsets=[next_offset], asynchronous=False)
        # ...and read back from the group coordinator, not taken on trust.
        (committed,) = consumer.committed([TopicPartition(topic, delivered.partition)], timeout=TIMEOUT_S)
    finally:
        consumer.close()
    return RoundTrip(sent, received, delivered, committed.offset)
