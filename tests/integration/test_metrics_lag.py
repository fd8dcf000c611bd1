"""The consumer-lag series against the real Kafka: committed offsets against each partition's end."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from services.core import metrics
from services.core.kafka_config import consumer_config, producer_config, transactional_producer_config
from services.core.settings import Settings
from tests.support.metrics import samples


def commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` (partition → next offset) for `group`, as a member would."""
    consumer = Consumer(consumer_config(settings, group, "test"))
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def test_lag_is_the_records_past_the_committed_offset_per_partition(own: Settings) -> None:
    topic, group = own.commands_topic, own.encoder_group_id
    producer = Producer(producer_config(own, "test"))
    for n in range(5):
        producer.produce(topic, value=b"{}", key=f"k{n}", partition=0)
    producer.produce(topic, value=b"{}", key="other", partition=1)
    assert producer.flush(30) == 0
    collector = metrics.ConsumerLagCollector(own, group, [topic, own.commands_retry_topic])

    # Nothing committed yet: the group would read every partition from the start.
    assert collector.lag() == {
        **{(topic, p): 0 for p in range(own.topic_partitions)},
        **{(own.commands_retry_topic, p): 0 for p in range(own.topic_partitions)},
        (topic, 0): 5,
        (topic, 1): 1,
    }

    commit(own, group, topic, {0: 2, 1: 1})
    lag = collector.lag()
    assert (lag[(topic, 0)], lag[(topic, 1)], lag[(topic, 2)]) == (3, 0, 0)

    # As Prometheus sees it: one sample per partition, labelled by group, topic and partition.
    registry = CollectorRegistry()
    registry.register(collector)
    scraped = [s for family in registry.collect() for s in family.samples]
    assert [
        s.value for s in samples(scraped, "coursecast_consumer_lag_messages", topic=topic, partition="0")
    ] == [3.0]
    assert [s.value for s in samples(scraped, "coursecast_consumer_lag_error", group=group)] == [0.0]


def test_a_transaction_marker_counts_as_one_offset_of_lag(own: Settings) -> None:
    """Lag counts offsets: a consumer that committed past a transaction's last record still has its
    commit marker ahead (documented in docs/operations.md: alert on growth, never on lag > 0)."""
    topic, group = own.events_topic, own.projector_group_id
    producer = Producer(transactional_producer_config(own, "test", f"lag-test-{group}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"{}", key="job", partition=0)
    producer.commit_transaction(30)

    commit(own, group, topic, {0: 1})  # the record read and committed, as a consumer does
    assert metrics.ConsumerLagCollector(own, group, [topic]).lag()[(topic, 0)] == 1


def test_an_unreachable_kafka_gives_the_error_series_not_a_failed_scrape(own: Settings) -> None:
    unreachable = own.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:1", "metrics_kafka_timeout_s": 1.0}
    )
    collector = metrics.ConsumerLagCollector(unreachable, "nobody", [own.commands_topic])
    scraped = [s for family in collector.collect() for s in family.samples]
    assert [s.name for s in scraped] == ["coursecast_consumer_lag_error"]
    assert scraped[0].value == 1
