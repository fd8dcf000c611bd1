"""Every Kafka client setting that a delivery guarantee depends on, in one place.

Services never build a Kafka client config by hand — librdkafka's for confluent-kafka, faust's for the
watchdog — they ask this module, so a guarantee cannot be lost by one service forgetting one key. Each
setting names the guarantee (docs/guarantees.md, G1–G6) it serves.

Every consumer reads `read_committed`, except the watchdog's (faust's and its catch-up probe's): it
reads `read_uncommitted` on purpose, see WATCHDOG_ISOLATION_LEVEL.
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

# G2 without false verdicts: the watchdog reads the events log uncommitted, for two reasons.
# - A read_committed consumer stops at the last stable offset: every record behind a transaction
#   still open (the api's JobQueued + PublishCourse, a verdict, an encoder's takeover, or a dead
#   producer's transaction until the broker aborts it) is withheld, heartbeats of unrelated jobs on
#   the same partition included. The watchdog must see a live worker's heartbeat as soon as it is
#   written, or it cannot catch up with the log (catchup.py) and would judge that worker late or,
#   worse, from an old heartbeat.
# - faust-streaming 0.15 has no isolation setting: its worker consumer reads uncommitted unless the
#   whole app runs processing_guarantee="exactly_once" (transactional per partition), which the
#   watchdog does not need: its verdicts are published by its own transactional producer.
# What an aborted record can do to the watchdog is therefore bounded in liveness.observe: its own
# verdicts never end the attempt they judge, so an aborted one leaves the attempt to judge again.
WATCHDOG_ISOLATION_LEVEL = "read_uncommitted"
# librdkafka's default heartbeat.interval.ms, which every other consumer uses.
HEARTBEAT_INTERVAL_S = 3.0


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


def request_bounds(settings: Settings) -> dict[str, Any]:
    """What a transactional producer changes when it publishes while a client waits (the api's):
    every Kafka call is bounded by settings.api_kafka_timeout_s, so an unreachable broker becomes a
    quick 503 instead of a request that hangs."""
    timeout_ms = int(settings.api_kafka_timeout_s * 1000)
    return {
        # A request waits at most this long for acknowledgements before it answers 503.
        "delivery.timeout.ms": timeout_ms,
        # librdkafka refuses a transaction timeout shorter than the delivery timeout.
        "transaction.timeout.ms": max(timeout_ms, 60_000),
        "socket.connection.setup.timeout.ms": min(timeout_ms, 10_000),
        "linger.ms": 0,
    }


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


def reader_config(settings: Settings, group_id: str, role: str) -> dict[str, Any]:
    """A consumer that reads to the end of its partitions and is told when it gets there (a replay,
    a cancel watcher): consumer_config plus a partition-EOF event."""
    return {**consumer_config(settings, group_id, role), "enable.partition.eof": True}


def watchdog_app_config(settings: Settings) -> dict[str, Any]:
    """faust.App keyword settings of the watchdog's Kafka clients (its consumer, its changelog
    producer), matched to what consumer_config and producer_config give the other services."""
    session_s = settings.session_timeout_ms / 1000
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        "broker_client_id": client_id("watchdog"),
        # G3: the table's changelog is durable on every in-sync replica before faust moves on.
        "producer_acks": -1,
        # A new group starts from the beginning: the table learns every job still running (G2).
        "consumer_auto_offset_reset": "earliest",
        # The same group liveness as every other consumer. faust refuses a session timeout longer
        # than its request timeout, so that follows the session timeout when it is raised.
        "broker_session_timeout": session_s,
        "broker_heartbeat_interval": min(HEARTBEAT_INTERVAL_S, session_s / 3),
        "broker_request_timeout": max(90.0, session_s),
        "broker_max_poll_interval": settings.max_poll_interval_ms / 1000,
        # faust's consumer reads WATCHDOG_ISOLATION_LEVEL: it has no setting for it (see above).
    }


def watchdog_probe_config(
    settings: Settings, group_id: str, *, partition_eof: bool = False
) -> dict[str, Any]:
    """The watchdog's catch-up probe (catchup.py): it sees exactly what faust's consumer applies.

    It never subscribes nor commits; with `partition_eof` it is told when a read reaches the end."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id("watchdog-catchup"),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.partition.eof": partition_eof,
        "isolation.level": WATCHDOG_ISOLATION_LEVEL,
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    """AdminClient settings for creating topics and checking health."""
    return admin_config_for(settings.kafka_bootstrap_servers, "admin")


def admin_config_for(bootstrap_servers: str, role: str) -> dict[str, Any]:
    """AdminClient settings for a cluster known only by its address (the local stack manager)."""
    return {"bootstrap.servers": bootstrap_servers, "client.id": client_id(role)}
