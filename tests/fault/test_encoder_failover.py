"""G1/G2 under a crash: kill -9 the encoder running a job; the job is retried and completes.

The survivor receives the partition after the session timeout, re-reads the uncommitted command,
finds the dead worker's claim lease expired, ends the dead attempt with JobStalled(will_retry=true)
and the next attempt's PublishCourse in one transaction, and runs that command. With only one encoder,
the watchdog does the same when the worker's silence passes the stall timeout: a new encoder then
runs attempt 2 with no one's click. Whichever of the two comes first, the other's JobStalled is a
harmless rejection and its command a duplicate the claims skip. An event of the dead attempt arriving
late is rejected as StaleAttempt.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from services.core.manifest import StagingManifest
from services.core.messages import new_message
from services.core.payloads import JobProgress, ProgressStep
from services.core.settings import Settings
from tests.support.encoder import REALTIME, encoder_runs_job, queue_job, send
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, ffmpeg_processes, job_events, wait_for
from tests.support.services import Process, Services, running, wait_until
from tests.support.staging import staged_job
from tests.support.topics import commands_of, messages_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; a dead member is noticed within seconds.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_LIVENESS, encoder_lease_s=8)]


def test_kill_9_of_the_running_encoder_lets_the_other_finish_the_job(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=16)
    with running(own, tmp_path) as run:
        projector = run.projector()
        encoders = [run.encoder(name, **REALTIME) for name in ("encoder-a", "encoder-b")]
        logs = [run.log("encoder-a"), run.log("encoder-b")]
        time.sleep(8)  # both members joined and share the two partitions
        queue_job(own, manifest)
        wait_for(own, job_id, {"processing"}, 30, run.processes)
        time.sleep(4)  # well into the encode
        running_index = next(i for i, log in enumerate(logs) if count_events(log, "ffmpeg_started"))
        victim, survivor = encoders[running_index], encoders[1 - running_index]
        run.kill(victim)
        killed_at = time.monotonic()
        deadline = killed_at + 60
        while (
            job := wait_for(own, job_id, {"processing", "completed", "failed"}, 60, [survivor])
        ).attempt < 2:
            assert time.monotonic() < deadline, job
            time.sleep(0.25)
        # A late event of the dead attempt (one it had in flight) reaches the log while attempt 2 runs.
        late = new_message(
            JobProgress(percent=50.0, step=ProgressStep.TRANSCODING),
            job_id=job_id,
            attempt=1,
            producer="encoder@dead",
        )
        send(own, own.events_topic, [late])
        done = wait_for(own, job_id, {"completed", "failed"}, 90, [projector, survivor])
        recovered_after = time.monotonic() - killed_at
        leftovers = ffmpeg_processes(f"coursecast-{job_id}-1-")

    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert ("JobStarted", 2, None) in events
    assert ("JobCompleted", 2, None) in events
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert ("JobProgress", 1, "StaleAttempt") in events  # the late event changed nothing
    assert count_events(logs[1 - running_index], "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert leftovers == []  # the dead encoder's ffmpeg did not outlive it
    assert recovered_after < 60


def test_sigterm_mid_encode_hands_the_job_to_the_next_encoder_without_waiting_for_the_lease(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = own.model_copy(update={"encoder_lease_s": 120})  # a dead-worker takeover would take 2 min
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        projector = run.projector()
        first = encoder_runs_job(run, manifest, 30, "encoder-1", **REALTIME)
        time.sleep(3)
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        shutdown_s = time.monotonic() - stopped_at
        second = run.encoder("encoder-2", **REALTIME)
        done = wait_for(own, job_id, {"completed", "failed"}, 60, [projector, second])
    assert shutdown_s < 10
    assert done.status.value == "completed"
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert ffmpeg_processes(f"coursecast-{job_id}-") == []


def watched(own: Settings, **update: object) -> Settings:
    """Settings under which the watchdog judges a dead worker within seconds (lease well beyond)."""
    return own.model_copy(
        update={
            "heartbeat_interval_s": 1,
            "stall_timeout_s": 4,
            "watchdog_interval_s": 0.5,
            "watchdog_clock_skew_s": 1.0,
            "encoder_lease_s": 60,
            **update,
        }
    )


def watched_job_running(run: Services, manifest: StagingManifest) -> Process:
    """A projector, a watchdog and encoder-1 running the job; returns encoder-1."""
    run.projector()
    run.watchdog()
    return encoder_runs_job(run, manifest, 60, "encoder-1", **REALTIME)


def kill_mid_encode(run: Services, encoder: Process, own: Settings, job_id: UUID, log: Path) -> None:
    """Wait until ffmpeg runs and the job has reported progress, then kill -9 the encoder."""
    wait_until("ffmpeg started", lambda: count_events(log, "ffmpeg_started") > 0, 60, [encoder])
    wait_until(
        "progress reported",
        lambda: any(t == "JobProgress" for t, _, _ in job_events(own, job_id)),
        60,
        [encoder],
    )
    run.kill(encoder)


def test_kill_9_of_the_only_encoder_is_retried_as_attempt_2_when_a_new_encoder_starts(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = watched(own)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first = watched_job_running(run, manifest)
        kill_mid_encode(run, first, own, job_id, run.log("encoder-1"))
        # The watchdog requeues the job as attempt 2, with its command; nobody clicks anything.
        requeued = wait_for(own, job_id, {"queued", "failed"}, 60, run.processes)
        run.encoder("encoder-2", **REALTIME)
        done = wait_for(own, job_id, {"completed", "failed"}, 120, run.processes)
        leftovers = ffmpeg_processes(f"coursecast-{job_id}-1-")

    assert (requeued.status.value, requeued.attempt, requeued.error_type) == ("queued", 2, "stalled")
    assert (done.status.value, done.attempt) == ("completed", 2), (done.error_type, done.error_message)
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert [e for e in events if e[0] == "JobStarted" and e[2] is None] == [
        ("JobStarted", 1, None),
        ("JobStarted", 2, None),
    ]
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    assert [(c.attempt, c.producer) for c in commands_of(own, job_id)] == [(1, "test"), (2, "watchdog")]
    assert count_events(run.log("encoder-2"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert leftovers == []


def test_a_killed_encoder_on_the_last_allowed_attempt_ends_the_job_failed_stalled_with_a_clear_message(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = watched(own, max_attempts=1)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first = watched_job_running(run, manifest)
        kill_mid_encode(run, first, own, job_id, run.log("encoder-1"))
        failed = wait_for(own, job_id, {"queued", "failed"}, 60, run.processes)
        # A new encoder re-reads the command of attempt 1: the job has failed, so it does nothing.
        second = run.encoder("encoder-2", **REALTIME)
        wait_until(
            "the new encoder skipped the failed job's command",
            lambda: count_events(run.log("encoder-2"), "command_skipped") > 0,
            60,
            [second],
        )

    assert (failed.status.value, failed.attempt, failed.error_type) == ("failed", 1, "stalled")
    assert failed.error_message is not None
    assert "presumed dead" in failed.error_message
    assert "attempt 1 of 1" in failed.error_message
    assert [(c.attempt, c.producer) for c in commands_of(own, job_id)] == [(1, "test")]
    assert count_events(run.log("encoder-2"), "ffmpeg_started") == 0


def test_a_takeover_whose_job_stalled_is_rejected_still_runs_the_next_attempt_exactly_once(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    """The watchdog requeues the job first; an encoder reading a lagging projector (paused here)
    takes the dead claim over anyway. Its JobStalled is rejected, its command of attempt 2 is a
    duplicate: attempt 2 runs once and completes; the job is never left queued."""
    own = watched(own, encoder_lease_s=8)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first = watched_job_running(run, manifest)
        projector, watchdog = run.processes[:2]
        wait_until(
            "progress reported",
            lambda: any(t == "JobProgress" for t, _, _ in job_events(own, job_id)),
            60,
            run.processes,
        )
        projector.send_signal(signal.SIGSTOP)  # the status table now lags the log (stop resumes it)
        kill_mid_encode(run, first, own, job_id, run.log("encoder-1"))
        wait_until(
            "the watchdog's verdict is on the log",
            lambda: any(m.producer == "watchdog" for m in messages_of(own, own.events_topic, job_id)),
            60,
            [watchdog],
        )
        second = run.encoder("encoder-2", **REALTIME)
        wait_until(
            "the new encoder took the dead attempt over from the stale status table",
            lambda: any(
                m.type == "JobStalled" and m.producer.startswith("encoder@")
                for m in messages_of(own, own.events_topic, job_id)
            ),
            90,
            [second],
        )
        projector.send_signal(signal.SIGCONT)
        done = wait_for(own, job_id, {"completed", "failed"}, 120, run.processes)

    assert (done.status.value, done.attempt) == ("completed", 2), (done.error_type, done.error_message)
    events = job_events(own, job_id)
    stalls = [e for e in events if e[0] == "JobStalled"]
    assert stalls == [("JobStalled", 1, None), ("JobStalled", 1, "StaleAttempt")]
    assert [e for e in events if e[0] == "JobStarted"] == [("JobStarted", 1, None), ("JobStarted", 2, None)]
    assert [t for t, _, _ in events].count("JobCompleted") == 1
    commands = [(c.attempt, c.producer) for c in commands_of(own, job_id)]
    assert sorted(a for a, _ in commands) == [1, 2, 2]  # the watchdog's and the takeover's
    assert count_events(run.log("encoder-2"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
