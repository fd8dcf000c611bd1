"""The real broker: topics as the project creates them, a round trip with a committed offset, dead letters."""

from __future__ import annotations

from uuid import uuid4

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from devtools.roundtrip import roundtrip
from services.core import bus, codec
from services.core.kafka_config import admin_config, consumer_config
from services.core.settings import Settings
from services.core.topics import ensure_topics, topic_specs


def test_event_round_trips_through_the_broker_and_its_offset_is_committed(settings: Settings) -> None:
    result = roundtrip(settings, group_id=f"test-roundtrip-{uuid4()}")
    assert result.received == result.sent
    assert result.committed_offset == result.delivered.offset + 1
    assert result.delivered.topic.startswith("coursecast.roundtrip.")
    remaining = AdminClient(admin_config(settings)).list_topics(timeout=10).topics
    assert result.delivered.topic not in remaining, "the round trip left its topic behind"


def test_project_topics_exist_with_the_event_log_retained_forever(settings: Settings) -> None:
    assert ensure_topics(settings) == []  # the stack already created them; a second call is a no-op
    admin = AdminClient(admin_config(settings))
    metadata = admin.list_topics(timeout=10).topics
    for spec in topic_specs(settings):
        assert len(metadata[spec.name].partitions) == settings.topic_partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.events_topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["retention.ms"].value == "-1"
    assert config["retention.bytes"].value == "-1"


# Topics of this test's own, so poison never lands on the real log.
pytestmark = pytest.mark.own(partitions=1)


@pytest.mark.parametrize("poison", [b"", b"not json", b'{"type": "JobQueued"}'])
def test_undecodable_message_is_dead_lettered_with_its_reason(
    own: Settings, producer: Producer, poison: bytes
) -> None:
    settings = own
    topic = settings.events_topic
    key = str(uuid4()).encode()
    (source,) = _produce_raw(producer, topic, key, poison)

    consumer = Consumer(consumer_config(settings, f"test-dlq-{uuid4()}", "test"))
    try:
        consumer.assign([TopicPartition(topic, source.partition() or 0, source.offset() or 0)])
        message = consumer.poll(15)
        assert message is not None
        assert message.error() is None
        with pytest.raises(codec.CodecError) as caught:
            codec.decode(message.value())
        bus.dead_letter(producer, settings.events_dlq_topic, message, caught.value)
    finally:
        consumer.close()

    dlq = Consumer(consumer_config(settings, f"test-dlq-read-{uuid4()}", "test"))
    try:
        dlq.subscribe([settings.events_dlq_topic])
        found = None
        for _ in range(60):
            record = dlq.poll(1)
            if record is not None and record.error() is None and record.key() == key:
                found = record
                break
    finally:
        dlq.close()
    assert found is not None, "the poison message never reached the dead-letter topic"
    headers = dict(found.headers() or [])
    assert headers["dlq.reason"] == caught.value.reason.encode()
    assert headers["dlq.code"] == caught.value.code.encode()
    assert headers["dlq.source.offset"] == str(source.offset()).encode()
    assert (found.value() or b"") == poison


def _produce_raw(producer: Producer, topic: str, key: bytes, value: bytes) -> list[Message]:
    acked: list[Message] = []
    producer.produce(
        topic, key=key, value=value, on_delivery=lambda err, msg: acked.append(msg) if not err else None
    )
    producer.flush(10)
    assert len(acked) == 1
    return acked
