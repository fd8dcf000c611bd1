"""CancelJob: a running job stops ffmpeg within 5 s and ends canceled; a queued job ends before it starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.encoder import REALTIME, cancel, queue_job
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, ffmpeg_processes, job_events, wait_for
from tests.support.services import running
from tests.support.staging import staged_jobs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only; one partition, so both jobs queue on it.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=1, **QUICK_LIVENESS)]


def test_cancel_stops_a_running_encode_within_5_s_and_ends_a_queued_job_before_it_starts(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    manifests = staged_jobs(own, s3, tmp_path, 2, seconds=30, name="long.mp4")
    running_job, queued = (manifest.job_id for manifest in manifests)
    log = tmp_path / "encoder.log"
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**REALTIME)
        for manifest in manifests:
            queue_job(own, manifest)  # the second waits behind the first on the only partition
        wait_for(own, running_job, {"processing"}, 30, run.processes)
        time.sleep(2)
        cancel(own, queued)  # behind both commands: read only after the first job ends
        asked = time.monotonic()
        cancel(own, running_job)
        first = wait_for(own, running_job, {"canceled", "completed", "failed"}, 15, run.processes)
        canceled_after = time.monotonic() - asked
        leftovers = ffmpeg_processes(str(running_job))
        second = wait_for(own, queued, {"canceled", "completed", "failed"}, 30, run.processes)
    assert first.status.value == "canceled"
    assert first.completed_at is None
    assert canceled_after < 5
    assert leftovers == []
    assert count_events(log, "ffmpeg_stopped", reason="canceled") == 1
    assert second.status.value == "canceled"
    assert [t for t, _, _ in job_events(own, queued)] == ["JobQueued", "JobCanceled"]
    assert s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{running_job}/").get("KeyCount", 0) == 0
