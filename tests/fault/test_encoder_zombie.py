"""G1 against a zombie: an encoder frozen mid-encode (SIGSTOP) loses its lease, another encoder takes
the job over, and the frozen one then wakes up (SIGCONT) with its encode done or nearly done.

The zombie's claim is no longer its own, so its renewals fail and its final-event transaction is
refused: it publishes no JobCompleted, whatever it had finished, and it keeps running.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.encoder import REALTIME, encoder_runs_job
from tests.support.encoder_checks import assert_nothing_duplicated, wait_drained
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, job_events, wait_for, wait_logged
from tests.support.projection_checks import assert_rebuild_equals_live
from tests.support.projector import wait_caught_up
from tests.support.services import running
from tests.support.staging import staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# One partition per topic; a frozen member is evicted and its lease runs out within seconds.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=1, **QUICK_LIVENESS, encoder_lease_s=8)]


def test_a_frozen_encoder_waking_after_a_takeover_publishes_no_completion(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=8)
    with running(own, tmp_path) as run:
        projector = run.projector()
        zombie = encoder_runs_job(run, manifest, 60, "encoder-zombie", **REALTIME)
        survivor = run.encoder("encoder-survivor", **REALTIME)
        wait_logged(run.log("encoder-zombie"), 60, run.processes, event="running_partition_revoked")
        zombie.send_signal(signal.SIGSTOP)  # its ffmpeg child keeps encoding meanwhile (stop resumes it)
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, survivor])
        zombie.send_signal(signal.SIGCONT)
        wait_logged(run.log("encoder-zombie"), 60, run.processes, message="claim lost")
        wait_drained(own, 120, run.processes)
        wait_caught_up(own, timeout_s=120, processes=[projector])
    codes = run.codes
    assert codes == [0, 0, 0]  # the zombie woke up, stood down, and stopped cleanly
    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert ("JobCompleted", 1) not in [(t, a) for t, a, _ in events]
    assert_nothing_duplicated(own, job_id, completing_attempt=2)
    assert count_events(run.log("encoder-zombie"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert count_events(run.log("encoder-survivor"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert_rebuild_equals_live(own)
