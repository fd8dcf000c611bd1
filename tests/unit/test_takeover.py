"""A dead worker's attempt is closed once, and the job is never left queued without a command to run it.

These follow the log through the real state machine (`jobs.apply`) and ask the encoder's pure `decide`
what each delivered command does, for the sequences in which an encoder takeover and the watchdog's
verdict race, one of them is rejected, or a worker dies between requeuing a job and commanding it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from services.core.jobs import JobState, JobStatus, Rejection, StaleAttempt, apply
from services.core.messages import Envelope, MessageType, new_message
from services.core.payloads import JobStalled
from services.encoder.claims import Claim, Decision, JobView, Verdict, decide
from tests.support.messages import T0, event

M = MessageType
MAX = 3


def claim(
    job: UUID, attempt: int, state: str = "running", *, expired: bool = True, started: bool = True
) -> Claim:
    return Claim(job, attempt, attempt, "encoder@dead:1", state, started, None, datetime.now(UTC), expired)


def fold(events: list[Envelope]) -> tuple[JobState, list[Rejection]]:
    state: JobState | None = None
    rejections = []
    for e in events:
        outcome = apply(state, e)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            state = outcome
    assert state is not None
    return state, rejections


def view(state: JobState) -> JobView:
    return JobView(state.status, state.attempt, state.error_type)


def stalled(job: UUID, attempt: int, will_retry: bool, producer: str) -> Envelope:
    data = JobStalled(last_heartbeat_at=None, stall_timeout_s=300, will_retry=will_retry, message="silent")
    return new_message(data, job_id=job, attempt=attempt, producer=producer)


def started_job(job: UUID) -> list[Envelope]:
    return [event(M.JOB_QUEUED, job, at=T0), event(M.JOB_STARTED, job, at=T0)]


def test_a_takeover_that_loses_to_the_watchdog_is_rejected_and_the_next_attempt_runs_exactly_once() -> None:
    job = uuid4()
    # The watchdog requeued the job (verdict + PublishCourse(2) in one transaction) ...
    log = [*started_job(job), stalled(job, 1, True, "watchdog")]
    # ... while an encoder, reading a projector that had not applied it yet, took the dead claim over.
    lagging = JobView(JobStatus.PROCESSING, 1)
    takeover = decide(1, claim(job, 1), lagging, MAX)
    assert (takeover.verdict, takeover.attempt, takeover.next_attempt) == (Verdict.TAKE_OVER, 1, 2)
    # The takeover's JobStalled is a harmless rejection; its PublishCourse(2) is a duplicate.
    state, rejections = fold([*log, stalled(job, 1, True, "encoder@b:2")])
    assert (state.status, state.attempt) == (JobStatus.QUEUED, 2)
    assert [type(r) for r in rejections] == [StaleAttempt]
    # The claim of attempt 1 is now closed; of the two commands of attempt 2, one runs, one waits, then skips.
    closed = claim(job, 1, "done")
    first = decide(2, closed, view(state), MAX)
    assert (first.verdict, first.attempt) == (Verdict.RUN, 2)
    running = Claim(job, 2, 2, "encoder@c:3", "running", False, None, datetime.now(UTC), False)
    assert decide(2, running, view(state), MAX).verdict is Verdict.WAIT
    done = Claim(job, 2, 2, "encoder@c:3", "done", True, "completed", datetime.now(UTC), False)
    assert decide(2, done, JobView(JobStatus.COMPLETED, 2), MAX).verdict is Verdict.SKIP


def test_a_watchdog_verdict_that_loses_to_the_takeover_is_rejected_and_its_command_is_skipped() -> None:
    job = uuid4()
    takeover = decide(1, claim(job, 1), JobView(JobStatus.PROCESSING, 1), MAX)
    assert takeover.verdict is Verdict.TAKE_OVER
    state, rejections = fold(
        [*started_job(job), stalled(job, 1, True, "encoder@b:2"), stalled(job, 1, True, "watchdog")]
    )
    assert (state.status, state.attempt, len(rejections)) == (JobStatus.QUEUED, 2, 1)
    # The takeover's command of attempt 2 won the claim; the watchdog's copy finds it taken.
    ours = Claim(job, 2, 2, "encoder@b:2", "running", True, None, datetime.now(UTC), False)
    assert decide(2, ours, JobView(JobStatus.PROCESSING, 2), MAX).verdict is Verdict.WAIT


def test_the_command_of_a_requeued_attempt_runs_while_the_dead_workers_claim_is_still_open() -> None:
    job = uuid4()
    state, _ = fold([*started_job(job), stalled(job, 1, True, "watchdog")])
    decision = decide(2, claim(job, 1, expired=False), view(state), MAX)
    assert (decision.verdict, decision.attempt) == (Verdict.RUN, 2)


def test_a_job_requeued_by_a_worker_that_died_before_commanding_it_gets_its_command() -> None:
    # JobRetryScheduled(1) was acknowledged, then the worker died before the retry command was;
    # its claim stays open. The redelivered command of attempt 1 must not be skipped as stale.
    job = uuid4()
    retry = event(M.JOB_RETRY_SCHEDULED, job, at=T0)
    state, _ = fold([*started_job(job), retry])
    assert (state.status, state.attempt) == (JobStatus.QUEUED, 2)
    decision = decide(1, claim(job, 1), view(state), MAX)
    assert (decision.verdict, decision.attempt, decision.next_attempt) == (Verdict.REQUEUE, 1, 2)
    assert decision.stalled_attempt is None  # no JobStalled: the attempt has already ended
    # Once that claim is closed, the command of attempt 1 is stale and the command of 2 runs.
    assert decide(1, claim(job, 1, "done"), view(state), MAX).verdict is Verdict.SKIP
    assert decide(2, claim(job, 1, "done"), view(state), MAX).verdict is Verdict.RUN


def test_a_requeued_job_whose_claim_is_still_leased_waits_for_its_worker_to_close_it() -> None:
    job = uuid4()
    state, _ = fold([*started_job(job), event(M.JOB_RETRY_SCHEDULED, job, at=T0)])
    # The worker may be alive and about to produce the retry command itself: skipping this delivery
    # now would lose the only way to produce it should the worker die before it does.
    assert decide(1, claim(job, 1, expired=False), view(state), MAX).verdict is Verdict.WAIT


def test_a_dead_worker_on_the_last_attempt_fails_the_job_and_commands_nothing() -> None:
    job = uuid4()
    decision = decide(MAX, claim(job, MAX), JobView(JobStatus.PROCESSING, MAX), MAX)
    assert (decision.verdict, decision.next_attempt) == (Verdict.FAIL_STALLED, None)
    state, _ = fold(
        [
            *started_job(job)[:1],
            *_attempts_up_to(job, MAX),
            stalled(job, MAX, False, "encoder@b:2"),
        ]
    )
    assert (state.status, state.attempt, state.error_type) == (JobStatus.FAILED, MAX, "stalled")


def test_every_decision_that_requeues_names_the_command_it_produces() -> None:
    job = uuid4()
    for decision in (
        decide(1, claim(job, 1), JobView(JobStatus.PROCESSING, 1), MAX),
        decide(1, claim(job, 1), JobView(JobStatus.QUEUED, 2), MAX),
    ):
        assert isinstance(decision, Decision)
        assert decision.ends_dead_attempt
        assert decision.next_attempt == decision.attempt + 1


def _attempts_up_to(job: UUID, last: int) -> list[Envelope]:
    """JobStarted of each attempt, each earlier one requeued by a stall with a retry."""
    events = []
    for attempt in range(1, last + 1):
        events.append(event(M.JOB_STARTED, job, attempt=attempt, at=T0))
        if attempt < last:
            events.append(stalled(job, attempt, True, "watchdog"))
    return events


def test_a_job_requeued_by_a_stall_verdict_skips_the_stale_command_even_while_the_dead_lease_runs() -> None:
    # The verdict's command of attempt 2 exists (same transaction): nothing to wait for.
    job = uuid4()
    state, _ = fold([*started_job(job), stalled(job, 1, True, "watchdog")])
    assert decide(1, claim(job, 1, expired=False), view(state), MAX).verdict is Verdict.SKIP
    assert decide(1, claim(job, 1, expired=True), view(state), MAX).verdict is Verdict.REQUEUE
