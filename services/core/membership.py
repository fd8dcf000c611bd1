"""Is a process of this host a live member of its consumer group? The container healthcheck of the
encoder, the conductor, the projector, the watchdog and the notifier (`coursecast healthcheck SERVICE`).

A consumer stays in its group only while it polls: a process that hangs past max.poll.interval.ms,
or whose session lapses, is evicted by the group coordinator (G2). So membership is the one outward
sign that a worker process is alive *and* consuming, which a running container alone does not show.
Every client id names its host (kafka_config.client_id), and a container's host name is its own, so
each replica of a scaled service checks only itself.
"""

from __future__ import annotations

import socket
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.core.kafka_config import admin_config_for
from services.core.settings import Settings

CHECK_TIMEOUT_S = 10.0

Worker = Literal["encoder", "projector", "watchdog", "notifier", "conductor"]


def group_of(settings: Settings, worker: Worker) -> str:
    """The consumer group each worker service joins (the encoder's commands group; see groups_of)."""
    groups: dict[Worker, str] = {
        "encoder": settings.encoder_group_id,
        "projector": settings.projector_group_id,
        # faust's consumer group is the app id.
        "watchdog": settings.watchdog_app_id,
        "notifier": settings.webhook_group_id,
        "conductor": settings.conductor_group_id,
    }
    return groups[worker]


def members_of(settings: Settings, group: str, timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """The client ids of the group's current members (empty while it has none, or is rebalancing)."""
    admin = AdminClient(admin_config_for(settings.kafka_bootstrap_servers, "healthcheck"))
    future = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group]
    try:
        description = future.result(timeout=timeout_s)
    except KafkaException:
        return []
    return [member.client_id for member in description.members]


def groups_of(settings: Settings, worker: Worker) -> list[str]:
    """Every consumer group the worker service joins: its group, and the encoder's retry group too
    (the encoder reads each of its topics in a group of its own, services/encoder/consumer.py)."""
    if worker == "encoder":
        return [settings.encoder_group_id, settings.encoder_retry_group_id]
    return [group_of(settings, worker)]


def is_member_here(settings: Settings, worker: Worker, host: str | None = None) -> bool:
    """True when a consumer of this host (one whose client id names it) is a member of each of the
    worker's groups: a process whose one consumer left (or hangs) is not healthy."""
    host = host or socket.gethostname()
    return all(
        any(f"@{host}:" in client for client in members_of(settings, group))
        for group in groups_of(settings, worker)
    )
