"""Prometheus metrics shared by every process: the port that serves them, consumer lag, dead letters.

Each process package defines its own series in its own `metrics.py`; this module holds what they all
need. Two rules keep metrics from ever hurting the work they describe:
- nothing here runs on a poll loop: consumer lag is computed when Prometheus scrapes, on the scrape's
  thread, with a Kafka admin client of its own and a bounded wait (`metrics_kafka_timeout_s`);
- a metrics port that cannot be opened is logged as an error and the process runs on without it.
Label values are bounded sets (topics, partitions, outcomes, reasons named by the code), never ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from services.core.kafka_config import admin_config
from services.core.settings import Settings

log = logging.getLogger("coursecast.metrics")

# G6: every message set aside, by the dead-letter topic it went to and the codec's error code.
DEAD_LETTERED = Counter(
    "coursecast_dead_lettered",
    "Messages copied to a dead-letter topic because they could not be decoded or validated",
    ["dlq_topic", "code"],
)


def serve(settings: Settings, port: int, process: str, registry: CollectorRegistry = REGISTRY) -> int | None:
    """Serve `registry` at http://<metrics_host>:<port>/metrics from a daemon thread; the port bound.

    Port 0 serves nothing (None). A port already taken is an operator's mistake that must not stop
    the pipeline: it is logged as an error, and the process runs on without metrics.
    """
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        log.error(
            "metrics not served: %s:%d cannot be opened (%s)",
            settings.metrics_host,
            port,
            exc,
            extra={"event": "metrics_port_unavailable", "service": process},
        )
        return None
    bound = int(server.server_address[1])
    log.info(
        "metrics served on http://%s:%d/metrics",
        settings.metrics_host,
        bound,
        extra={"event": "metrics_served", "service": process},
    )
    return bound


def _lag_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "coursecast_consumer_lag_messages",
        "Records on a partition that the consumer group has not committed yet",
        labels=["group", "topic", "partition"],
    )


def _error_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "coursecast_consumer_lag_error",
        "1 when the last scrape could not read the group's offsets from Kafka (the lag is missing)",
        labels=["group"],
    )


class ConsumerLagCollector(Collector):
    """`coursecast_consumer_lag_messages{group,topic,partition}`: records a consumer group has not
    committed yet on each partition of its topics, computed at scrape time.

    Lag = the partition's end − the group's committed offset (the start of the log when the group has
    committed nothing there yet). The end is the last stable offset for a read_committed group (what
    it can read) and the high watermark for a read_uncommitted one (the watchdog). Every member of a
    group reports the whole group's lag, assigned partitions or not, so a partition nobody consumes
    still shows; aggregate across members with `max by (group, topic, partition)`.
    """

    def __init__(
        self,
        settings: Settings,
        group: str,
        topics: Sequence[str],
        isolation: Literal["read_committed", "read_uncommitted"] = "read_committed",
    ) -> None:
        self.group = group
        self.topics = list(topics)
        self.timeout_s = settings.metrics_kafka_timeout_s
        self.isolation = (
            IsolationLevel.READ_COMMITTED
            if isolation == "read_committed"
            else IsolationLevel.READ_UNCOMMITTED
        )
        self._admin = AdminClient(admin_config(settings))

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without describe(), registering would call collect() once, i.e. ask Kafka at import time.
        return [_lag_family(), _error_family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = _lag_family()
        error = _error_family()
        self.add_to(lag, error)
        return [lag, error]

    def add_to(self, lag: GaugeMetricFamily, error: GaugeMetricFamily) -> None:
        """Add this group's samples to the lag and error families of a scrape."""
        try:
            for (topic, partition), value in sorted(self.lag().items()):
                lag.add_metric([self.group, topic, str(partition)], value)
            error.add_metric([self.group], 0)
        except (KafkaException, TimeoutError, KeyError) as exc:
            log.warning("consumer lag of group %s unavailable: %s", self.group, exc)
            error.add_metric([self.group], 1)

    def lag(self) -> dict[tuple[str, int], int]:
        """(topic, partition) → records not yet committed by the group, per partition of its topics."""
        partitions = self._partitions()
        if not partitions:
            return {}
        request = [ConsumerGroupTopicPartitions(self.group, partitions)]
        futures = self._admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)
        committed_list = futures[self.group].result(timeout=self.timeout_s).topic_partitions or []
        committed = {(tp.topic, tp.partition): tp.offset for tp in committed_list}
        ends = self._offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        starts = self._offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        lag: dict[tuple[str, int], int] = {}
        for key, end in ends.items():
            # A negative offset means the group never committed there: it would read from the start.
            position = committed.get(key, -1)
            if position < 0:
                position = starts.get(key, 0)
            lag[key] = max(0, end - position)
        return lag

    def _partitions(self) -> list[TopicPartition]:
        metadata = self._admin.list_topics(timeout=self.timeout_s)
        return [
            TopicPartition(topic, partition)
            for topic in self.topics
            if topic in metadata.topics
            for partition in sorted(metadata.topics[topic].partitions)
        ]

    def _offsets(self, partitions: list[TopicPartition], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        futures = self._admin.list_offsets(
            {tp: spec for tp in partitions}, isolation_level=self.isolation, request_timeout=self.timeout_s
        )
        return {
            (tp.topic, tp.partition): int(future.result(timeout=self.timeout_s).offset)
            for tp, future in futures.items()
        }


def watch_lag(
    settings: Settings,
    group: str,
    topics: Sequence[str],
    isolation: Literal["read_committed", "read_uncommitted"] = "read_committed",
    registry: CollectorRegistry = REGISTRY,
) -> ConsumerLagCollector:
    """Register a lag collector for `group` on `topics` (once per process and group)."""
    collector = ConsumerLagCollector(settings, group, topics, isolation)
    registry.register(collector)
    return collector


class GroupsLagCollector(Collector):
    """The same two series for several consumer groups of one process (the encoder's commands group
    and its retry group): a registry takes each metric name from one collector only."""

    def __init__(self, collectors: Sequence[ConsumerLagCollector]) -> None:
        self.collectors = list(collectors)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [_lag_family(), _error_family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = _lag_family()
        error = _error_family()
        for collector in self.collectors:
            collector.add_to(lag, error)
        return [lag, error]


def watch_lags(
    settings: Settings,
    groups: Mapping[str, Sequence[str]],
    registry: CollectorRegistry = REGISTRY,
) -> GroupsLagCollector:
    """Register one lag collector for several read_committed groups (group → its topics)."""
    collector = GroupsLagCollector([ConsumerLagCollector(settings, g, t) for g, t in groups.items()])
    registry.register(collector)
    return collector
