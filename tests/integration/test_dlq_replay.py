"""`coursecast dlq replay` against the real Kafka: dead letters that now pass go back to their source
topic with their original key, once; ones that still fail (or claim a foreign source) stay."""

from __future__ import annotations

from uuid import uuid4

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from devtools.demo import coursecast
from services.core import codec
from services.core.kafka_config import producer_config, reader_config
from services.core.settings import Settings
from tests.support.messages import publish_course

pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2)]


def read_all(settings: Settings, topic: str) -> list[Message]:
    """Every record of `topic`, read to the end of each partition."""
    consumer = Consumer(reader_config(settings, f"read-{uuid4()}", "test"))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found: list[Message] = []
    open_partitions = set(partitions)
    try:
        while open_partitions:
            message = consumer.poll(10)
            assert message is not None, f"{topic} was not read to its end"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error.str()
                open_partitions.discard(message.partition() or 0)
            else:
                found.append(message)
    finally:
        consumer.close()
    return found


def dead_letter(producer: Producer, settings: Settings, value: bytes, key: str, source: str) -> None:
    headers: list[tuple[str, str | bytes | None]] = [
        ("dlq.reason", b"test"),
        ("dlq.code", b"schema_violation"),
        ("dlq.source.topic", source.encode()),
    ]
    producer.produce(settings.commands_dlq_topic, value=value, key=key, headers=headers)


def test_replay_reproduces_what_now_passes_with_its_key_once_and_skips_the_rest(own: Settings) -> None:
    fixed_job, foreign_job, later_job = uuid4(), uuid4(), uuid4()
    fixed = codec.encode(publish_course(fixed_job))
    producer = Producer(producer_config(own, "test"))
    dead_letter(producer, own, fixed, str(fixed_job), own.commands_topic)
    dead_letter(producer, own, b"{not json", "broken", own.commands_topic)
    dead_letter(producer, own, codec.encode(publish_course(foreign_job)), str(foreign_job), "somewhere.else")
    assert producer.flush(30) == 0

    first = coursecast(own, "dlq", "replay", "commands")
    assert "replayed 1 dead letter(s)" in first.stdout, first.stdout
    assert "still invalid (malformed)" in first.stdout
    assert "'somewhere.else'" in first.stdout

    [replayed] = read_all(own, own.commands_topic)
    assert replayed.key() == str(fixed_job).encode()
    assert replayed.value() == fixed
    # The original key (so it lands on its job's partition) and value, and where it was replayed from.
    headers = dict(replayed.headers() or [])
    replayed_from = headers["dlq.replayed-from"]
    assert isinstance(replayed_from, bytes)  # the first dead letter on its partition
    assert replayed_from.decode() in {f"{own.commands_dlq_topic}[{p}]@0" for p in range(own.topic_partitions)}
    # A second replay starts where the first stopped: nothing twice. A dry run produces nothing.
    dead_letter(producer, own, codec.encode(publish_course(later_job)), str(later_job), own.commands_topic)
    assert producer.flush(30) == 0
    dry = coursecast(own, "dlq", "replay", "commands", "--dry-run")
    assert "would replay 1 dead letter(s)" in dry.stdout, dry.stdout
    assert len(read_all(own, own.commands_topic)) == 1
    second = coursecast(own, "dlq", "replay", "commands")
    assert "replayed 1 dead letter(s)" in second.stdout, second.stdout
    keys = {m.key() or b"" for m in read_all(own, own.commands_topic)}
    assert keys == {str(fixed_job).encode(), str(later_job).encode()}
