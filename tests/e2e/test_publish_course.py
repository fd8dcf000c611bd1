"""The whole pipeline as an instructor uses it: upload over HTTP, encode, project, play — then redeliver.

Every service runs as its own process (`coursecast api | encoder | projector | watchdog | notifier`)
on topics, a schema and groups of this test's own; the notifier's webhook reaches a receiver on 127.0.0.1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import httpx
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from devtools.demo import (
    api_base,
    coursecast,
    create_instructor,
    follow,
    make_lecture,
    playable,
    running_services,
    wait_for_webhook,
    webhook_receiver,
)
from services.core.kafka_config import admin_config, consumer_config, producer_config
from services.core.messages import job_key
from services.core.settings import Settings
from tests.support.fixtures import Isolate
from tests.support.projector import only_markers_left
from tests.support.services import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def own(isolate: Isolate) -> Settings:
    return isolate(api_port=free_port())  # a port free now, when the test starts


def commands_consumed(own: Settings, timeout_s: float = 60) -> None:
    """Wait until the encoder group has committed every command on the commands topic."""
    admin = AdminClient(admin_config(own))
    probe = Consumer(consumer_config(own, "e2e-watermarks", "test"))
    try:
        partitions = probe.list_topics(own.commands_topic, timeout=10).topics[own.commands_topic].partitions
        ends = {
            p: probe.get_watermark_offsets(TopicPartition(own.commands_topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        probe.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        request = [ConsumerGroupTopicPartitions(own.encoder_group_id)]
        result = admin.list_consumer_group_offsets(request)[own.encoder_group_id].result(timeout=10)
        committed = {
            tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == own.commands_topic
        }
        if all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        # The conductor's and the api's transactions end in commit markers no consumer receives.
        if only_markers_left(own, committed, ends, own.commands_topic):
            return
        time.sleep(0.5)
    raise AssertionError(f"the encoders did not consume every command within {timeout_s} s")


def test_uploaded_course_is_published_playable_and_survives_fifteen_redeliveries(
    own: Settings, tmp_path: Path, s3: S3Client
) -> None:
    lecture = make_lecture(tmp_path / "lecture.mp4", seconds=8, size="640x360")
    with running_services(own, tmp_path / "logs"), webhook_receiver() as (hook_url, received):
        _, token = create_instructor(own)
        client = httpx.Client(
            base_url=api_base(own), headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        hook = client.post("/v1/webhooks", json={"url": hook_url})
        assert hook.status_code == 201, hook.text
        with lecture.open("rb") as video:
            accepted = client.post(
                "/v1/courses",
                data={"name": "배열 (e2e)", "curriculum": "CS-101"},
                files={"videos": ("1강 배열.mp4", video, "video/mp4")},
            )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        updates = follow(client, job_id, echo=False)
        assert updates[-1]["status"] == "completed", updates[-1]
        assert "processing" in {u["status"] for u in updates}
        job = client.get(f"/v1/jobs/{job_id}").json()
        video = job["outputs"]["videos"][0]
        assert playable(video["master_playlist_url"])
        assert httpx.get(video["thumbnail_url"]).headers["content-type"] == "image/webp"
        # The notifier tells the owner's endpoint, signed with the secret it was given once.
        notification = wait_for_webhook(received, job_id, hook.json()["secret"])
        assert notification is not None, "no signed webhook about the job"
        assert notification["type"] == "course.completed"
        assert (
            notification["data"]["outputs"]["videos"][0]["master_playlist_url"]
            == video["master_playlist_url"]
        )
        # The published course, in the catalogue once the job completed (the same transaction).
        course = client.get(f"/v1/courses/{job_id}").json()
        assert [(lecture["title"], lecture["filename"]) for lecture in course["lectures"]] == [
            ("1강 배열", "1강 배열.mp4")
        ]
        assert course["lectures"][0]["master_playlist_url"] == video["master_playlist_url"]
        # The uploaded sources are retained for re-encodes (COURSECAST_SOURCE_RETENTION_DAYS) after
        # the course completed; `coursecast staging sweep` deletes them once they expire.
        staged = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/videos/")
        assert staged.get("KeyCount", 0) == 1

        # Incident 1: the broker hands the same command out again, many times, after completion.
        reader = Consumer(consumer_config(own, "e2e-read-commands", "test"))
        reader.assign([TopicPartition(own.commands_topic, p, 0) for p in range(own.topic_partitions)])
        command = None
        for _ in range(40):
            message = reader.poll(0.5)
            if message is not None and message.error() is None and message.key() == job_key(UUID(job_id)):
                command = message
                break
        reader.close()
        assert command is not None
        producer = Producer(producer_config(own, "e2e-redelivery"))
        for _ in range(15):
            producer.produce(own.commands_topic, key=command.key(), value=command.value())
        assert producer.flush(30) == 0
        commands_consumed(own)

        again = client.get(f"/v1/jobs/{job_id}").json()
        assert again["status"] == "completed"
        assert again["completed_at"] == job["completed_at"]
        history = client.get(f"/v1/jobs/{job_id}/events").json()
        started = [e for e in history["items"] if e["type"] == "JobStarted"]
        assert len(started) == 1, "a redelivered command started the job again"
        assert len(received) == 1, "one end of the job, one notification"

    rebuild = coursecast(own, "replay", "--rebuild", check=False)
    assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
    assert "no difference" in rebuild.stdout
