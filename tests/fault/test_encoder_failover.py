"""G1/G2 under a crash: kill -9 the encoder running a task; the task is retried and the course completes.

Under fan-out (docs/fan-out.md) what an encoder runs for minutes is a task's attempt: the course's
attempt only plans it (here a one-lecture course, so one `lecture` task). The survivor receives the
partition after the session timeout, re-reads the uncommitted task command, finds the dead worker's
claim lease expired, ends the dead attempt with JobStalled(will_retry=true) and the next attempt's
EncodeTask in one transaction, and runs that command. With only one encoder, the watchdog does the
same when the worker's silence passes the stall timeout: a new encoder then runs attempt 2 with no
one's click. Whichever of the two comes first, the other's JobStalled is a harmless rejection and its
command a duplicate the claims skip. An event of the dead attempt arriving late is rejected as
StaleAttempt. The course itself is planned once and completed once, by the conductor.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from services.core.jobs import JobState
from services.core.manifest import StagingManifest
from services.core.messages import new_message
from services.core.payloads import JobProgress, ProgressStep
from services.core.settings import Settings
from tests.support.encoder import REALTIME, encoder_runs_job, queue_job, send
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import (
    count_events,
    ffmpeg_processes,
    job_events,
    logged,
    wait_for,
    wait_for_lecture_task,
)
from tests.support.services import Process, Services, running, wait_until
from tests.support.staging import staged_job
from tests.support.topics import commands_of, messages_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; a dead member is noticed within seconds.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_LIVENESS, encoder_lease_s=8)]


def role(producer: str) -> str:
    """Who produced a message, without the host and pid: "test", "conductor", "watchdog", "encoder"."""
    return producer.split("@", 1)[0]


def task_running(own: Settings, run: Services, job_id: UUID, timeout_s: float = 60) -> JobState:
    """The course's one task once an encoder runs it (the course's attempt has planned it)."""
    task = wait_for_lecture_task(own, job_id, 0, timeout_s, run.processes)
    return wait_for(own, task.job_id, {"processing"}, timeout_s, run.processes)


def encoding_task(log: Path) -> int:
    """How many times the encoder logging to `log` started the lecture's transcode (a task's work)."""
    return count_events(log, "ffmpeg_started", what="video 'lecture.mp4'")


def assert_course_completed_once(own: Settings, job_id: UUID) -> None:
    """The course's own trace: planned once by its attempt 1, its lecture published and its
    completion once, whatever its task went through."""
    course = [
        (t, a) for t, a, rejection in job_events(own, job_id) if rejection is None and t != "JobProgress"
    ]
    assert course == [
        ("JobQueued", 1),
        ("JobStarted", 1),
        ("CoursePlanned", 1),
        ("LecturePublished", 1),
        ("JobCompleted", 1),
    ]
    assert [(c.attempt, role(c.producer)) for c in commands_of(own, job_id)] == [(1, "test")]


def test_kill_9_of_the_encoder_running_a_task_lets_the_other_finish_it_and_the_course(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=16)
    with running(own, tmp_path) as run:
        projector = run.projector()
        encoders = [run.encoder(name, **REALTIME) for name in ("encoder-a", "encoder-b")]
        logs = [run.log("encoder-a"), run.log("encoder-b")]
        wait_until(
            "both members joined and share the two partitions",
            lambda: all(logged(log, message="assigned") for log in logs),
            60,
            run.processes,
        )
        queue_job(own, manifest)
        task = task_running(own, run, job_id)
        wait_until(
            "the task's transcode runs", lambda: any(encoding_task(log) for log in logs), 60, run.processes
        )
        running_index = next(i for i, log in enumerate(logs) if encoding_task(log))
        victim, survivor = encoders[running_index], encoders[1 - running_index]
        run.kill(victim)
        killed_at = time.monotonic()
        wait_until(
            "the task's attempt 2 runs or ran",
            lambda: (
                wait_for(own, task.job_id, {"queued", "processing", "completed", "failed"}, 30).attempt >= 2
            ),
            60,
            [survivor],
        )
        # A late event of the dead attempt (one it had in flight) reaches the log while attempt 2 runs.
        late = new_message(
            JobProgress(percent=50.0, step=ProgressStep.TRANSCODING),
            job_id=task.job_id,
            attempt=1,
            producer="encoder@dead",
            course_job_id=job_id,
        )
        send(own, own.events_topic, [late])
        done = wait_for(own, job_id, {"completed", "failed"}, 90, [projector, survivor])
        recovered_after = time.monotonic() - killed_at
        task = wait_for(own, task.job_id, {"completed", "failed"}, 30, [projector])
        leftovers = ffmpeg_processes(f"coursecast-{task.job_id}-1-")
        wait_until(
            "the late event is stored",
            lambda: ("JobProgress", 1, "StaleAttempt") in job_events(own, task.job_id),
            30,
            [projector],
        )

    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2), (task.error_type, task.error_message)
    events = job_events(own, task.job_id)
    assert ("JobStalled", 1, None) in events
    assert ("JobStarted", 2, None) in events
    assert ("TaskCompleted", 2, None) in events
    assert [t for t, _, _ in events].count("TaskCompleted") == 1
    assert ("JobProgress", 1, "StaleAttempt") in events  # the late event changed nothing
    assert_course_completed_once(own, job_id)
    assert encoding_task(logs[1 - running_index]) == 1
    assert leftovers == []  # the dead encoder's ffmpeg did not outlive it
    assert recovered_after < 60


def test_sigterm_mid_task_hands_it_to_the_next_encoder_without_waiting_for_the_lease(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = own.model_copy(update={"encoder_lease_s": 120})  # a dead-worker takeover would take 2 min
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        projector = run.projector()
        first = encoder_runs_job(run, manifest, 30, "encoder-1", **REALTIME)
        task = task_running(own, run, job_id)
        wait_until("the task's transcode runs", lambda: encoding_task(run.log("encoder-1")) > 0, 60, [first])
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        shutdown_s = time.monotonic() - stopped_at
        second = run.encoder("encoder-2", **REALTIME)
        done = wait_for(own, job_id, {"completed", "failed"}, 60, [projector, second])
        task = wait_for(own, task.job_id, {"completed", "failed"}, 30, [projector])
    assert shutdown_s < 10
    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2)
    events = job_events(own, task.job_id)
    assert ("JobStalled", 1, None) in events
    assert [t for t, _, _ in events].count("TaskCompleted") == 1
    assert_course_completed_once(own, job_id)
    assert ffmpeg_processes(f"coursecast-{task.job_id}-") == []


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


def watched_task_running(run: Services, manifest: StagingManifest) -> tuple[Process, JobState]:
    """A projector, a watchdog and encoder-1 running the course's task; returns encoder-1 and the task."""
    run.projector()
    run.watchdog()
    encoder = encoder_runs_job(run, manifest, 60, "encoder-1", **REALTIME)
    return encoder, task_running(run.settings, run, manifest.job_id)


def kill_mid_encode(run: Services, encoder: Process, own: Settings, task_id: UUID, log: Path) -> None:
    """Wait until the task's ffmpeg runs and the task has reported progress, then kill -9 the encoder."""
    wait_until("ffmpeg started", lambda: encoding_task(log) > 0, 60, [encoder])
    wait_until(
        "progress reported",
        lambda: any(t == "JobProgress" for t, _, _ in job_events(own, task_id)),
        60,
        [encoder],
    )
    run.kill(encoder)


def test_kill_9_of_the_only_encoder_mid_task_is_retried_as_attempt_2_when_a_new_encoder_starts(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = watched(own)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first, task = watched_task_running(run, manifest)
        kill_mid_encode(run, first, own, task.job_id, run.log("encoder-1"))
        # The watchdog requeues the task as attempt 2, with its command; nobody clicks anything.
        requeued = wait_for(own, task.job_id, {"queued", "failed"}, 60, run.processes)
        run.encoder("encoder-2", **REALTIME)
        done = wait_for(own, job_id, {"completed", "failed"}, 120, run.processes)
        task = wait_for(own, task.job_id, {"completed", "failed"}, 30, run.processes)
        leftovers = ffmpeg_processes(f"coursecast-{task.job_id}-1-")

    assert (requeued.status.value, requeued.attempt, requeued.error_type) == ("queued", 2, "stalled")
    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2), (task.error_type, task.error_message)
    events = job_events(own, task.job_id)
    assert ("JobStalled", 1, None) in events
    assert [e for e in events if e[0] == "JobStarted" and e[2] is None] == [
        ("JobStarted", 1, None),
        ("JobStarted", 2, None),
    ]
    assert [t for t, _, _ in events].count("TaskCompleted") == 1
    assert [(c.attempt, role(c.producer)) for c in commands_of(own, task.job_id)] == [
        (1, "conductor"),
        (2, "watchdog"),
    ]
    assert_course_completed_once(own, job_id)
    assert encoding_task(run.log("encoder-2")) == 1
    assert leftovers == []


def test_a_killed_encoder_on_a_tasks_last_attempt_fails_it_and_the_course_stalled_with_a_clear_message(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    own = watched(own, max_attempts=1)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first, task = watched_task_running(run, manifest)
        kill_mid_encode(run, first, own, task.job_id, run.log("encoder-1"))
        failed = wait_for(own, task.job_id, {"queued", "failed"}, 60, run.processes)
        course = wait_for(own, job_id, {"completed", "failed"}, 60, run.processes)
        # A new encoder re-reads the task's command of attempt 1: the task has failed, so it does nothing.
        second = run.encoder("encoder-2", **REALTIME)
        wait_until(
            "the new encoder skipped the failed task's command",
            lambda: count_events(run.log("encoder-2"), "command_skipped", job_id=str(task.job_id)) > 0,
            60,
            [second],
        )

    assert (failed.status.value, failed.attempt, failed.error_type) == ("failed", 1, "stalled")
    assert failed.error_message is not None
    assert "presumed dead" in failed.error_message
    assert "attempt 1 of 1" in failed.error_message
    # The course fails with its lecture's reason, once (the conductor's JobFailed).
    assert (course.status.value, course.attempt, course.error_type) == ("failed", 1, "stalled")
    assert course.error_message is not None
    assert failed.error_message in course.error_message
    assert [t for t, _, rejection in job_events(own, job_id) if rejection is None].count("JobFailed") == 1
    assert [(c.attempt, role(c.producer)) for c in commands_of(own, task.job_id)] == [(1, "conductor")]
    assert [(c.attempt, role(c.producer)) for c in commands_of(own, job_id)] == [(1, "test")]
    assert count_events(run.log("encoder-2"), "ffmpeg_started") == 0


def test_a_takeover_whose_task_stalled_is_rejected_still_runs_the_next_attempt_exactly_once(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    """The watchdog requeues the task first; an encoder reading a lagging projector (paused here)
    takes the dead claim over anyway. Its JobStalled is rejected, its command of attempt 2 is a
    duplicate: attempt 2 runs once and completes; the task is never left queued."""
    own = watched(own, encoder_lease_s=8)
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        first, task = watched_task_running(run, manifest)
        projector, watchdog = run.processes[:2]
        wait_until(
            "progress reported",
            lambda: any(t == "JobProgress" for t, _, _ in job_events(own, task.job_id)),
            60,
            run.processes,
        )
        projector.send_signal(signal.SIGSTOP)  # the status table now lags the log (stop resumes it)
        kill_mid_encode(run, first, own, task.job_id, run.log("encoder-1"))
        wait_until(
            "the watchdog's verdict is on the log",
            lambda: any(
                role(m.producer) == "watchdog" for m in messages_of(own, own.events_topic, task.job_id)
            ),
            60,
            [watchdog],
        )
        second = run.encoder("encoder-2", **REALTIME)
        wait_until(
            "the new encoder took the dead attempt over from the stale status table",
            lambda: any(
                m.type == "JobStalled" and role(m.producer) == "encoder"
                for m in messages_of(own, own.events_topic, task.job_id)
            ),
            90,
            [second],
        )
        projector.send_signal(signal.SIGCONT)
        done = wait_for(own, job_id, {"completed", "failed"}, 120, run.processes)
        task = wait_for(own, task.job_id, {"completed", "failed"}, 30, run.processes)

    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2), (task.error_type, task.error_message)
    events = job_events(own, task.job_id)
    stalls = [e for e in events if e[0] == "JobStalled"]
    assert stalls == [("JobStalled", 1, None), ("JobStalled", 1, "StaleAttempt")]
    assert [e for e in events if e[0] == "JobStarted"] == [("JobStarted", 1, None), ("JobStarted", 2, None)]
    assert [t for t, _, _ in events].count("TaskCompleted") == 1
    commands = [(c.attempt, c.producer) for c in commands_of(own, task.job_id)]
    assert sorted(a for a, _ in commands) == [1, 2, 2]  # the watchdog's and the takeover's
    assert_course_completed_once(own, job_id)
    assert encoding_task(run.log("encoder-2")) == 1
