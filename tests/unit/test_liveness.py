"""The watchdog's judgement: silence past the stall timeout, or a run past the time limit, ends explicitly."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from services.core import codec
from services.core.messages import MessageType, new_message
from services.projector.liveness import Running, judge, observe
from tests.unit.job_events import T0, event

M = MessageType
STALL, LIMIT, GRACE = 300.0, 14_400.0, 120.0


def running_after(*kinds_and_offsets: tuple[MessageType, int]) -> Running | None:
    job = uuid4()
    state = None
    for kind, seconds in kinds_and_offsets:
        state = observe(state, event(kind, job, at=T0 + timedelta(seconds=seconds)))
    return state


def test_started_attempt_silent_past_the_stall_timeout_is_judged_stalled_with_a_readable_reason() -> None:
    running = running_after((M.JOB_QUEUED, 0), (M.JOB_STARTED, 1))
    assert running is not None
    verdict = judge(running, T0 + timedelta(seconds=1 + STALL + 1), STALL, LIMIT, GRACE)
    assert verdict is not None
    assert verdict.type is M.JOB_STALLED
    assert verdict.data["will_retry"] is False
    assert "presumed dead" in verdict.data["message"]


def test_heartbeats_keep_an_attempt_alive() -> None:
    running = running_after((M.JOB_STARTED, 0), (M.JOB_PROGRESS, 250), (M.JOB_PROGRESS, 500))
    assert running is not None
    assert judge(running, T0 + timedelta(seconds=700), STALL, LIMIT, GRACE) is None


def test_events_of_another_attempt_are_no_sign_of_life() -> None:
    job = uuid4()
    state = observe(None, event(M.JOB_STARTED, job, attempt=2, at=T0))
    state = observe(state, event(M.JOB_PROGRESS, job, attempt=1, at=T0 + timedelta(seconds=400)))
    assert state is not None
    assert state.last_seen_at == T0


def test_an_ended_attempt_is_never_judged() -> None:
    for ending in (M.JOB_COMPLETED, M.JOB_FAILED, M.JOB_CANCELED, M.JOB_RETRY_SCHEDULED, M.JOB_STALLED):
        assert running_after((M.JOB_STARTED, 0), (ending, 5)) is None


def test_attempt_past_its_time_limit_and_grace_is_judged_timed_out() -> None:
    beats = [(M.JOB_PROGRESS, s) for s in range(0, int(LIMIT + GRACE) + 60, 30)]
    running = running_after((M.JOB_STARTED, 0), *beats)
    assert running is not None
    verdict = judge(running, T0 + timedelta(seconds=LIMIT + GRACE + 30), STALL, LIMIT, GRACE)
    assert verdict is not None
    assert verdict.type is M.JOB_TIMED_OUT
    assert "limit" in verdict.data["message"]


def test_a_judged_attempt_gets_no_second_verdict() -> None:
    running = Running(1, T0, T0, judged=True)
    assert judge(running, T0 + timedelta(days=1), STALL, LIMIT, GRACE) is None


def test_verdicts_are_valid_messages_of_the_contract() -> None:
    running = Running(3, T0, T0)
    for now in (T0 + timedelta(seconds=STALL + 1), T0 + timedelta(seconds=LIMIT + GRACE + 1)):
        verdict = judge(running, now, STALL, LIMIT, GRACE)
        assert verdict is not None
        message = new_message(
            verdict.type, job_id=uuid4(), attempt=verdict.attempt, data=verdict.data, producer="watchdog"
        )
        assert codec.decode(codec.encode(message)) == message


def test_liveness_survives_its_table_round_trip() -> None:
    running = Running(2, T0, T0 + timedelta(seconds=5), judged=False)
    assert Running.from_json(running.to_json()) == running
