"""The watchdog's judgement: silence past the stall timeout, or a run past the time limit, ends explicitly,
and the retry policy requeues the job (with its next command) until the last allowed attempt."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from services.core import codec
from services.core.jobs import JobStatus
from services.core.messages import MessageType, new_message
from services.core.payloads import JobQueued
from services.core.projection import InMemoryJobProjection
from services.core.settings import Settings
from services.watchdog.liveness import Policy, Running, Tracked, judge, observe
from services.watchdog.worker import verdict_messages
from tests.support.messages import T0, data_for, event

M = MessageType
POLICY = Policy(stall_timeout_s=300.0, time_limit_s=14_400.0, grace_s=120.0, clock_skew_s=5.0, max_attempts=3)
STALL, LIMIT, GRACE, SKEW = POLICY.stall_timeout_s, POLICY.time_limit_s, POLICY.grace_s, POLICY.clock_skew_s


def tracked_after(*kinds_and_offsets: tuple[MessageType, int], attempt: int = 1) -> Tracked | None:
    job = uuid4()
    state = None
    for kind, seconds in kinds_and_offsets:
        state = observe(state, event(kind, job, attempt=attempt, at=T0 + timedelta(seconds=seconds)))
    return state


def running_of(tracked: Tracked | None) -> Running:
    assert tracked is not None
    assert tracked.running is not None
    return tracked.running


def test_started_attempt_silent_past_the_stall_timeout_is_judged_stalled_with_a_readable_reason() -> None:
    tracked = tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 1))
    assert tracked is not None
    verdict = judge(tracked, T0 + timedelta(seconds=1 + STALL + SKEW + 1), POLICY)
    assert verdict is not None
    assert verdict.type is M.JOB_STALLED
    assert "presumed dead" in verdict.data.message


def test_silence_within_the_clock_skew_margin_is_not_yet_a_stall() -> None:
    tracked = tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 0))
    assert tracked is not None
    assert judge(tracked, T0 + timedelta(seconds=STALL + SKEW - 1), POLICY) is None


def test_a_stalled_attempt_with_attempts_left_is_requeued_with_its_next_command() -> None:
    job = uuid4()
    tracked = observe(None, event(M.JOB_QUEUED, job, at=T0))
    tracked = observe(tracked, event(M.JOB_STARTED, job, at=T0))
    assert tracked is not None
    verdict = judge(tracked, T0 + timedelta(seconds=STALL + SKEW + 1), POLICY)
    assert verdict is not None
    assert verdict.data.will_retry is True
    assert "attempt 2" in verdict.data.message
    batch = verdict_messages(_settings(), job, verdict)
    (events_topic, stalled), (commands_topic, command) = batch
    assert (events_topic, commands_topic) == ("events", "commands")
    assert (stalled.type, stalled.attempt, command.type, command.attempt) == (
        M.JOB_STALLED,
        1,
        M.PUBLISH_COURSE,
        2,
    )
    queued = data_for(M.JOB_QUEUED, 1, job)
    assert isinstance(queued, JobQueued)
    assert command.data == queued.publish_command()
    for _, message in batch:  # both are valid messages of the contract
        assert codec.decode(codec.encode(message)) == message


def test_the_verdict_moves_the_state_machine_to_the_next_attempt_queued() -> None:
    job = uuid4()
    log = [event(M.JOB_QUEUED, job, at=T0), event(M.JOB_STARTED, job, at=T0)]
    tracked = None
    for e in log:
        tracked = observe(tracked, e)
    assert tracked is not None
    verdict = judge(tracked, T0 + timedelta(seconds=STALL + SKEW + 1), POLICY)
    assert verdict is not None
    stalled, _command = verdict_messages(_settings(), job, verdict)
    state = InMemoryJobProjection().handle_all([*log, stalled[1]]).jobs[job]
    assert (state.status, state.attempt, state.error_type) == (JobStatus.QUEUED, 2, "stalled")


def test_the_last_allowed_attempt_fails_the_job_without_a_command() -> None:
    job = uuid4()
    tracked = observe(None, event(M.JOB_QUEUED, job, at=T0))
    tracked = observe(tracked, event(M.JOB_STARTED, job, attempt=3, at=T0))
    assert tracked is not None
    for now in (T0 + timedelta(seconds=STALL + SKEW + 1), T0 + timedelta(seconds=LIMIT + GRACE + SKEW + 1)):
        verdict = judge(tracked, now, POLICY)
        assert verdict is not None
        assert verdict.data.will_retry is False
        assert verdict.retry is None
        assert "attempt 3 of 3" in verdict.data.message
        assert [m.type for _, m in verdict_messages(_settings(), job, verdict)] == [verdict.type]


def test_a_job_whose_command_is_unknown_is_failed_rather_than_requeued_without_one() -> None:
    tracked = Tracked(None, Running(1, T0, T0))
    verdict = judge(tracked, T0 + timedelta(seconds=STALL + SKEW + 1), POLICY)
    assert verdict is not None
    assert (verdict.data.will_retry, verdict.retry) == (False, None)


def test_heartbeats_keep_an_attempt_alive() -> None:
    tracked = tracked_after((M.JOB_STARTED, 0), (M.JOB_PROGRESS, 250), (M.JOB_PROGRESS, 500))
    assert tracked is not None
    assert judge(tracked, T0 + timedelta(seconds=700), POLICY) is None


def test_events_of_another_attempt_are_no_sign_of_life() -> None:
    job = uuid4()
    state = observe(None, event(M.JOB_STARTED, job, attempt=2, at=T0))
    state = observe(state, event(M.JOB_PROGRESS, job, attempt=1, at=T0 + timedelta(seconds=400)))
    assert running_of(state).last_seen_at == T0


def test_an_ended_attempt_is_never_judged() -> None:
    for ending in (M.JOB_FAILED, M.JOB_RETRY_SCHEDULED, M.JOB_STALLED, M.JOB_TIMED_OUT):
        tracked = tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 0), (ending, 5))
        assert tracked is not None
        assert tracked.running is None
        assert judge(tracked, T0 + timedelta(days=1), POLICY) is None


def test_a_completed_or_canceled_job_is_forgotten() -> None:
    for ending in (M.JOB_COMPLETED, M.JOB_CANCELED):
        assert tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 0), (ending, 5)) is None


def test_the_watchdogs_own_verdict_does_not_end_the_attempt_it_judged() -> None:
    # The watchdog reads uncommitted records: an aborted verdict must leave the attempt to judge again.
    job = uuid4()
    tracked = observe(None, event(M.JOB_QUEUED, job, at=T0))
    tracked = observe(tracked, event(M.JOB_STARTED, job, at=T0))
    verdict = new_message(data_for(M.JOB_STALLED, 1, job), job_id=job, attempt=1, producer="watchdog")
    assert observe(tracked, verdict) == tracked
    retried = observe(tracked, event(M.JOB_STARTED, job, attempt=2, at=T0 + timedelta(seconds=400)))
    assert running_of(retried).attempt == 2


def test_attempt_past_its_time_limit_and_grace_is_judged_timed_out() -> None:
    beats = [(M.JOB_PROGRESS, s) for s in range(0, int(LIMIT + GRACE + SKEW) + 60, 30)]
    tracked = tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 0), *beats)
    assert tracked is not None
    verdict = judge(tracked, T0 + timedelta(seconds=LIMIT + GRACE + SKEW + 30), POLICY)
    assert verdict is not None
    assert verdict.type is M.JOB_TIMED_OUT
    assert verdict.data.will_retry is True
    assert "limit" in verdict.data.message


def test_a_silent_attempt_also_past_its_time_limit_is_judged_stalled_not_timed_out() -> None:
    # A watchdog that judges late (restarted, lagging) finds both thresholds passed; the worker said
    # nothing since it started, so it is presumed dead rather than told it "did not stop".
    tracked = tracked_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 0))
    assert tracked is not None
    verdict = judge(tracked, T0 + timedelta(seconds=LIMIT + GRACE + SKEW + 30), POLICY)
    assert verdict is not None
    assert verdict.type is M.JOB_STALLED
    assert "presumed dead" in verdict.data.message


def test_liveness_survives_its_table_round_trip() -> None:
    queued = data_for(M.JOB_QUEUED, 1, uuid4())
    assert isinstance(queued, JobQueued)
    tracked = Tracked(queued.publish_command(), Running(2, T0, T0 + timedelta(seconds=5)))
    assert Tracked.from_json(tracked.to_json()) == tracked
    assert Tracked.from_json({**tracked.to_json(), "partition": 3}) == tracked
    # A row written before the command was kept still reads.
    assert Tracked.from_json(Running(1, T0, T0).to_json()) == Tracked(None, Running(1, T0, T0))


def _settings() -> Settings:
    return Settings(events_topic="events", commands_topic="commands")
