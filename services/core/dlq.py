"""`coursecast dlq replay`: put dead letters back on the topic they came from, once a fix lets them pass.

A dead letter (bus.dead_letter) is the source record byte for byte, with its key and headers saying
why and where from. After a fix (a schema that now accepts it, an upcaster for an old version), a
replay reads the dead-letter topic from where the last replay stopped and, for each record:
- decodes it with today's codec: one that still fails is skipped and reported, never re-produced
  (it would only come back to the DLQ);
- produces it to its source topic with its original key and value (so it lands on its job's
  partition, behind that job's earlier messages) and a `dlq.replayed-from` header, and waits for the
  acknowledgement (acks=all) before the dead letter's offset is committed (G3): a replay that dies
  midway re-produces at most the records it had not committed, never skips one.
A replayed record meets the same guards as any other: the projector stores an event id once and the
state machine refuses what no longer applies (G1, G4); the encoder's claims run a command once (G1).
The source topic is never taken from the record's headers alone: a dead letter can only go back to
the topic its dead-letter topic belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from services.core import bus, codec
from services.core.kafka_config import producer_config, reader_config
from services.core.settings import Settings

REPLAYED_FROM_HEADER = "dlq.replayed-from"
SOURCE_TOPIC_HEADER = "dlq.source.topic"
DEFAULT_GROUP = "coursecast-dlq-replay"
POLL_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Skipped:
    """A dead letter left where it is, and why."""

    where: str
    reason: str


@dataclass
class ReplayResult:
    """What a replay did."""

    replayed: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def source_topics(settings: Settings) -> dict[str, str]:
    """Dead-letter topic → the topic its records came from."""
    return {
        settings.commands_dlq_topic: settings.commands_topic,
        settings.events_dlq_topic: settings.events_topic,
    }


def replay(
    settings: Settings,
    dlq_topic: str,
    *,
    group: str = DEFAULT_GROUP,
    dry_run: bool = False,
    on_record: Callable[[str, Skipped | None], None] | None = None,
) -> ReplayResult:
    """Replay `dlq_topic` from `group`'s committed offsets to its end (see the module docstring).

    `dry_run` decodes and reports without producing or committing. `on_record(where, skipped)` is
    called for each record (skipped is None when it was, or would be, replayed).
    """
    targets = source_topics(settings)
    if dlq_topic not in targets:
        raise ValueError(f"{dlq_topic!r} is not a dead-letter topic of this deployment: {sorted(targets)}")
    target = targets[dlq_topic]
    consumer = Consumer({**reader_config(settings, group, "dlq-replay"), "auto.offset.reset": "earliest"})
    producer = Producer(producer_config(settings, "dlq-replay"))
    result = ReplayResult()
    try:
        partitions = consumer.list_topics(dlq_topic, timeout=30).topics[dlq_topic].partitions
        committed = consumer.committed([TopicPartition(dlq_topic, p) for p in partitions], timeout=30)
        consumer.assign(committed)
        open_partitions = set(partitions)
        while open_partitions:
            message = consumer.poll(POLL_TIMEOUT_S)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition() or 0)
                    continue
                raise RuntimeError(f"reading {dlq_topic}: {error.str()}")
            skipped = _replay_one(producer, message, target, dry_run)
            if skipped is None:
                result.replayed += 1
            else:
                result.skipped.append(skipped)
            if on_record is not None:
                on_record(_where(message), skipped)
            if not dry_run:
                # G3: the dead letter is passed only once its copy is acknowledged (or it was skipped).
                consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
        bus.flush_on_close(producer)
    return result


def _replay_one(producer: Producer, message: Message, target: str, dry_run: bool) -> Skipped | None:
    where = _where(message)
    headers = _headers(message)
    source = headers.get(SOURCE_TOPIC_HEADER)
    if source is not None and source != target.encode():
        return Skipped(where, f"its source topic {source.decode(errors='replace')!r} is not {target!r}")
    try:
        codec.decode(message.value())
    except codec.CodecError as exc:
        return Skipped(where, f"still invalid ({exc.code}): {exc.reason}")
    if not dry_run:
        record = bus.Record(
            target, message.value(), message.key(), headers=[(REPLAYED_FROM_HEADER, where.encode())]
        )
        bus.produce_and_wait(producer, [record])
    return None


def _headers(message: Message) -> dict[str, bytes]:
    raw = message.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    return {name: value for name, value in pairs if isinstance(value, bytes)}


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"
