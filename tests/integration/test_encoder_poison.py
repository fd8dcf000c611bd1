"""G6 on the commands topic: poison written by anyone goes to the DLQ with its reason, and the
encoder goes on to run the good command queued behind it on the same partition."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from services.core import codec
from services.core.kafka_config import consumer_config, producer_config
from services.core.settings import Settings
from tests.support.encoder import FAST, course_data, publish_command, send
from tests.support.messages import cancel_job, job_queued
from tests.support.observe import wait_for
from tests.support.services import running
from tests.support.staging import staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; one partition, so the poison is in the way.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=1)]


def dead_letters(settings: Settings, count: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """The first `count` messages of the commands DLQ: value and headers."""
    consumer = Consumer(consumer_config(settings, f"dlq-{uuid4()}", "test"))
    consumer.subscribe([settings.commands_dlq_topic])
    found: list[tuple[bytes | None, dict[str, bytes]]] = []
    try:
        while len(found) < count:
            message = consumer.poll(30)
            assert message is not None, f"only {len(found)} of {count} poison messages reached the DLQ"
            if message.error() is None:
                headers: dict[str, bytes] = {}
                for header in message.headers() or []:
                    name, value = header[0], header[1]
                    if isinstance(value, bytes):
                        headers[name] = value
                found.append((message.value(), headers))
    finally:
        consumer.close()
    return found


def test_poison_commands_are_dead_lettered_with_their_reason_and_the_good_command_behind_them_runs(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=2)
    send(own, own.events_topic, [job_queued(job_id, course_data(manifest))])
    nul_cancel = orjson.loads(codec.encode(cancel_job(job_id, requested_by="x")))
    nul_cancel["data"]["reason"] = "a\u0000b"  # the reason that once froze every job's status
    poison: list[bytes | None] = [
        b"{not json",
        orjson.dumps(nul_cancel),
        b'{"event_id": "x", "type": "PublishCourse"}',
        None,
    ]
    producer = Producer(producer_config(own, "test"))
    for value in poison:
        producer.produce(own.commands_topic, value=value, key=str(job_id).encode())
    assert producer.flush(30) == 0
    send(own, own.commands_topic, [publish_command(manifest)])
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**FAST)
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, run.processes)
        letters = dead_letters(own, len(poison))

    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    assert [value for value, _ in letters] == poison  # byte for byte, in order
    codes = [headers["dlq.code"] for _, headers in letters]
    assert codes == [b"malformed", b"schema_violation", b"schema_violation", b"empty"]
    assert b"U+0000" in letters[1][1]["dlq.reason"]
    assert all(headers["dlq.source.topic"] == own.commands_topic.encode() for _, headers in letters)
