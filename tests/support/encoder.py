"""Driving the encoder in tests: queue a staged course (the api's two messages), cancel it, and run
`coursecast encoder` processes on it (what the tests then watch is in tests/support/observe)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from uuid import UUID

from confluent_kafka import Producer

from services.core import codec
from services.core.catalogue import default_title
from services.core.jobs import JobState
from services.core.kafka_config import producer_config
from services.core.manifest import StagingManifest, manifest_key, staging_prefix
from services.core.messages import Envelope
from services.core.payloads import JobQueued, PublishCourse, QueuedLecture
from services.core.settings import Settings
from tests.support.messages import cancel_job, job_queued, publish_course
from tests.support.observe import wait_for
from tests.support.services import Process, Services, running

FAST = {"COURSECAST_ENCODER_X264_PRESET": "ultrafast"}
# Input read at its native rate (ffmpeg -re): a 12 s clip encodes for about 12 s, using little CPU.
REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}


def course_data(manifest: StagingManifest) -> JobQueued:
    """The data of JobQueued (and, through `publish_command()`, of PublishCourse) for a staged manifest."""
    return JobQueued(
        owner=manifest.owner,
        course_name=manifest.course_name,
        curriculum=manifest.curriculum,
        staging_prefix=staging_prefix(manifest.job_id),
        manifest_key=manifest_key(manifest.job_id),
        video_count=len(manifest.videos),
        course_id=manifest.job_id,
        lectures=tuple(
            QueuedLecture(index=v.index, title=default_title(v.filename), filename=v.filename)
            for v in manifest.videos
        ),
    )


def publish_command(manifest: StagingManifest, attempt: int = 1) -> Envelope[PublishCourse]:
    """A fresh PublishCourse envelope for a staged manifest."""
    return publish_course(manifest.job_id, attempt, course_data(manifest))


def send(settings: Settings, topic: str, messages: Iterable[Envelope]) -> None:
    """Produce envelopes to `topic`, acks=all."""
    producer = Producer(producer_config(settings, "test"))
    for message in messages:
        producer.produce(topic, value=codec.encode(message), key=message.kafka_key())
    assert producer.flush(30) == 0


def queue_job(settings: Settings, manifest: StagingManifest) -> Envelope[PublishCourse]:
    """JobQueued on the log, then PublishCourse on the commands topic (the api's two messages)."""
    send(settings, settings.events_topic, [job_queued(manifest.job_id, course_data(manifest))])
    command = publish_command(manifest)
    send(settings, settings.commands_topic, [command])
    return command


def cancel(settings: Settings, job_id: UUID) -> None:
    """Produce CancelJob for `job_id`."""
    send(settings, settings.commands_topic, [cancel_job(job_id)])


def encoder_runs_job(
    run: Services, manifest: StagingManifest, timeout_s: float = 60, name: str = "encoder", /, **env: str
) -> Process:
    """Start encoder `name`, queue the staged job and wait until it is processing; returns the encoder."""
    encoder = run.encoder(name, **env)
    queue_job(run.settings, manifest)
    wait_for(run.settings, manifest.job_id, {"processing"}, timeout_s, run.processes)
    return encoder


def run_to_end(
    settings: Settings,
    manifest: StagingManifest,
    log_dir: Path,
    timeout_s: float,
    statuses: Iterable[str] = ("completed", "failed"),
    **encoder_env: str,
) -> JobState:
    """Queue the staged job and run a projector and one encoder (log: log_dir/encoder.log) until the
    job is in one of `statuses`; returns its row. Both services are stopped before this returns."""
    with running(settings, log_dir) as run:
        run.projector()
        run.encoder(**encoder_env)
        queue_job(settings, manifest)
        return wait_for(settings, manifest.job_id, set(statuses), timeout_s, run.processes)
