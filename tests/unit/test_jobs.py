"""The job state machine: its transition table (docs/guarantees.md), its invariants, the seed incident."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.jobs import (
    IllegalTransition,
    JobState,
    JobStatus,
    Rejection,
    StaleAttempt,
    TerminalState,
    UnknownJob,
    apply,
)
from services.core.messages import EVENT_TYPES, Envelope, MessageType
from services.core.payloads import JobRetryRequested, JobStalled, JobTimedOut
from services.core.projection import Applied, Duplicate, InMemoryJobProjection, Rejected
from tests.support.messages import T0, event, timeline

M = MessageType


def run(*events: Envelope) -> InMemoryJobProjection:
    return InMemoryJobProjection().handle_all(events)


def only_job(projection: InMemoryJobProjection) -> JobState:
    (state,) = projection.jobs.values()
    return state


# --- the table, row by row -------------------------------------------------------------------


def test_queued_job_starts_processing_and_completes_with_outputs() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED)))
    assert state.status is JobStatus.COMPLETED
    assert state.completed_at == T0 + timedelta(minutes=3)
    assert state.started_at == T0 + timedelta(minutes=1)
    assert state.progress_percent == 100.0
    assert state.outputs is not None
    assert state.outputs.videos[0].master_playlist_url.endswith("master.m3u8")


def test_progress_updates_percent_and_step_while_processing() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS)))
    assert (state.status, state.progress_percent, state.current_step) == (
        JobStatus.PROCESSING,
        42.5,
        "transcoding",
    )


def test_permanent_failure_fails_the_job_with_its_reason() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_FAILED)))
    assert state.status is JobStatus.FAILED
    assert (state.error_type, state.error_message) == ("NoSuchKey", "The staged video is gone.")
    assert state.failed_at is not None
    assert state.completed_at is None


def test_transient_failure_requeues_the_job_as_the_next_attempt() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_RETRY_SCHEDULED)))
    assert (state.status, state.attempt) == (JobStatus.QUEUED, 2)
    assert state.error_type == "s3_unavailable"


def test_next_attempt_starts_and_clears_the_previous_error() -> None:
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_RETRY_SCHEDULED))
    projection.handle(event(M.JOB_STARTED, job, attempt=2, at=T0 + timedelta(hours=1)))
    state = only_job(projection)
    assert (state.status, state.attempt, state.error_type) == (JobStatus.PROCESSING, 2, None)


@pytest.mark.parametrize(
    ("verdict", "error_type"), [(M.JOB_STALLED, "stalled"), (M.JOB_TIMED_OUT, "timeout")]
)
def test_watchdog_verdict_without_retry_fails_the_job_explicitly(
    verdict: MessageType, error_type: str
) -> None:
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED))
    data: JobStalled | JobTimedOut = JobStalled(
        last_heartbeat_at=None, stall_timeout_s=300, will_retry=False, message="silent"
    )
    if verdict is M.JOB_TIMED_OUT:
        data = JobTimedOut(time_limit_s=14400, will_retry=False, message="silent")
    projection.handle(event(verdict, job, data=data))
    state = only_job(projection)
    assert (state.status, state.error_type, state.error_message) == (JobStatus.FAILED, error_type, "silent")


def test_stall_with_retry_requeues_the_next_attempt() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_STALLED)))
    assert (state.status, state.attempt, state.error_type) == (JobStatus.QUEUED, 2, "stalled")


@pytest.mark.parametrize("before", [(M.JOB_QUEUED,), (M.JOB_QUEUED, M.JOB_STARTED)])
def test_queued_or_processing_job_can_be_canceled(before: tuple[MessageType, ...]) -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, *before, M.JOB_CANCELED)))
    assert state.status is JobStatus.CANCELED
    assert state.canceled_at is not None


def test_owner_retry_of_a_failed_job_opens_the_next_attempt() -> None:
    job = uuid4()
    state = only_job(run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_FAILED, M.JOB_RETRY_REQUESTED)))
    assert (state.status, state.attempt, state.failed_at, state.error_type) == (
        JobStatus.QUEUED,
        2,
        None,
        None,
    )


# --- rejections ------------------------------------------------------------------------------


def test_seed_incident_redelivered_run_cannot_fail_a_completed_job() -> None:
    """Incident 1: a completed job ran again, hit NoSuchKey and was overwritten to failed."""
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED))
    completed_at = only_job(projection).completed_at
    late = T0 + timedelta(hours=3)
    redelivered_start = projection.handle(event(M.JOB_STARTED, job, at=late))
    redelivered_failure = projection.handle(event(M.JOB_FAILED, job, at=late + timedelta(seconds=1)))
    state = only_job(projection)
    assert state.status is JobStatus.COMPLETED
    assert state.completed_at == completed_at
    assert state.error_type is None
    for handled in (redelivered_start, redelivered_failure):
        assert isinstance(handled, Rejected)
        assert isinstance(handled.rejection, TerminalState)
        assert "ended" in handled.rejection.reason
    assert [r.event.type for r in projection.rejected] == [M.JOB_STARTED, M.JOB_FAILED]


def test_late_completion_of_a_stale_attempt_is_rejected() -> None:
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_RETRY_SCHEDULED))
    projection.handle(event(M.JOB_STARTED, job, attempt=2))
    handled = projection.handle(event(M.JOB_COMPLETED, job, attempt=1))
    assert isinstance(handled, Rejected)
    assert isinstance(handled.rejection, StaleAttempt)
    assert "attempt 1" in handled.rejection.reason
    assert "attempt 2" in handled.rejection.reason
    assert only_job(projection).status is JobStatus.PROCESSING


def test_event_for_a_job_never_queued_is_rejected_as_unknown() -> None:
    outcome = apply(None, event(M.JOB_STARTED, uuid4()))
    assert isinstance(outcome, UnknownJob)


def test_second_start_of_the_same_attempt_is_an_illegal_transition() -> None:
    """Two encoders cannot both claim one attempt: the log accepts the first JobStarted only."""
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED))
    handled = projection.handle(event(M.JOB_STARTED, job))
    assert isinstance(handled, Rejected)
    assert isinstance(handled.rejection, IllegalTransition)


def test_retry_that_skips_an_attempt_is_an_illegal_transition() -> None:
    job = uuid4()
    projection = run(*timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_FAILED))
    handled = projection.handle(
        event(M.JOB_RETRY_REQUESTED, job, data=JobRetryRequested(requested_by="instructor-1", next_attempt=3))
    )
    assert isinstance(handled, Rejected)
    assert isinstance(handled.rejection, IllegalTransition)
    assert only_job(projection).status is JobStatus.FAILED


def test_same_event_delivered_twice_is_a_noop_not_a_rejection() -> None:
    job = uuid4()
    queued, started = timeline(job, M.JOB_QUEUED, M.JOB_STARTED)
    projection = run(queued, started)
    before = only_job(projection)
    assert projection.handle(started) == Duplicate(started.event_id)
    assert only_job(projection) == before
    assert projection.rejected == []


# --- invariants over any log -----------------------------------------------------------------

JOB_IDS = (UUID(int=1), UUID(int=2))
# Every event type, with the ones that move a job forward weighted up.
EVENT_KINDS = [
    *sorted(EVENT_TYPES),
    *[M.JOB_QUEUED, M.JOB_STARTED] * 3,
    *[M.JOB_COMPLETED, M.JOB_FAILED, M.JOB_RETRY_SCHEDULED, M.JOB_RETRY_REQUESTED] * 2,
]


@st.composite
def logs(draw: st.DrawFn) -> list[Envelope]:
    """Any sequence of job events, in any order, with duplicates and attempts 1–3."""
    events: list[Envelope] = []
    # A shadow projection steers most events to the job's current attempt, so that logs reach deep
    # states (completed, retried twice) instead of being mostly rejections.
    shadow = InMemoryJobProjection()
    for i in range(draw(st.integers(min_value=1, max_value=60))):
        if events and draw(st.integers(min_value=0, max_value=5)) == 0:
            message = draw(st.sampled_from(events))
        else:
            job = draw(st.sampled_from(JOB_IDS))
            kind = MessageType(draw(st.sampled_from(EVENT_KINDS)))
            current = shadow.jobs[job].attempt if job in shadow.jobs else 1
            attempt = draw(st.sampled_from((current, current, current, 1, 2, 3)))
            message = event(kind, job, attempt, at=T0 + timedelta(seconds=i))
        shadow.handle(message)
        events.append(message)
    return events


def assert_invariants(state: JobState) -> None:
    assert (state.completed_at is not None) == (state.status is JobStatus.COMPLETED)
    assert (state.failed_at is not None) == (state.status is JobStatus.FAILED)
    assert (state.canceled_at is not None) == (state.status is JobStatus.CANCELED)
    if state.status is JobStatus.PROCESSING:
        assert state.started_at is not None
    if state.status is JobStatus.QUEUED:
        assert state.started_at is None
    if state.status is JobStatus.FAILED:
        assert state.error_type
        assert state.error_message
    assert state.attempt >= 1
    assert 0.0 <= state.progress_percent <= 100.0


@settings(max_examples=400, deadline=None)
@given(logs())
def test_any_log_leaves_every_job_in_a_state_that_keeps_the_invariants(log: list[Envelope]) -> None:
    projection = InMemoryJobProjection()
    for message in log:
        before = projection.jobs.get(message.job_id)
        handled = projection.handle(message)
        after = projection.jobs.get(message.job_id)
        if isinstance(handled, Duplicate | Rejected):
            assert after == before, "a duplicate or a rejection changed a job"
        if isinstance(handled, Applied):
            assert after is not None
            assert_invariants(after)
            if before is not None:
                assert before.status not in (JobStatus.COMPLETED, JobStatus.CANCELED), (
                    "a terminal job changed"
                )
                assert after.attempt in (before.attempt, before.attempt + 1)


@settings(max_examples=300, deadline=None)
@given(logs())
def test_duplicates_change_nothing_the_log_without_them_would_not(log: list[Envelope]) -> None:
    seen: set[UUID] = set()
    first_occurrences = []
    for message in log:
        if message.event_id not in seen:
            seen.add(message.event_id)
            first_occurrences.append(message)
    with_duplicates = InMemoryJobProjection().handle_all(log)
    without = InMemoryJobProjection().handle_all(first_occurrences)
    assert with_duplicates.jobs == without.jobs
    assert with_duplicates.rejected == without.rejected


@settings(max_examples=300, deadline=None)
@given(logs())
def test_replaying_a_log_rebuilds_an_identical_table(log: list[Envelope]) -> None:
    assert InMemoryJobProjection().handle_all(log).jobs == InMemoryJobProjection().handle_all(log).jobs


def test_rejection_names_are_the_ones_the_projector_stores() -> None:
    assert {cls("why").name for cls in (TerminalState, StaleAttempt, UnknownJob, IllegalTransition)} == {
        "TerminalState",
        "StaleAttempt",
        "UnknownJob",
        "IllegalTransition",
    }
    assert issubclass(TerminalState, Rejection)


# --- tasks (docs/fan-out.md) --------------------------------------------------------------------


def task_event(kind: MessageType, task_id: UUID, course: UUID | None, attempt: int = 1) -> Envelope:
    base = event(kind, task_id, attempt)
    return Envelope(
        event_id=base.event_id,
        job_id=task_id,
        attempt=attempt,
        occurred_at=base.occurred_at,
        producer="test",
        data=base.data,
        course_job_id=course,
    )


def test_a_task_is_born_by_task_queued_naming_its_course_and_completes_with_its_result() -> None:
    task, course = uuid4(), uuid4()
    queued = apply(None, task_event(M.TASK_QUEUED, task, course))
    assert isinstance(queued, JobState)
    assert (queued.status, queued.attempt, queued.course_job_id, queued.is_task) == (
        JobStatus.QUEUED,
        1,
        course,
        True,
    )
    running = apply(queued, task_event(M.JOB_STARTED, task, course))
    assert isinstance(running, JobState)
    # A task completes with TaskCompleted, never with a course's JobCompleted.
    assert isinstance(apply(running, task_event(M.JOB_COMPLETED, task, course)), IllegalTransition)
    done = apply(running, task_event(M.TASK_COMPLETED, task, course))
    assert isinstance(done, JobState)
    assert done.status == JobStatus.COMPLETED
    assert done.completed_at is not None
    assert done.task_result is not None
    # Ended: a redelivered run's events, and a stale attempt's, change nothing.
    assert isinstance(apply(done, task_event(M.JOB_FAILED, task, course)), TerminalState)


def test_a_task_without_its_course_or_sent_under_another_id_is_refused() -> None:
    task = uuid4()
    assert isinstance(apply(None, task_event(M.TASK_QUEUED, task, None)), IllegalTransition)
    assert isinstance(apply(None, task_event(M.TASK_QUEUED, task, task)), IllegalTransition)
    other = task_event(M.TASK_QUEUED, uuid4(), uuid4())
    moved = Envelope(other.event_id, task, 1, other.occurred_at, "test", other.data, other.course_job_id)
    assert isinstance(apply(None, moved), IllegalTransition)


def test_a_task_of_a_stale_attempt_is_rejected_like_a_jobs() -> None:
    task, course = uuid4(), uuid4()
    state = run(
        task_event(M.TASK_QUEUED, task, course),
        task_event(M.JOB_STARTED, task, course),
        task_event(M.JOB_STALLED, task, course),  # will_retry: the task is queued as attempt 2
    ).jobs[task]
    assert (state.status, state.attempt) == (JobStatus.QUEUED, 2)
    assert isinstance(apply(state, task_event(M.TASK_COMPLETED, task, course, attempt=1)), StaleAttempt)


def test_a_course_is_planned_and_publishes_each_lecture_once_but_a_task_has_no_plan() -> None:
    course = uuid4()
    state = run(*timeline(course, M.JOB_QUEUED, M.JOB_STARTED, M.COURSE_PLANNED)).jobs[course]
    assert [lecture.title for lecture in state.lectures] == ["Limit"]
    published = apply(state, event(M.LECTURE_PUBLISHED, course))
    assert isinstance(published, JobState)
    again = apply(published, event(M.LECTURE_PUBLISHED, course))
    assert isinstance(again, JobState)
    assert [v.video_index for v in again.published] == [0]  # replaced, not added
    task = uuid4()
    running = run(task_event(M.TASK_QUEUED, task, course), task_event(M.JOB_STARTED, task, course)).jobs[task]
    assert isinstance(apply(running, task_event(M.COURSE_PLANNED, task, course)), IllegalTransition)
    assert isinstance(apply(running, task_event(M.LECTURE_PUBLISHED, task, course)), IllegalTransition)
