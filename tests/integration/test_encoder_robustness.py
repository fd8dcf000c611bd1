"""The encoder under faults of its own dependencies (issue 8): a dropped Postgres connection, ffmpeg
killed by SIGKILL, a completion the log rejects, and a crash between a cancel and its claim."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
import pytest

from devtools.demo import coursecast
from services.core.faults import ENV_VAR as FAULT_POINT
from services.core.jobs import JobState
from services.core.manifest import staging_prefix
from services.core.messages import MessageType, new_message
from services.core.payloads import JobFailed, JobRetryRequested
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.encoder import FAST, REALTIME, cancel, encoder_runs_job, publish_command, queue_job, send
from tests.support.encoder_checks import wait_drained
from tests.support.fixtures import QUICK_RETRY
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
from tests.support.staging import make_clip, new_job_id, stage_course, staged_job, staged_jobs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; a short lease, heartbeat and retry back-off.
# These tests check when a job's staging may be deleted (never before its end is applied, never after a
# rejected end). Without source retention a completed job's staging goes as soon as its completion is
# applied, like a canceled job's; the retention itself: test_encoder.py, test_source_retention.py.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(partitions=1, **QUICK_RETRY, encoder_lease_s=9, source_retention_days=0),
]


def _until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout_s} s")


def _only_task(settings: Settings, course_job_id: UUID, timeout_s: float = 60) -> JobState:
    """The one task of a one-lecture course up to COURSECAST_CHUNK_S (docs/fan-out.md), once planned."""
    _until(lambda: course_tasks(settings, course_job_id) or None, timeout_s, "the course was not planned")
    (task,) = course_tasks(settings, course_job_id)
    return task


def _terminate_backends(settings: Settings, pid: int) -> int:
    """pg_terminate_backend of every connection the encoder process `pid` holds; returns how many."""
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"coursecast-encoder-%:{pid}",),
        ).fetchall()
    return sum(1 for (terminated,) in rows if terminated)


def _staged_keys(settings: Settings, s3: S3Client, job_id: UUID) -> int:
    return int(
        s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=staging_prefix(job_id)).get("KeyCount", 0)
    )


def _event_data(settings: Settings, job_id: UUID, type_: str) -> list[dict[str, Any]]:
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        rows = store.connection.execute(
            "SELECT data FROM job_events WHERE job_id = %s AND type = %s ORDER BY kafka_offset",
            (job_id, type_),
        ).fetchall()
    finally:
        store.close()
    return [row[0] for row in rows]


def _without_internals(message: str, encoder: subprocess.Popen[bytes]) -> None:
    for internal in ("/tmp", "coursecast-", socket.gethostname(), f":{encoder.pid}", "Traceback", "Error:"):
        assert internal not in message, (internal, message)


def test_a_job_completes_once_when_postgres_drops_the_encoders_connections_mid_encode(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, next_job = new_job_id(), new_job_id()
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=16)])
    next_manifest = stage_course(own, s3, next_job, [make_clip(tmp_path / "short.mp4", seconds=2)])
    log = tmp_path / "encoder.log"
    terminated = []
    with running(own, tmp_path) as run:
        encoder = run.encoder(**REALTIME)
        run.projector()
        queue_job(own, manifest)
        # The course's attempt only plans; the encode is its one task (docs/fan-out.md).
        task = _only_task(own, job_id)
        wait_for(own, task.job_id, {"processing"}, 60, run.processes)
        # Twice, a lease interval apart: the heartbeat's, the runner's and the main connection die.
        for _ in range(2):
            time.sleep(3)
            terminated.append(_terminate_backends(own, encoder.pid))
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, run.processes)
        # The main thread's connection died in the first round too: the next command still runs.
        queue_job(own, next_manifest)
        after = wait_for(own, next_job, {"completed", "failed", "canceled"}, 90, run.processes)

    assert all(count >= 1 for count in terminated), terminated
    assert after.status.value == "completed", (after.error_type, after.error_message)
    messages = {line.get("message") for line in log_lines(log)}
    assert "claim connection lost before the final event; reconnecting" in messages
    assert "claims database unreachable; delivery deferred" in messages
    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    course_types = [t for t, _, _ in job_events(own, job_id)]
    assert course_types.count("JobCompleted") == 1
    assert course_types.count("JobStarted") == 1
    # The task the connections were dropped under ran once, on its first attempt, with no verdict.
    events = job_events(own, task.job_id)
    types = [t for t, _, _ in events]
    assert types.count("TaskCompleted") == 1
    assert types.count("JobStarted") == 1
    for verdict in ("JobStalled", "JobRetryScheduled", "JobFailed", "JobTimedOut"):
        assert verdict not in types + course_types
    assert all(rejection is None for _, _, rejection in events + job_events(own, job_id))
    # The heartbeat hit the dropped connection, reconnected, and kept the lease: no gap near it.
    assert any(line.get("message") == "lease not renewed; reconnecting" for line in log_lines(log))
    assert longest_silence_s(own, task.job_id, 1) < own.encoder_lease_s


def test_ffmpeg_killed_by_sigkill_is_retried_with_backoff_and_completes_on_attempt_2(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=10)
    log = tmp_path / "encoder.log"
    with running(own, tmp_path) as run:
        run.projector()
        encoder = encoder_runs_job(run, manifest, **REALTIME)
        # The lecture is one task (docs/fan-out.md): its ffmpeg names the task's work folder.
        (task,) = _until(lambda: course_tasks(own, job_id) or None, 60, "the course was not planned")
        pids = _until(lambda: ffmpeg_processes(str(task.job_id)), 60, "the task's ffmpeg did not start")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, run.processes)
        (task,) = course_tasks(own, job_id)

    # The task was retried as its attempt 2; the course completed on its first attempt.
    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2)
    events = job_events(own, task.job_id)
    assert ("JobRetryScheduled", 1, None) in events
    assert ("TaskCompleted", 2, None) in events
    assert [t for t, _, _ in events].count("TaskCompleted") == 1
    assert "JobFailed" not in [t for t, _, _ in events]
    assert [t for t, _, _ in job_events(own, job_id)].count("JobCompleted") == 1
    (retry,) = _event_data(own, task.job_id, MessageType.JOB_RETRY_SCHEDULED)
    assert retry["error_type"] == "encoder_interrupted"
    assert retry["delay_s"] >= own.retry_backoff_base_s
    _without_internals(retry["message"], encoder)
    assert count_events(log, "ffmpeg_killed") >= 1
    # The retried attempt ran from the course's staging files (kept while the course ran); without
    # source retention (this module), the conductor deletes them once the course's completion is read.
    _until(lambda: _staged_keys(own, s3, job_id) == 0 or None, 30, "staging not deleted")


def test_a_failed_jobs_message_names_no_worker_path_host_or_raw_error(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    whole = make_clip(tmp_path / "whole.mp4", seconds=4).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])  # the index, at the end, is lost
    manifest = stage_course(own, s3, job_id, [cut])
    log = tmp_path / "encoder.log"
    with running(own, tmp_path) as run:
        run.projector()
        encoder = run.encoder(**FAST)
        queue_job(own, manifest)
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 60, run.processes)

    assert done.status.value == "failed"
    assert done.error_type == "invalid_media"
    assert done.error_message is not None
    assert "'cut.mp4'" in done.error_message
    _without_internals(done.error_message, encoder)
    (failed,) = _event_data(own, job_id, MessageType.JOB_FAILED)
    _without_internals(failed["message"], encoder)
    # The detail is not lost: the encoder's log has the tool's own words.
    assert any(line.get("detail") for line in log_lines(log) if line.get("error_type") == "invalid_media")
    # A failed job keeps its staging files: the owner's retry runs from them.
    assert _staged_keys(own, s3, job_id) > 0


def test_a_courses_staging_is_deleted_once_its_completion_is_applied_and_kept_when_it_ends_failed(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    manifests = {manifest.job_id: manifest for manifest in staged_jobs(own, s3, tmp_path, 2, seconds=8)}
    applied, failed = manifests
    conductor_log = tmp_path / "conductor.log"
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**REALTIME)
        queue_job(own, manifests[applied])
        done = wait_for(own, applied, {"completed", "failed", "canceled"}, 90, run.processes)
        assert done.status.value == "completed", (done.error_type, done.error_message)
        # The conductor ends the course; it deletes the staging once it reads the completion back.
        _until(lambda: _staged_keys(own, s3, applied) == 0 or None, 30, "applied: staging not deleted")

        queue_job(own, manifests[failed])
        task = _only_task(own, failed)
        wait_for(own, task.job_id, {"processing"}, 60, run.processes)
        # Mid-encode, the log ends the course another way (as a time-limit verdict would): the course
        # fails, the conductor cancels its task, and no completion of it is ever accepted.
        verdict = new_message(
            JobFailed(error_type="timed_out", message="The course took too long.", retryable=True),
            job_id=failed,
            attempt=1,
            producer="another-process",
        )
        send(own, own.events_topic, [verdict])
        final = wait_for(own, failed, {"failed", "completed", "canceled"}, 30, run.processes)
        wait_for(own, task.job_id, {"canceled", "completed", "failed"}, 90, run.processes)
        wait_drained(own, 60, run.processes)

    assert final.status.value == "failed"
    assert "JobCompleted" not in [t for t, _, _ in job_events(own, failed)]
    # A failed course keeps its sources: the owner's retry plans again from them.
    assert _staged_keys(own, s3, failed) > 0
    assert count_events(conductor_log, "staging_deleted", job_id=str(applied)) == 1
    assert count_events(conductor_log, "staging_deleted", job_id=str(failed)) == 0


def test_a_crash_after_jobcanceled_is_acknowledged_but_before_the_claim_is_done_ends_the_course_canceled(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    # A long back-off keeps the task's attempt 2 waiting on the retry topic, so the course's cancel
    # finds it planned with no encoder running anything: the main consumer ends the course
    # (consumer._cancel_idle_job) and dies there, JobCanceled acknowledged, its claim not closed.
    slow_retry = own.model_copy(update={"retry_backoff_base_s": 20.0})
    job_id, manifest = staged_job(slow_retry, s3, tmp_path, seconds=10)
    second_log = tmp_path / "encoder-2.log"
    with running(slow_retry, tmp_path) as run:
        projector = run.projector()
        first = encoder_runs_job(
            run, manifest, 60, "encoder-1", **REALTIME, **{FAULT_POINT: "encoder.cancel_acked"}
        )
        task = _only_task(slow_retry, job_id)
        pids = _until(lambda: ffmpeg_processes(str(task.job_id)), 60, "the task's ffmpeg did not start")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        retrying = wait_for(slow_retry, task.job_id, {"queued"}, 60, [projector, first])
        assert retrying.attempt == 2
        cancel(slow_retry, job_id)
        assert first.wait(60) == -signal.SIGKILL  # died at the fault point
        second = run.encoder("encoder-2", **REALTIME)
        done = wait_for(slow_retry, job_id, {"canceled", "completed", "failed"}, 60, [projector, second])
        # The conductor cancels the queued task; the due retry command then finds it ended.
        wait_for(slow_retry, task.job_id, {"canceled"}, 60, [projector, second])
        _until(
            lambda: count_events(second_log, "command_skipped", job_id=str(task.job_id)),
            90,
            "the task's retry command was not skipped",
        )
        _until(lambda: _staged_keys(slow_retry, s3, job_id) == 0 or None, 30, "staging not deleted")

    assert done.status.value == "canceled"
    types = [t for t, _, _ in job_events(slow_retry, job_id)]
    assert types.count("JobCanceled") == 1
    assert types.count("JobStarted") == 1
    assert "JobCompleted" not in types
    task_types = [t for t, _, _ in job_events(slow_retry, task.job_id)]
    assert task_types.count("JobStarted") == 1  # the task's attempt 2 never ran
    assert task_types.count("JobCanceled") == 1
    assert all(rejection is None for _, _, rejection in job_events(slow_retry, job_id))
    assert count_events(second_log, "ffmpeg_started") == 0


def test_a_completed_courses_retained_staging_is_swept_only_once_the_completion_is_applied(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    # The services retain sources for a day, so the conductor leaves the completed course's staging
    # in place; the sweep runs with a retention of 0 (as it would once the day is over).
    retaining = own.model_copy(update={"source_retention_days": 1})
    # The second is an upload whose job never reached the log.
    manifest, never_queued_manifest = staged_jobs(own, s3, tmp_path, 2, seconds=2)
    done_later, never_queued = manifest.job_id, never_queued_manifest.job_id
    conductor_log = tmp_path / "conductor.log"
    # No projector yet: the course completes on the log, but publish_jobs does not show it.
    with running(retaining, tmp_path) as run:
        run.encoder(**FAST)
        queue_job(own, manifest)
        _until(
            lambda: count_events(conductor_log, "sources_retained", job_id=str(done_later)),
            90,
            "the conductor did not complete the course",
        )
        early = coursecast(own, "staging", "sweep")
        assert _staged_keys(own, s3, done_later) > 0  # not applied yet: the sweep keeps it
        run.projector()
        wait_for(own, done_later, {"completed"}, 60, run.processes)
        sweep = coursecast(own, "staging", "sweep")

    assert "swept 0 staging folder" in early.stdout
    assert _staged_keys(own, s3, done_later) == 0
    assert _staged_keys(own, s3, never_queued) > 0
    assert "swept 1 staging folder" in sweep.stdout
    assert count_events(conductor_log, "staging_deleted") == 0


@pytest.mark.parametrize("ending", ["completed", "canceled"])
def test_a_crash_after_a_tasks_final_event_is_acknowledged_but_before_its_claim_is_done_duplicates_nothing(
    own: Settings, s3: S3Client, tmp_path: Path, ending: str
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=6)
    second_log = tmp_path / "encoder-2.log"
    # The course's planning attempt reaches the point first; the task's attempt, second.
    crash = {FAULT_POINT: "encoder.final_events_acked:2"}
    with running(own, tmp_path) as run:
        projector = run.projector()
        first = encoder_runs_job(run, manifest, 60, "encoder-1", **REALTIME, **crash)
        task = _only_task(own, job_id)
        if ending == "canceled":
            wait_for(own, task.job_id, {"processing"}, 60, [projector, first])
            cancel(own, job_id)  # the task's watcher sees its course's cancel and stops ffmpeg
        assert first.wait(90) == -signal.SIGKILL  # died with the task's final event on the log
        ended = wait_for(own, task.job_id, {"canceled", "completed", "failed"}, 60, [projector])
        second = run.encoder("encoder-2", **REALTIME)
        done = wait_for(own, job_id, {"canceled", "completed", "failed"}, 60, [projector, second])
        # The redelivered task command (its offset was never committed) finds the task ended.
        _until(
            lambda: count_events(second_log, "command_skipped", job_id=str(task.job_id)),
            90,
            "the redelivered command was not skipped",
        )
        _until(lambda: _staged_keys(own, s3, job_id) == 0 or None, 30, "staging not deleted")
        final = wait_for(own, job_id, {"canceled", "completed", "failed"}, 10, [projector, second])
        final_task = wait_for(own, task.job_id, {"canceled", "completed", "failed"}, 10, [projector])

    assert ended.status.value == ending
    assert (done.status.value, final.status.value, final_task.status.value) == (ending, ending, ending)
    task_types = [t for t, _, _ in job_events(own, task.job_id)]
    assert task_types.count("JobStarted") == 1
    assert task_types.count("TaskCompleted") + task_types.count("JobCanceled") == 1
    course_events = job_events(own, job_id)
    types = [t for t, _, _ in course_events]
    assert types.count("JobStarted") == 1
    assert types.count("JobCompleted") + types.count("JobCanceled") == 1
    assert all(rejection is None for _, _, rejection in course_events)
    assert all(rejection is None for _, _, rejection in job_events(own, task.job_id))
    assert count_events(second_log, "ffmpeg_started") == 0


def test_a_failed_course_keeps_its_staging_and_the_owners_retry_completes_from_it(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    one_attempt = own.model_copy(update={"max_attempts": 1})
    job_id, manifest = staged_job(one_attempt, s3, tmp_path, seconds=8)
    with running(one_attempt, tmp_path) as run:
        run.projector()
        encoder_runs_job(run, manifest, **REALTIME)
        task = _only_task(one_attempt, job_id)
        pids = _until(lambda: ffmpeg_processes(str(task.job_id)), 60, "the task's ffmpeg did not start")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        failed = wait_for(one_attempt, job_id, {"failed", "completed"}, 60, run.processes)
        failed_task = wait_for(one_attempt, task.job_id, {"failed", "completed"}, 10, run.processes)
        staged_after_failure = _staged_keys(one_attempt, s3, job_id)
        # The owner retries, as the api's POST /v1/jobs/{id}/retry does: both messages, attempt 2.
        requested = new_message(
            JobRetryRequested(requested_by="instructor-1", next_attempt=2),
            job_id=job_id,
            attempt=1,
            producer="test",
        )
        send(one_attempt, one_attempt.events_topic, [requested])
        send(one_attempt, one_attempt.commands_topic, [publish_command(manifest, attempt=2)])
        done = wait_for(one_attempt, job_id, {"completed"}, 90, run.processes)
        _until(lambda: _staged_keys(one_attempt, s3, job_id) == 0 or None, 30, "staging not deleted")
        (retried,) = course_tasks(one_attempt, job_id)

    assert (failed_task.status.value, failed_task.error_type) == ("failed", "encoder_interrupted")
    assert (failed.status.value, failed.error_type) == ("failed", "encoder_interrupted")
    assert failed.error_message is not None
    assert "you can retry" in failed.error_message
    assert staged_after_failure > 0
    assert (done.status.value, done.attempt) == ("completed", 2), (done.error_type, done.error_message)
    # The retry re-ran the failed task (the same task, its next attempt) from the kept sources.
    assert (retried.job_id, retried.status.value, retried.attempt) == (task.job_id, "completed", 2)
