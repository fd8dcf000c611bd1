"""Helpers for projector tests: an isolated topic + schema per test, producing raw or encoded events,
running projector processes, and waiting until they have caught up with the log."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from uuid import uuid4

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.core import codec
from services.core.kafka_config import admin_config, consumer_config, producer_config
from services.core.messages import Envelope
from services.core.settings import Settings
from services.core.topics import ensure_topics
from services.projector.consumer import Projector
from services.projector.replay import drop_schema
from services.projector.store import JobStore


@contextmanager
def isolated(settings: Settings, partitions: int = 3) -> Iterator[Settings]:
    """Settings with topics, schema and group of their own, deleted afterwards."""
    tag = uuid4().hex[:10]
    own = settings.model_copy(
        update={
            "commands_topic": f"test-{tag}.commands",
            "events_topic": f"test-{tag}.job-events",
            "commands_dlq_topic": f"test-{tag}.commands.dlq",
            "events_dlq_topic": f"test-{tag}.job-events.dlq",
            "topic_partitions": partitions,
            "database_schema": f"test_{tag}",
            "projector_group_id": f"projector-{tag}",
            "watchdog_app_id": f"watchdog-{tag}",
            "commands_retry_topic": f"test-{tag}.commands.retry",
            "encoder_group_id": f"encoders-{tag}",
            "conductor_group_id": f"conductor-{tag}",
            "webhook_group_id": f"notifier-{tag}",
        }
    )
    ensure_topics(own)
    try:
        yield own
    finally:
        drop_schema(own.database_url, own.database_schema)
        topics = [
            own.commands_topic,
            own.events_topic,
            own.commands_dlq_topic,
            own.events_dlq_topic,
            own.commands_retry_topic,
        ]
        admin = AdminClient(admin_config(own))  # kept alive until every future has resolved
        existing = admin.list_topics(timeout=30).topics
        # The watchdog's faust app creates topics named after its app id (its table's changelog).
        topics += [t for t in existing if t.startswith(f"{own.watchdog_app_id}-")]
        topics = [t for t in topics if t in existing]
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=30)


def produce(
    settings: Settings, events: Iterable[Envelope | bytes | None], keys: Iterable[bytes] | None = None
) -> int:
    """Write events (or raw values, for poison) to the events topic, acks=all; returns the count."""
    producer = Producer({**producer_config(settings, "test"), "linger.ms": 20})
    key_iter = iter(keys) if keys is not None else None
    count = 0
    for item in events:
        timestamp = 0  # 0 lets the client stamp the time of sending
        if isinstance(item, Envelope):
            value: bytes | None = codec.encode(item)
            key = item.kafka_key()
            timestamp = item.timestamp_ms()  # as bus.publish does
        else:
            value = item
            key = next(key_iter) if key_iter is not None else str(uuid4()).encode()
        producer.produce(settings.events_topic, value=value, key=key, timestamp=timestamp)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


def end_offsets(settings: Settings) -> dict[int, int]:
    """The high watermark of each partition of the events topic."""
    consumer = Consumer(consumer_config(settings, f"watermarks-{uuid4()}", "test"))
    try:
        metadata = consumer.list_topics(settings.events_topic, timeout=10).topics[settings.events_topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(settings.events_topic, p), timeout=10)[1]
            for p in metadata.partitions
        }
    finally:
        consumer.close()


def only_markers_left(
    settings: Settings, stored: dict[int, int], target: dict[int, int], topic: str | None = None
) -> bool:
    """Whether nothing a consumer would read lies between the stored offsets and `target` on
    `topic` (the events topic unless given).

    A transactional producer (the api, the conductor) writes a commit marker after each transaction: it takes
    an offset that no consumer ever receives, so a projector that has applied every event stores an
    offset below the high watermark. Read from the stored offsets: only partition ends, no message.
    """
    behind = {p: stored.get(p, 0) for p, o in target.items() if stored.get(p, 0) < o}
    consumer = Consumer(
        {
            **consumer_config(settings, f"caught-up-{uuid4()}", "test"),
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(topic or settings.events_topic, p, o) for p, o in behind.items()])
        ended: set[int] = set()
        deadline = time.monotonic() + 10
        while ended != set(behind) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None and (message.offset() or 0) < target[message.partition() or 0]:
                return False
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition() or 0)
        return ended == set(behind)
    finally:
        consumer.close()


def wait_caught_up(
    settings: Settings, timeout_s: float = 120.0, processes: Iterable[subprocess.Popen[bytes]] = ()
) -> None:
    """Block until the stored offsets of the schema reach the end of every partition."""
    target = {p: o for p, o in end_offsets(settings).items() if o > 0}
    deadline = time.monotonic() + timeout_s
    next_look = time.monotonic() + 1.0
    store = None
    try:
        while time.monotonic() < deadline:
            for process in processes:
                if process.poll() is not None:
                    raise AssertionError(f"projector exited early with {process.returncode}")
            try:
                if store is None:
                    store = JobStore.open(
                        settings.database_url, settings.database_schema, settings.events_topic
                    )
                stored = store.stored_offsets()
                if all(stored.get(p, 0) >= o for p, o in target.items()):
                    return
                if time.monotonic() >= next_look:
                    if only_markers_left(settings, stored, target):
                        return
                    next_look = time.monotonic() + 1.0
            except Exception:  # the schema may not exist until the projector's first start
                if store is not None:
                    store.close()
                store = None
            time.sleep(0.2)
    finally:
        if store is not None:
            store.close()
    raise AssertionError(f"projector did not catch up with {target} within {timeout_s} s")


@contextmanager
def running_projector(settings: Settings, store: JobStore) -> Iterator[Projector]:
    """An in-process projector on a thread of its own, stopped when the block ends."""
    projector = Projector(settings, store)
    halt = threading.Event()
    thread = threading.Thread(target=projector.run, args=(halt,), daemon=True)
    thread.start()
    try:
        yield projector
    finally:
        halt.set()
        thread.join(30)


def project(settings: Settings, store: JobStore, timeout_s: float = 60.0) -> Projector:
    """Run an in-process projector until it has applied everything on the topic."""
    with running_projector(settings, store) as projector:
        wait_caught_up(settings, timeout_s=timeout_s)
    return projector
