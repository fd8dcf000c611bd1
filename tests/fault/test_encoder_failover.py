"""G1/G2 under a crash: kill -9 the encoder running a job; the other encoder finishes it.

The survivor receives the partition after the session timeout, re-reads the uncommitted command,
finds the dead worker's claim lease expired, ends the dead attempt with JobStalled(will_retry=true)
and runs the next attempt. An event of the dead attempt arriving late is rejected as StaleAttempt.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.messages import MessageType, new_message
from services.core.settings import Settings
from tests.integration.encoder_harness import (
    FAST,
    count_events,
    ffmpeg_processes,
    job_events,
    make_clip,
    new_job_id,
    queue_job,
    send,
    stage_course,
    start_encoder,
    wait_for,
)
from tests.integration.projector_harness import isolated, start_projector, stop

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    """Topics, schema and groups of this test only; a dead member is noticed within seconds."""
    with isolated(settings, partitions=2) as base:
        yield base.model_copy(
            update={"heartbeat_interval_s": 2, "session_timeout_ms": 6_000, "encoder_lease_s": 8}
        )


def test_kill_9_of_the_running_encoder_lets_the_other_finish_the_job(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=16)])
    logs = [tmp_path / "encoder-a.log", tmp_path / "encoder-b.log"]
    projector = start_projector(own)
    encoders = [start_encoder(own, log, **REALTIME) for log in logs]
    processes: list[subprocess.Popen[bytes]] = [projector, *encoders]
    try:
        time.sleep(8)  # both members joined and share the two partitions
        queue_job(own, manifest)
        wait_for(own, job_id, {"processing"}, 30, processes)
        time.sleep(4)  # well into the encode
        running = next(i for i, log in enumerate(logs) if count_events(log, "ffmpeg_started"))
        victim, survivor = encoders[running], encoders[1 - running]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        deadline = killed_at + 60
        while (
            job := wait_for(own, job_id, {"processing", "completed", "failed"}, 60, [survivor])
        ).attempt < 2:
            assert time.monotonic() < deadline, job
            time.sleep(0.25)
        # A late event of the dead attempt (one it had in flight) reaches the log while attempt 2 runs.
        late = new_message(
            MessageType.JOB_PROGRESS,
            job_id=job_id,
            attempt=1,
            data={"percent": 50.0, "step": "transcoding"},
            producer="encoder@dead",
        )
        send(own, own.events_topic, [late])
        done = wait_for(own, job_id, {"completed", "failed"}, 90, [projector, survivor])
        recovered_after = time.monotonic() - killed_at
        leftovers = ffmpeg_processes(f"coursecast-{job_id}-1-")
    finally:
        for process in processes:
            stop(process)

    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert ("JobStarted", 2, None) in events
    assert ("JobCompleted", 2, None) in events
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert ("JobProgress", 1, "StaleAttempt") in events  # the late event changed nothing
    assert count_events(logs[1 - running], "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert leftovers == []  # the dead encoder's ffmpeg did not outlive it
    assert recovered_after < 60


def test_sigterm_mid_encode_hands_the_job_to_the_next_encoder_without_waiting_for_the_lease(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = own.model_copy(update={"encoder_lease_s": 120})  # a dead-worker takeover would take 2 min
    job_id = new_job_id()
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=12)])
    first_log, second_log = tmp_path / "encoder-1.log", tmp_path / "encoder-2.log"
    projector = start_projector(own)
    first = start_encoder(own, first_log, **REALTIME)
    processes: list[subprocess.Popen[bytes]] = [projector, first]
    try:
        queue_job(own, manifest)
        wait_for(own, job_id, {"processing"}, 30, processes)
        time.sleep(3)
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        shutdown_s = time.monotonic() - stopped_at
        second = start_encoder(own, second_log, **REALTIME)
        processes.append(second)
        done = wait_for(own, job_id, {"completed", "failed"}, 60, [projector, second])
    finally:
        for process in processes:
            stop(process)
    assert shutdown_s < 10
    assert done.status.value == "completed"
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert ffmpeg_processes(f"coursecast-{job_id}-") == []
