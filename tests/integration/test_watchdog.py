"""G2 with no encoder left to speak for a job: the watchdog (a real faust worker) ends the attempt
explicitly, and requeues the job with its next command while attempts are left."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from services.core.jobs import JobState, JobStatus
from services.core.messages import Envelope, MessageType
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.encoder import REALTIME, queue_job
from tests.support.messages import event
from tests.support.observe import course_tasks, job_events
from tests.support.observe import wait_for as wait_for_job
from tests.support.projector import produce, running_projector
from tests.support.services import Process, running, wait_until
from tests.support.staging import staged_job
from tests.support.topics import commands_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

M = MessageType


pytestmark = pytest.mark.own(
    heartbeat_interval_s=1,
    stall_timeout_s=4,
    encode_time_limit_s=8,
    watchdog_interval_s=0.5,
    watchdog_time_limit_grace_s=0.0,
    watchdog_clock_skew_s=1.0,
)


@pytest.fixture
def store(own: Settings) -> Iterator[JobStore]:
    opened = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    with running_projector(own, opened):
        yield opened
    opened.close()


@pytest.fixture
def watchdog(own: Settings, tmp_path: Path) -> Iterator[Process]:
    with running(own, tmp_path) as run:
        yield run.watchdog()


def now_event(kind: MessageType, job: UUID, attempt: int = 1) -> Envelope:
    return event(kind, job, attempt, at=datetime.now(UTC))


def wait_for(
    store: JobStore, job: UUID, status: JobStatus, timeout_s: float = 90, attempt: int | None = None
) -> JobState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = store.job(job)
        if state is not None and state.status == status and attempt in (None, state.attempt):
            return state
        time.sleep(0.25)
    raise AssertionError(f"job {job} is {store.job(job)} after {timeout_s} s, not {status}")


def test_job_whose_worker_went_silent_is_requeued_with_its_next_command_and_a_live_one_is_left_alone(
    own: Settings, store: JobStore, watchdog: Process
) -> None:
    silent, alive = uuid4(), uuid4()
    produce(own, [now_event(M.JOB_QUEUED, j) for j in (silent, alive)])
    produce(own, [now_event(M.JOB_STARTED, j) for j in (silent, alive)])
    started = time.monotonic()
    # `alive` keeps reporting progress for longer than the stall timeout; `silent` says nothing.
    while time.monotonic() - started < 6:
        produce(own, [now_event(M.JOB_PROGRESS, alive)])
        time.sleep(1)
    produce(own, [now_event(M.JOB_COMPLETED, alive)])

    requeued = wait_for(store, silent, JobStatus.QUEUED, attempt=2)
    assert requeued.error_type == "stalled"
    assert requeued.error_message is not None
    assert "presumed dead" in requeued.error_message
    assert "attempt 2" in requeued.error_message
    # The verdict's command of attempt 2 exists (same transaction), so the job does not wait forever.
    assert [(c.type, c.attempt, c.producer) for c in commands_of(own, silent)] == [
        (M.PUBLISH_COURSE, 2, "watchdog")
    ]
    assert wait_for(store, alive, JobStatus.COMPLETED).error_type is None
    verdicts = store.connection.execute(
        "SELECT count(*) FROM job_events WHERE job_id = %s AND producer = 'watchdog'", (alive,)
    ).fetchone()
    assert verdicts == (0,), "the watchdog judged a job whose worker was speaking"
    assert commands_of(own, alive) == []
    assert watchdog.poll() is None


def test_job_past_its_time_limit_on_its_last_attempt_ends_failed_timeout_even_while_it_reports_progress(
    own: Settings, store: JobStore, tmp_path: Path
) -> None:
    last = own.model_copy(update={"max_attempts": 1})
    with running(last, tmp_path) as run:
        watchdog = run.watchdog()
        job = uuid4()
        produce(own, [now_event(M.JOB_QUEUED, job), now_event(M.JOB_STARTED, job)])
        deadline = time.monotonic() + 90
        state = store.job(job)
        while time.monotonic() < deadline and (state is None or state.status != JobStatus.FAILED):
            produce(own, [now_event(M.JOB_PROGRESS, job)])
            time.sleep(1)
            state = store.job(job)
        assert watchdog.poll() is None
    assert state is not None
    assert (state.status, state.error_type) == (JobStatus.FAILED, "timeout")
    assert state.error_message is not None
    assert "attempt 1 of 1" in state.error_message
    assert commands_of(own, job) == []


def last_progress_at(settings: Settings, job_id: UUID) -> datetime | None:
    """Event time of the latest JobProgress of the job or of one of its tasks (docs/fan-out.md) as the
    projector applied it."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        row = store.connection.execute(
            "SELECT max(occurred_at) FROM job_events WHERE type = 'JobProgress' AND (job_id = %(job)s"
            " OR job_id IN (SELECT job_id FROM publish_jobs WHERE course_job_id = %(job)s))",
            {"job": job_id},
        ).fetchone()
    finally:
        store.close()
    return row[0] if row else None


@pytest.mark.parametrize("pause", ["SIGSTOP", "restart", "kill-9"])
def test_a_watchdog_paused_past_the_stall_timeout_during_a_live_encode_judges_nothing_when_it_is_back(
    own: Settings, s3: S3Client, tmp_path: Path, pause: str
) -> None:
    live = own.model_copy(update={"encode_time_limit_s": 600, "encoder_lease_s": 30})
    job_id, manifest = staged_job(live, s3, tmp_path, seconds=20)
    with running(live, tmp_path) as run:
        projector = run.projector()
        watchdog = run.watchdog()
        encoder = run.encoder(**REALTIME)
        queue_job(live, manifest)
        wait_for_job(live, job_id, {"processing"}, 60, run.processes)
        wait_until("a first heartbeat", lambda: last_progress_at(live, job_id) is not None, 30, run.processes)
        if pause == "SIGSTOP":
            watchdog.send_signal(signal.SIGSTOP)  # stop resumes it, should the test fail meanwhile
        elif pause == "kill-9":
            run.kill(watchdog)
        else:
            run.stop(watchdog)
        paused_at = datetime.now(UTC)
        # The encoder keeps speaking while the watchdog hears nothing for longer than it may stay silent.
        silence = timedelta(seconds=live.stall_timeout_s + live.watchdog_clock_skew_s + 2)
        wait_until(
            "the encoder spoke for longer than the stall timeout while the watchdog was away",
            lambda: (last_progress_at(live, job_id) or paused_at) > paused_at + silence,
            60,
            [projector, encoder],
        )
        if pause == "SIGSTOP":
            watchdog.send_signal(signal.SIGCONT)
        else:
            watchdog = run.watchdog()
        done = wait_for_job(live, job_id, {"completed", "failed", "queued"}, 120, run.processes)
        assert watchdog.poll() is None
    assert (done.status.value, done.attempt) == ("completed", 1), (done.error_type, done.error_message)
    events = job_events(live, job_id)
    for task in course_tasks(live, job_id):
        events += job_events(live, task.job_id)
    assert [e for e in events if e[0] in ("JobStalled", "JobTimedOut")] == [], "a live worker was judged"
    assert [t for t, _, _ in events].count("JobCompleted") == 1
