"""Bring the whole local stack up or down and report on it; each component's module does the work."""

from __future__ import annotations

from devtools.stack import kafka, mediatools, postgres, s3
from devtools.stack.layout import StackLayout
from devtools.stack.model import ComponentStatus, Echo, StackError
from services.core.settings import Settings


def _quiet(_: str) -> None:
    """An echo that says nothing (the default for callers such as tests)."""


def up(settings: Settings, brokers: int = 1, echo: Echo = _quiet) -> list[ComponentStatus]:
    """Start whatever is not running, wait until each answers a real request, create topics/db/bucket.

    Idempotent: a running, healthy component is left alone. Kafka runs in one mode at a time; asking
    for the other mode stops the running one first. Raises StackError with the log to read.
    """
    layout = StackLayout.from_settings(settings)
    layout.ensure()
    # Everything that must be installed is checked before anything starts.
    missing = [row.detail for row in mediatools.statuses() if not row.ok]
    if missing:
        raise StackError("; ".join(missing))
    kafka.java_binary()
    kafka.classpath(layout)
    postgres.bin_dir()
    # Ports held by strangers are refused before anything starts (Kafka checks its own in start).
    postgres.preflight(settings, layout)
    s3.preflight(settings, layout)

    # Start all three, then wait: the JVMs, the postmaster and moto warm up side by side.
    cluster = kafka.start(settings, layout, brokers, echo)
    postgres.start(settings, layout, echo)
    s3.start(settings, layout, echo)

    for created in postgres.wait_healthy(settings, layout):
        echo(f"postgres: created {created}")
    if s3.wait_healthy(settings, layout):
        echo(f"s3: created bucket {settings.s3_bucket}")
    kafka.wait_healthy(layout, cluster)
    topics = kafka.create_topics(settings, cluster)
    if topics:
        echo(f"kafka: created topics {', '.join(topics)} (RF {cluster.replication_factor})")
    return status(settings)


def down(settings: Settings, echo: Echo = _quiet) -> None:
    """Stop only what `up` started (pid files checked against each live process); data is kept."""
    layout = StackLayout.from_settings(settings)
    if not layout.root.is_dir():
        return
    kafka.stop(layout, echo)
    s3.stop(layout, echo)
    postgres.stop(layout, echo)


def status(settings: Settings) -> list[ComponentStatus]:
    """Every component with its address and whether it answers a real request now."""
    layout = StackLayout.from_settings(settings)
    return [
        *kafka.status(settings, layout),
        postgres.status(settings, layout),
        s3.status(settings, layout),
        *mediatools.statuses(),
    ]


def kafka_settings(settings: Settings) -> Settings:
    """Settings for the running Kafka mode (all its brokers, its RF and min ISR); as given if none runs."""
    cluster = kafka.running_cluster(StackLayout.from_settings(settings))
    return settings if cluster is None else kafka.topic_settings(settings, cluster)


def stop_broker(settings: Settings, node_id: int, *, kill: bool = False) -> str:
    """Stop one Kafka node (SIGTERM, or SIGKILL with kill=True) for fault tests."""
    return kafka.stop_node(StackLayout.from_settings(settings), node_id, kill=kill)


def restart_stopped_brokers(settings: Settings, echo: Echo = _quiet) -> None:
    """Restart any stopped node of the running Kafka mode and wait until all brokers are listed."""
    layout = StackLayout.from_settings(settings)
    cluster = kafka.running_cluster(layout)
    if cluster is None:
        raise StackError("kafka is not running (python -m devtools stack up)")
    kafka.wait_healthy(layout, kafka.start(settings, layout, cluster.brokers, echo))
