"""The two production incidents (docs/reliability.md), replayed against the encoder as acceptance tests.

Long encodes are made cheap on the shared 2-core machine honestly: the clip is small (320x180) and
the encoder reads it at its native frame rate (COURSECAST_ENCODER_REALTIME_INPUT, ffmpeg `-re`), so
a 42 s clip takes at least 42 s of wall time to encode while using little CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.encoder import REALTIME, encoder_runs_job, queue_job, send
from tests.support.observe import (
    count_events,
    course_tasks,
    ffmpeg_processes,
    job_events,
    log_lines,
    longest_silence_s,
    wait_for,
)
from tests.support.services import running
from tests.support.staging import staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only, with short liveness settings.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(partitions=2, heartbeat_interval_s=5, session_timeout_ms=6_000),
]


def test_incident_1_redelivered_command_never_reruns_or_overwrites_a_completed_job(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    # The Redis visibility timeout of the incident, in Kafka terms: a member that does not poll for
    # 10 s is evicted. The encode takes at least 40 s, so polling must go on while ffmpeg runs.
    own = own.model_copy(update={"max_poll_interval_ms": 10_000})
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=42, name="loops.mp4")
    log = tmp_path / "encoder.log"
    with running(own, tmp_path) as run:
        run.projector()
        encoder = run.encoder(**REALTIME)
        command = queue_job(own, manifest)
        started = time.monotonic()
        wait_for(own, job_id, {"processing"}, 30, run.processes)
        time.sleep(12)  # past max.poll.interval.ms into the encode
        send(own, own.commands_topic, [command] * 5)  # redelivered during the encode
        done = wait_for(own, job_id, {"completed", "failed"}, 120, run.processes)
        encode_s = time.monotonic() - started
        assert done.status.value == "completed", (done.error_type, done.error_message)
        send(own, own.commands_topic, [command] * 5)  # right after completion
        _wait_log(log, "command_skipped", 10, 30)
        run.stop(encoder)
        # Later, and to a fresh encoder process: the staging manifest is gone by now (NoSuchKey in
        # the incident), and the command must still be acknowledged as a duplicate, not run.
        later = tmp_path / "encoder-later.log"
        run.encoder("encoder-later", **REALTIME)
        time.sleep(3)
        send(own, own.commands_topic, [command] * 5)
        _wait_log(later, "command_skipped", 5, 30)
        final = wait_for(own, job_id, {"completed", "failed"}, 10, run.processes)

    assert encode_s >= 40
    assert final.status.value == "completed"
    assert final.completed_at == done.completed_at
    assert final.error_type is None
    assert count_events(log, "ffmpeg_started", what="video 'loops.mp4'") == 1  # one encode
    assert count_events(later, "ffmpeg_started") == 0
    assert count_events(log, "command_skipped") + count_events(later, "command_skipped") == 15
    events = job_events(own, job_id)
    assert [t for t, _, _ in events].count("JobStarted") == 1
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert all(rejection is None for _, _, rejection in events)
    # The course's attempt only planned; the encode was its one task (docs/fan-out.md), which ran once.
    (task,) = course_tasks(own, job_id)
    task_types = [t for t, _, _ in job_events(own, task.job_id)]
    assert (task.status.value, task.attempt) == ("completed", 1)
    assert (task_types.count("JobStarted"), task_types.count("TaskCompleted")) == (1, 1)
    # G2: the running task spoke at least every heartbeat interval (5 s here), with a little slack.
    assert longest_silence_s(own, task.job_id, 1) <= 5 + 2
    # No rebalance moved the job: the first encoder was assigned each topic once (a group per topic:
    # the commands and the retry topic) and revoked nothing before the job ended.
    lines = log_lines(log)
    messages = [line["message"] for line in lines]
    assert messages.count("revoked") == 0 or messages.index("revoked") > messages.index(
        "attempt ended: completed"
    )
    assigned = [line["partitions"] for line in lines if line["message"] == "assigned"]
    topics = sorted({name.rsplit("[", 1)[0] for partitions in assigned for name in partitions})
    assert (len(assigned), topics) == (2, sorted([own.commands_topic, own.commands_retry_topic]))


def test_incident_2_time_limit_fails_the_job_with_a_reason_and_leaves_no_ffmpeg(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = own.model_copy(update={"encode_time_limit_s": 5, "heartbeat_interval_s": 2})
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=32, name="long.mp4")
    log = tmp_path / "encoder.log"
    with running(own, tmp_path) as run:
        run.projector()
        encoder_runs_job(run, manifest, 30, **REALTIME)
        started = time.monotonic()
        job = wait_for(own, job_id, {"completed", "failed", "canceled"}, 5 + 15, run.processes)
        ended_after = time.monotonic() - started
        leftovers = ffmpeg_processes(str(job_id))
    assert job.status.value == "failed"
    assert job.error_type == "timeout"
    assert job.error_message is not None
    assert "time limit of 5 s" in job.error_message
    assert job.completed_at is None
    assert ended_after <= 5 + 15
    assert leftovers == []
    assert count_events(log, "ffmpeg_stopped", reason="timeout") == 1


def _wait_log(log: Path, event: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count_events(log, event) >= count:
            return
        time.sleep(0.25)
    raise AssertionError(f"{count} x {event} not logged within {timeout_s} s: {count_events(log, event)}")
