"""The project's topics, created by us through the AdminClient, never by broker auto-creation."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from services.core.kafka_config import admin_config
from services.core.settings import Settings

ADMIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name and the configuration that its role requires."""

    name: str
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The project's topics and why each is configured as it is."""
    durable = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    return [
        # Commands are work to do; a week covers any outage of the encoders.
        TopicSpec(settings.commands_topic, {**durable, "retention.ms": str(7 * 24 * 3600 * 1000)}),
        # G4: the job-event log is the source of truth, so it is never deleted by time or size.
        TopicSpec(settings.events_topic, {**durable, "retention.ms": "-1", "retention.bytes": "-1"}),
        # G6: dead letters are kept forever too: every rejected message stays inspectable.
        TopicSpec(settings.commands_dlq_topic, {**durable, "retention.ms": "-1"}),
        # G5: delayed retries of commands; same retention as the commands they stand for.
        TopicSpec(settings.commands_retry_topic, {**durable, "retention.ms": str(7 * 24 * 3600 * 1000)}),
        TopicSpec(settings.events_dlq_topic, {**durable, "retention.ms": "-1"}),
    ]


def ensure_topics(settings: Settings) -> list[str]:
    """Create any missing topic; returns the names created (existing topics are left as they are)."""
    admin = AdminClient(admin_config(settings))
    existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    missing = [
        NewTopic(
            spec.name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config=spec.config,
        )
        for spec in topic_specs(settings)
        if spec.name not in existing
    ]
    if not missing:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(missing, operation_timeout=ADMIN_TIMEOUT_S).items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            # Another process created it between our listing and our request: that is success.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        else:
            created.append(name)
    _wait_until_served(admin, [topic.topic for topic in missing], settings.topic_partitions)
    return created


def _wait_until_served(admin: AdminClient, names: list[str], partitions: int) -> None:
    """Return once a broker's metadata shows every named topic with a leader for every partition.

    The controller acknowledges a creation before every broker has the new metadata; a client that
    starts at that moment would see "unknown topic". Several consecutive answers are required because
    each metadata request may be answered by a different broker of the cluster.
    """
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    consecutive = 0
    while consecutive < 3:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        served = all(
            name in topics
            and topics[name].error is None
            and len(topics[name].partitions) == partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        )
        consecutive = consecutive + 1 if served else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} not served by the cluster within {ADMIN_TIMEOUT_S:.0f} s")
        if consecutive < 3:
            time.sleep(0.05)
