"""G1/G3 under kill -9 of the encoder at each of its fault points (services/core/faults.py).

The armed point kills the encoder process with SIGKILL, at a chosen instant of its order of effects:
JobStarted acked → outputs in S3 → the final event acked in the claim transaction → offset committed.
Under fan-out (docs/fan-out.md) the attempt that encodes is a *task's*: the one-lecture course is
planned by the course's attempt, the conductor queues its one `lecture` task, and the crash hits the
task's attempt (the course's planning attempt passes some of the same points first and is let
through). A new encoder process then starts on the same group, and the task must end correctly:
completed once, by one attempt, nothing lost, nothing stuck (every command consumed and committed),
nothing duplicated in the status table; the course then ends exactly once with that attempt's
outputs, and the table equals a rebuild from the log (G4).
"""

from __future__ import annotations

import re
import signal
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from services.core import faults
from services.core.settings import Settings
from tests.support.encoder import FAST, queue_job
from tests.support.encoder_checks import assert_nothing_duplicated, wait_drained
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import count_events, job_events, wait_for, wait_for_lecture_task
from tests.support.projection_checks import assert_rebuild_equals_live
from tests.support.projector import wait_caught_up
from tests.support.s3_faults import failing_s3
from tests.support.services import running, wait_until
from tests.support.staging import staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; a dead member and its lease end within seconds.
# Staging is checked to go once the course has ended (the conductor that ended it deletes it): without
# source retention, so that a completed course's staging goes too (retention: test_source_retention.py).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(partitions=2, **QUICK_RETRY, encoder_lease_s=8, source_retention_days=0),
]


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """What the task must look like after a kill -9 of its attempt at the point and a restart."""

    completing_attempt: int
    dead_attempt_events: tuple[str, ...]  # the task's accepted events of attempt 1 besides JobStarted
    attempt_1_fails_uploads: bool = False  # a transient S3 error sends attempt 1 to its retry
    first_dies_at: str | None = None  # an earlier encoder dies here first, so the doomed one takes over


ENCODER_POINTS: dict[str, CrashPoint] = {
    # The dead worker's claim says "started": the next encoder waits out its lease, ends attempt 1
    # with JobStalled(will_retry) and runs attempt 2.
    "encoder.after_started": CrashPoint(2, ("JobStalled",)),
    # A takeover dies half-way: JobStalled of attempt 1 and the command of attempt 2 are on the log
    # (one Kafka transaction), the dead claim is not closed; the attempt-2 command runs attempt 2.
    "encoder.after_stalled": CrashPoint(
        2,
        ("JobStalled",),
        first_dies_at="encoder.after_started",
    ),
    # Attempt 1's outputs are in S3 and announced, but it never completed: taken over the same way.
    "encoder.after_upload": CrashPoint(2, ("VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "JobStalled")),
    # TaskCompleted is acknowledged and the claim done; the redelivered command must change nothing.
    "encoder.after_completed": CrashPoint(
        1, ("VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "TaskCompleted")
    ),
    # Done and committed: the restarted encoder has nothing to read.
    "encoder.after_commit": CrashPoint(
        1, ("VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "TaskCompleted")
    ),
    # JobRetryScheduled is in the log, so the task is queued as attempt 2, but the command of
    # attempt 2 was never produced: the redelivered attempt-1 command finds the claim open and
    # produces it (claims.Verdict.REQUEUE).
    "encoder.before_retry_command": CrashPoint(
        2,
        ("JobRetryScheduled",),
        attempt_1_fails_uploads=True,
    ),
    # The retry is scheduled (event and next command acked); the redelivered attempt-1 command is
    # stale, and the retry command runs attempt 2.
    "encoder.after_retry_scheduled": CrashPoint(2, ("JobRetryScheduled",), attempt_1_fails_uploads=True),
}

# Points the course's planning attempt passes (once each) before its task's attempt does: the
# planning attempt starts, "uploads" nothing but its plan, and commits its offset like any attempt.
# The crash is armed for the next pass, the task's attempt, which is the one that encodes.
PASSED_WHILE_PLANNING = frozenset({"encoder.after_started", "encoder.after_upload", "encoder.after_commit"})

# The course's own accepted events when it ends well, whatever happened to its task's attempts:
# planned once by its attempt, its lecture published once and its completion once, by the conductor.
COURSE_EVENTS = ["JobQueued", "JobStarted", "CoursePlanned", "LecturePublished", "JobCompleted"]


# A task attempt of a `lecture` task that runs whole, as a whole course's attempt did before fan-out.
COMPLETING_ATTEMPT_EVENTS = (
    "JobStarted",
    "VideoEncoded",
    "ThumbnailSaved",
    "ThumbnailSaved",
    "TaskCompleted",
)


def fault(point: str, *, planned_already: bool = False) -> dict[str, str]:
    """The environment that arms `point` in an encoder: it dies there at the task's attempt (after
    the course's planning attempt has passed it, unless the course was `planned_already`)."""
    count = 1 if planned_already or point not in PASSED_WHILE_PLANNING else 2
    return {faults.ENV_VAR: f"{point}:{count}"}


def task_attempt_1_put(method: str, path: str, course_job_id: UUID) -> bool:
    """A PUT of a task's attempt-1 outputs (hls/<task>/1/...): not the course's, which has none here."""
    match = re.match(r"^/[^/]+/hls/([0-9a-f-]{36})/1/", path)
    return method == "PUT" and match is not None and match.group(1) != str(course_job_id)


def s3_upstream(
    settings: Settings, job_id: UUID, fail_attempt_1: bool
) -> AbstractContextManager[tuple[str, list[str]]]:
    """The S3 endpoint the encoders use: the real one, or a proxy that 503s the task's attempt-1 uploads."""
    assert settings.s3_endpoint_url is not None
    if not fail_attempt_1:
        return nullcontext((settings.s3_endpoint_url, []))
    return failing_s3(settings.s3_endpoint_url, lambda method, path: task_attempt_1_put(method, path, job_id))


@pytest.mark.parametrize(
    "point",
    list(ENCODER_POINTS),
)
def test_encoder_killed_at_a_fault_point_of_a_task_attempt_then_restarted_completes_it_and_its_course_once(
    own: Settings, s3: S3Client, tmp_path: Path, point: str
) -> None:
    expected = ENCODER_POINTS[point]
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=3)
    with (
        s3_upstream(own, job_id, expected.attempt_1_fails_uploads) as (endpoint, failed),
        running(own, tmp_path) as run,
    ):
        env = {"COURSECAST_S3_ENDPOINT_URL": endpoint, **FAST}
        projector = run.projector()
        if (earlier := expected.first_dies_at) is not None:
            first = run.encoder("encoder-first", **fault(earlier), **env)
            queue_job(own, manifest)
            assert first.wait(180) == -signal.SIGKILL, f"the first encoder never reached {earlier}"
        # The only encoder alive: it plans the course (unless the first did), then runs its task.
        doomed = run.encoder("encoder-doomed", **fault(point, planned_already=earlier is not None), **env)
        if expected.first_dies_at is None:
            queue_job(own, manifest)
        assert doomed.wait(180) == -signal.SIGKILL, f"the encoder never reached {point}"
        restarted = run.encoder("encoder-restarted", **env)
        task = wait_for_lecture_task(own, job_id, 0, 60, [projector, restarted])
        job = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, restarted])
        wait_drained(own, 120, [projector, restarted])
        wait_caught_up(own, timeout_s=120, processes=[projector])
        task = wait_for(own, task.job_id, {"completed", "failed", "canceled"}, 10)
    if expected.attempt_1_fails_uploads:
        assert failed, "the proxy never injected a fault"

    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert job.completed_at is not None
    assert (task.status.value, task.attempt) == ("completed", expected.completing_attempt)
    assert task.completed_at is not None
    # Exactly one completion of the task, by the completing attempt; no attempt started, encoded or
    # completed twice; and the course planned, published and completed once (G1).
    assert_nothing_duplicated(own, task.job_id, expected.completing_attempt, completion="TaskCompleted")
    assert_nothing_duplicated(own, job_id, 1)
    assert [t for t, _, rejection in job_events(own, job_id) if rejection is None and t != "JobProgress"] == (
        COURSE_EVENTS
    )
    accepted = [(t, a) for t, a, rejection in job_events(own, task.job_id) if rejection is None]
    # The task's attempt 1 left exactly the trace its point allows, and the completing attempt ran whole.
    attempt_1 = [t for t, a in accepted if a == 1 and t not in ("TaskQueued", "JobStarted", "JobProgress")]
    assert attempt_1 == list(expected.dead_attempt_events)
    if expected.completing_attempt == 2:
        attempt_2 = [t for t, a in accepted if a == 2 and t != "JobProgress"]
        assert attempt_2 == [
            "JobStarted",
            "VideoEncoded",
            "ThumbnailSaved",
            "ThumbnailSaved",
            "TaskCompleted",
        ]
    # ffmpeg ran at most once per attempt, in the process that owned it.
    logs = sorted(tmp_path.glob("encoder-*.log"))
    transcodes = [count_events(log, "ffmpeg_started", what="video 'lecture.mp4'") for log in logs]
    assert all(n <= 1 for n in transcodes), transcodes
    # The course publishes the completing attempt's outputs of its task, as they are.
    assert job.outputs is not None
    master = job.outputs.videos[0].master_playlist_url
    assert f"/hls/{task.job_id}/{expected.completing_attempt}/0/master.m3u8" in master
    key = f"hls/{task.job_id}/{expected.completing_attempt}/0/master.m3u8"
    assert s3.head_object(Bucket=own.s3_bucket, Key=key)["ContentLength"] > 0
    assert_rebuild_equals_live(own)
    # The course's staging is deleted once the course has ended (G1: never before), by the conductor
    # that ended it, whatever happened to the task's attempts (retention 0 here).
    wait_until(
        "the course's staging deleted",
        lambda: s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/").get("KeyCount", 0) == 0,
        60,
    )


# The course's planning attempt killed at a point it passes before its plan is on the log: the
# restarted encoder waits out the dead claim's lease, ends attempt 1 with JobStalled and plans the
# course again as attempt 2; the conductor queues the task once, from that plan.
PLANNING_POINTS = ("encoder.after_started", "encoder.after_upload")


@pytest.mark.parametrize("point", PLANNING_POINTS)
def test_encoder_killed_at_a_fault_point_of_a_course_planning_attempt_then_restarted_plans_it_once(
    own: Settings, s3: S3Client, tmp_path: Path, point: str
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=3)
    with running(own, tmp_path) as run:
        env = {**FAST}
        projector = run.projector()
        # Armed for the first pass: the course's planning attempt comes first.
        doomed = run.encoder("encoder-doomed", **{faults.ENV_VAR: f"{point}:1"}, **env)
        queue_job(own, manifest)
        assert doomed.wait(180) == -signal.SIGKILL, f"the encoder never reached {point}"
        restarted = run.encoder("encoder-restarted", **env)
        job = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, restarted])
        wait_drained(own, 120, [projector, restarted])
        wait_caught_up(own, timeout_s=120, processes=[projector])
        task = wait_for_lecture_task(own, job_id, 0, 10)

    assert (job.status.value, job.attempt) == ("completed", 2), (job.error_type, job.error_message)
    assert job.completed_at is not None
    assert_nothing_duplicated(own, job_id, 2)
    # Attempt 1 left no plan; attempt 2 planned the course once and it was published once.
    course = [
        (t, a) for t, a, rejection in job_events(own, job_id) if rejection is None and t != "JobProgress"
    ]
    assert course == [
        ("JobQueued", 1),
        ("JobStarted", 1),
        ("JobStalled", 1),
        ("JobStarted", 2),
        ("CoursePlanned", 2),
        ("LecturePublished", 2),
        ("JobCompleted", 2),
    ]
    # One task, queued once and run once, by its attempt 1.
    assert (task.status.value, task.attempt) == ("completed", 1)
    assert_nothing_duplicated(own, task.job_id, 1, completion="TaskCompleted")
    task_events = [
        t for t, _, rejection in job_events(own, task.job_id) if rejection is None and t != "JobProgress"
    ]
    assert task_events == ["TaskQueued", *COMPLETING_ATTEMPT_EVENTS]
    transcodes = [
        count_events(log, "ffmpeg_started", what="video 'lecture.mp4'")
        for log in tmp_path.glob("encoder-*.log")
    ]
    assert sorted(transcodes) == [0, 1], transcodes  # planning encodes nothing; the task did, once
    assert job.outputs is not None
    assert f"/hls/{task.job_id}/1/0/master.m3u8" in job.outputs.videos[0].master_playlist_url
    assert_rebuild_equals_live(own)
