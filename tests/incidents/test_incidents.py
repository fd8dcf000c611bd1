"""The seed's two production incidents, replayed on a Celery + Redis replica of the old design and on
CourseCast: the replica must break exactly as production did, and CourseCast must not.

Opt-in (`pytest -m incidents tests/incidents`): it installs redis-server and the [incidents] extra
when they are missing (bench/incidents/setup.sh). `python -m bench incidents` prints the same figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.incidents.figures import StoppedEncodeFigures
from bench.incidents.run import ensure_installed
from services.core.settings import Settings
from tests.support.staging import make_clip

pytestmark = [pytest.mark.incidents, pytest.mark.integration]


@pytest.fixture(scope="module", autouse=True)
def _replica_installed() -> None:
    ensure_installed()


def an_encode_stopped(
    scenario: str, settings: Settings, tmp_path: Path
) -> tuple[StoppedEncodeFigures, StoppedEncodeFigures]:
    """The same 20 s lecture through `scenario` ("time_limit" or "worker_killed") on the replica, then
    on CourseCast; returns what each side recorded."""
    from bench.incidents import coursecast_side, replica_side

    long = make_clip(tmp_path / "long.mp4", seconds=20)
    on_replica = {"time_limit": replica_side.time_limit, "worker_killed": replica_side.worker_killed}
    on_coursecast = {"time_limit": coursecast_side.time_limit, "worker_killed": coursecast_side.worker_killed}
    return on_replica[scenario](settings, tmp_path, long), on_coursecast[scenario](settings, tmp_path, long)


def assert_stuck_unexplained(replica: StoppedEncodeFigures) -> None:
    """The replica's way: the job's row stays `processing`, and nothing records an end or says why."""
    assert replica.stuck, replica
    assert not replica.explained
    assert replica.endings_recorded == 0


def assert_failed_once_with_a_reason(coursecast: StoppedEncodeFigures, error_type: str, phrase: str) -> None:
    """CourseCast's way: the job ended `failed` once, with `error_type` and a message saying `phrase`."""
    assert coursecast.final_status == "failed", coursecast
    assert coursecast.error_type == error_type
    assert coursecast.error_message is not None
    assert phrase in coursecast.error_message
    assert coursecast.endings_recorded == 1
    assert not coursecast.stuck


def test_redelivery_overwrites_a_completed_job_on_the_replica_and_never_on_coursecast(
    settings: Settings, tmp_path: Path
) -> None:
    from bench.incidents import coursecast_side, replica_side

    short = make_clip(tmp_path / "short.mp4", seconds=2)
    blocker = make_clip(tmp_path / "blocker.mp4", seconds=12)
    lecture = make_clip(tmp_path / "lecture.mp4", seconds=20)

    replica = replica_side.redelivery(settings, tmp_path, blocker, short)
    coursecast = coursecast_side.redelivery(settings, tmp_path, lecture)

    # The replica: the same task ran again after completing, and the completed job became failed
    # with NoSuchKey while completed_at stayed set — the row of the incident report.
    assert replica.runs > 1, replica
    assert replica.completions == 1, replica
    assert replica.final_status == "failed", replica
    assert replica.completed_at_set, replica
    assert replica.final_error is not None
    assert "NoSuchKey" in replica.final_error
    assert replica.corrupted
    # CourseCast: 16 deliveries, one start, one encode, completed and unchanged.
    assert coursecast.deliveries == 16, coursecast
    assert coursecast.runs == 1, coursecast
    assert coursecast.encodes == 1, coursecast
    assert coursecast.final_status == "completed", coursecast
    assert coursecast.completed_at_kept, coursecast
    assert coursecast.final_error is None
    assert not coursecast.corrupted


def test_time_limit_leaves_the_job_processing_on_the_replica_and_fails_it_with_a_reason_on_coursecast(
    settings: Settings, tmp_path: Path
) -> None:
    replica, coursecast = an_encode_stopped("time_limit", settings, tmp_path)

    # The replica: killed at the limit, and the job's row stays `processing` with nothing saying why.
    assert_stuck_unexplained(replica)
    assert replica.unexplained_s >= 10
    # CourseCast: failed with error_type=timeout and a message, right at the limit, no ffmpeg left.
    assert_failed_once_with_a_reason(coursecast, "timeout", "time limit of 6 s")
    assert coursecast.ffmpeg_left == 0


def test_a_killed_worker_leaves_the_job_processing_on_the_replica_and_the_watchdog_ends_it_on_coursecast(
    settings: Settings, tmp_path: Path
) -> None:
    from bench.incidents.coursecast_side import STALL_TIMEOUT_S

    replica, coursecast = an_encode_stopped("worker_killed", settings, tmp_path)

    # The replica: the message was acknowledged when the task started; nobody ever ends the job.
    assert_stuck_unexplained(replica)
    # CourseCast: the watchdog presumes the silent worker dead and ends the job with a reason, within
    # the stall timeout plus its patrol interval and the projector's lag (generous on a loaded machine).
    assert_failed_once_with_a_reason(coursecast, "stalled", "presumed dead")
    assert coursecast.cause_logged
    assert coursecast.unexplained_s <= STALL_TIMEOUT_S + 30
