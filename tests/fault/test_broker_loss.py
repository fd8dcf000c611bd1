"""G3 across a broker failure: on a three-broker cluster (RF 3, min ISR 2) a broker killed mid-stream
loses no acknowledged event, and the projector's table still equals the log.

The cluster is the stack's own 3-broker mode, started on ports of its own (brokers 19192–19194,
controllers 29192–29194: below Linux's ephemeral range, which starts at 32768, so no client's outgoing
socket can hold one of them) and in a folder of its own, so it runs beside the shared single-broker
stack and is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from devtools.stack import kafka
from devtools.stack.layout import StackLayout
from devtools.synthetic import history
from services.core import bus
from services.core.kafka_config import admin_config, producer_config
from services.core.settings import PROJECT_ROOT, Settings
from services.projector.store import JobStore
from tests.support.projection_checks import folded, stored
from tests.support.projector import isolated, running_projector, wait_caught_up

# Its three JVMs start from a pytest process of their own (see the Makefile): started from the
# long-running full-suite process, a node twice died at start-up in fresh-clone runs, cause not found.
pytestmark = pytest.mark.cluster


def _quiet(_: str) -> None:
    """Say nothing."""


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[Settings]:
    """A running three-broker KRaft cluster and settings that reach all of it."""
    base = settings.model_copy(
        update={
            "kafka_bootstrap_servers": "127.0.0.1:19192",
            "stack_dir": PROJECT_ROOT / ".cache" / "stack-faults",
        }
    )
    layout = StackLayout.from_settings(base)
    layout.ensure()
    shared_lib = StackLayout.from_settings(settings).kafka_lib
    if not layout.kafka_lib.exists():
        layout.kafka_lib.parent.mkdir(parents=True, exist_ok=True)
        layout.kafka_lib.symlink_to(shared_lib, target_is_directory=True)  # the same jars, assembled once
    running = kafka.start(base, layout, 3, _quiet)
    try:
        kafka.wait_healthy(layout, running)
        yield kafka.topic_settings(base, running)
    finally:
        kafka.stop(layout, _quiet)


def test_three_broker_mode_creates_topics_with_three_replicas_and_min_isr_two(cluster: Settings) -> None:
    assert cluster.topic_replication_factor == 3
    assert cluster.topic_min_insync_replicas == 2
    with isolated(cluster) as own:
        metadata = AdminClient(admin_config(own)).list_topics(timeout=10)
        assert len(metadata.brokers) == 3
        for partition in metadata.topics[own.events_topic].partitions.values():
            assert len(partition.replicas) == 3


def test_killing_a_broker_mid_stream_loses_no_acknowledged_event(cluster: Settings) -> None:
    layout = StackLayout.from_settings(cluster)
    events = history(jobs=200, events_per_job=10, seed=17)
    halves = events[: len(events) // 2], events[len(events) // 2 :]
    with isolated(cluster.model_copy(update={"session_timeout_ms": 6000})) as own:
        store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
        with running_projector(own, store):
            producer = Producer(producer_config(own, "fault-test"))
            acknowledged = len(bus.publish(producer, own.events_topic, halves[0]))
            kafka.stop_node(layout, 2, kill=True)  # kill -9 one of three brokers
            acknowledged += len(bus.publish(producer, own.events_topic, halves[1]))
            assert acknowledged == len(events)
            kafka.wait_healthy(layout, kafka.start(own, layout, 3, _quiet))  # the broker comes back
            wait_caught_up(own, timeout_s=120)
        try:
            assert stored(store) == folded(events)
        finally:
            store.close()
