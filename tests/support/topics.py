"""Read what the watchdog (and any service) put on a topic."""

from __future__ import annotations

from uuid import UUID, uuid4

from confluent_kafka import Consumer, KafkaError, TopicPartition

from services.core import codec
from services.core.kafka_config import client_id
from services.core.messages import Envelope
from services.core.settings import Settings


def commands_of(settings: Settings, job_id: UUID) -> list[Envelope]:
    """Every committed message of `job_id` on the commands topic, in offset order."""
    return messages_of(settings, settings.commands_topic, job_id)


def messages_of(settings: Settings, topic: str, job_id: UUID) -> list[Envelope]:
    """Every committed message of `job_id` on `topic`, in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "client.id": client_id("test"),
            "group.id": f"test-reader-{uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: list[tuple[int, int, Envelope]] = []
        at_end: set[int] = set()
        while len(at_end) < len(partitions):
            message = consumer.poll(5)
            assert message is not None, "the commands topic did not answer"
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                continue
            envelope = codec.decode(message.value())
            if envelope.job_id == job_id:
                found.append((message.partition() or 0, message.offset() or 0, envelope))
        return [envelope for _, _, envelope in sorted(found, key=lambda f: (f[0], f[1]))]
    finally:
        consumer.close()
