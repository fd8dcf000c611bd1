"""Every Kafka client setting that a delivery guarantee depends on, in one place.

Services never build a librdkafka config by hand: they ask this module, so a guarantee cannot be lost
by one service forgetting one key. Each setting names the guarantee (DESIGN.md G1–G6) it serves.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from services.core.settings import Settings

# G3/G5: librdkafka's own deadline for a produced record, retries included. When it passes, the
# record gets a delivery report (delivered, or failed with _MSG_TIMED_OUT) and librdkafka stops
# sending it: an in-flight ProduceRequest is itself given the remaining time of its oldest record as
# its protocol timeout, so no request outlives this. bus.FLUSH_TIMEOUT_S waits this long plus a
# margin, so by the time a flush gives up, every record has its final report: a caller never reports
# "not acknowledged" about a record that librdkafka may still deliver afterwards.
DELIVERY_TIMEOUT_MS = 25_000


def client_id(role: str) -> str:
    """A client id that names the role, host and process, so broker logs point at one process."""
    return f"coursecast-{role}@{socket.gethostname()}:{os.getpid()}"


def producer_config(settings: Settings, role: str) -> dict[str, Any]:
    """Producer settings: a produced event is durable before anyone acts on its acknowledgement."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id(role),
        # G3: the delivery report arrives only after every in-sync replica has the record, so an
        # offset committed after it never points past an event a broker failure could lose.
        "acks": "all",
        # G1/G3: librdkafka's retries never write a record twice nor reorder one job's events.
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        # G5: a broker that is briefly away (a leader election, a restart) is retried for this long
        # before the send is reported failed to the caller, which classifies that as transient and
        # retries the job with back-off. Kept below bus.FLUSH_TIMEOUT_S (see DELIVERY_TIMEOUT_MS).
        "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
        "linger.ms": 5,
        "compression.type": "lz4",
    }


def transactional_producer_config(settings: Settings, role: str, transactional_id: str) -> dict[str, Any]:
    """Producer settings for messages that must appear together or not at all (JobQueued + PublishCourse)."""
    config = producer_config(settings, role)
    # G3/G6: a transaction makes the api's two messages atomic for read_committed consumers, and a
    # stable transactional.id fences a zombie instance of the same producer.
    config["transactional.id"] = transactional_id
    # librdkafka refuses a transaction timeout shorter than the delivery timeout. The broker aborts
    # a transaction left open this long by a dead producer, which releases read_committed readers.
    config["transaction.timeout.ms"] = max(60_000, config["delivery.timeout.ms"])
    return config


def consumer_config(settings: Settings, group_id: str, role: str) -> dict[str, Any]:
    """Consumer settings: an offset moves only after the message's effects are durable."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id(role),
        "group.id": group_id,
        # G3: offsets are committed by our code, explicitly, after side effects are durable — never
        # by a background timer that could commit a message whose work then dies with the process.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # G4/G6: an aborted transaction (a half-born job) is never seen by any consumer.
        "isolation.level": "read_committed",
        # G2: the longest gap between polls before the group evicts the member. Long encodes keep
        # polling from the main thread while the work runs elsewhere, so this bounds only a hang.
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "session.timeout.ms": settings.session_timeout_ms,
        # A new group starts from the beginning: nothing already accepted is skipped (G6).
        "auto.offset.reset": "earliest",
        # Incremental rebalancing: a rebalance moves only the partitions that change owner, so a
        # running job on an unaffected partition is never interrupted.
        "partition.assignment.strategy": "cooperative-sticky",
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    """AdminClient settings for creating topics and checking health."""
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, "client.id": client_id("admin")}
