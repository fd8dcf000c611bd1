"""G1/G3 under kill -9 of the encoder at each of its fault points (services/core/faults.py).

The armed point kills the encoder process with SIGKILL, at a chosen instant of its order of effects:
JobStarted acked → outputs in S3 → JobCompleted acked in the claim transaction → offset committed.
A new encoder process then starts on the same group, and the job must end correctly: completed
once, by one attempt, nothing lost, nothing stuck (every command consumed and committed), nothing
duplicated in the status table, and the table equal to a rebuild from the log (G4).
"""

from __future__ import annotations

import signal
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from devtools.demo import coursecast
from services.core import faults
from services.core.settings import Settings
from tests.support.encoder import FAST, queue_job
from tests.support.encoder_checks import assert_nothing_duplicated, wait_drained
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import count_events, job_events, wait_for
from tests.support.projection_checks import assert_rebuild_equals_live
from tests.support.projector import wait_caught_up
from tests.support.s3_faults import failing_s3
from tests.support.services import running
from tests.support.staging import staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; a dead member and its lease end within seconds.
# Staging is checked to go once the job has ended, whoever saw it end: without source retention, so
# that a completed job's staging goes too (retention: tests/integration/test_source_retention.py).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(partitions=2, **QUICK_RETRY, encoder_lease_s=8, source_retention_days=0),
]


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """What the job must look like after a kill -9 at the point and a restart."""

    completing_attempt: int
    dead_attempt_events: tuple[str, ...]  # accepted events of attempt 1 besides JobStarted
    attempt_1_fails_uploads: bool = False  # a transient S3 error sends attempt 1 to its retry
    # The crash came after the offset commit: no encoder will see the command again, so the job's
    # staging is removed by `coursecast staging sweep` (which reads the status table), not a janitor.
    swept: bool = False
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
    # JobCompleted is acknowledged and the claim done; the redelivered command must change nothing.
    "encoder.after_completed": CrashPoint(
        1, ("VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "JobCompleted")
    ),
    # Done and committed: the restarted encoder has nothing to read.
    "encoder.after_commit": CrashPoint(
        1, ("VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "JobCompleted"), swept=True
    ),
    # JobRetryScheduled is in the log, so the job is queued as attempt 2, but the command of
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


def fault(point: str) -> dict[str, str]:
    """The environment that arms `point` in a service: it dies there the first time."""
    return {faults.ENV_VAR: f"{point}:1"}


def s3_upstream(
    settings: Settings, job_id: UUID, fail_attempt_1: bool
) -> AbstractContextManager[tuple[str, list[str]]]:
    """The S3 endpoint the encoders use: the real one, or a proxy that 503s attempt 1's uploads."""
    assert settings.s3_endpoint_url is not None
    if not fail_attempt_1:
        return nullcontext((settings.s3_endpoint_url, []))
    return failing_s3(
        settings.s3_endpoint_url, lambda method, path: method == "PUT" and f"/hls/{job_id}/1/" in path
    )


@pytest.mark.parametrize(
    "point",
    list(ENCODER_POINTS),
)
def test_encoder_killed_at_a_fault_point_then_restarted_completes_the_job_once(
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
        doomed = run.encoder("encoder-doomed", **fault(point), **env)
        if expected.first_dies_at is None:
            queue_job(own, manifest)
        assert doomed.wait(180) == -signal.SIGKILL, f"the encoder never reached {point}"
        restarted = run.encoder("encoder-restarted", **env)
        job = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, restarted])
        wait_drained(own, 120, [projector, restarted])
        wait_caught_up(own, timeout_s=120, processes=[projector])
    if expected.attempt_1_fails_uploads:
        assert failed, "the proxy never injected a fault"

    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert job.attempt == expected.completing_attempt
    assert job.completed_at is not None
    # Exactly one completion, by the completing attempt; no attempt started, encoded or completed twice.
    assert_nothing_duplicated(own, job_id, expected.completing_attempt)
    accepted = [(t, a) for t, a, rejection in job_events(own, job_id) if rejection is None]
    # Attempt 1 left exactly the trace its point allows, and the completing attempt ran whole.
    attempt_1 = [t for t, a in accepted if a == 1 and t not in ("JobQueued", "JobStarted", "JobProgress")]
    assert attempt_1 == list(expected.dead_attempt_events)
    if expected.completing_attempt == 2:
        attempt_2 = [t for t, a in accepted if a == 2 and t != "JobProgress"]
        assert attempt_2 == ["JobStarted", "VideoEncoded", "ThumbnailSaved", "ThumbnailSaved", "JobCompleted"]
    # ffmpeg ran at most once per attempt, in the process that owned it.
    logs = sorted(tmp_path.glob("encoder-*.log"))
    transcodes = [count_events(log, "ffmpeg_started", what="video 'lecture.mp4'") for log in logs]
    assert all(n <= 1 for n in transcodes), transcodes
    assert job.outputs is not None
    master = job.outputs.videos[0].master_playlist_url
    assert f"/hls/{job_id}/{expected.completing_attempt}/0/master.m3u8" in master
    key = f"hls/{job_id}/{expected.completing_attempt}/0/master.m3u8"
    assert s3.head_object(Bucket=own.s3_bucket, Key=key)["ContentLength"] > 0
    assert_rebuild_equals_live(own)
    # Staging is deleted once the job has ended (G1: never before), whoever saw it end.
    if expected.swept:
        sweep = coursecast(own, "staging", "sweep", check=False)
        assert sweep.returncode == 0, sweep.stderr[-2000:]
    left = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/").get("KeyCount", 0)
    assert left == 0
