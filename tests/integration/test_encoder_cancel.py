"""CancelJob: a running job stops ffmpeg within 5 s and ends canceled; a queued job ends before it starts."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.integration.encoder_harness import (
    FAST,
    cancel,
    count_events,
    ffmpeg_processes,
    job_events,
    make_clip,
    new_job_id,
    queue_job,
    stage_course,
    start_encoder,
    wait_for,
)
from tests.integration.projector_harness import isolated, start_projector, stop

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    """Topics, schema and groups of this test only; one partition, so both jobs queue on it."""
    with isolated(settings, partitions=1) as base:
        yield base.model_copy(update={"heartbeat_interval_s": 2, "session_timeout_ms": 6_000})


def test_cancel_stops_a_running_encode_within_5_s_and_ends_a_queued_job_before_it_starts(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    running, queued = new_job_id(), new_job_id()
    clip = make_clip(tmp_path / "long.mp4", seconds=30)
    manifests = [stage_course(own, s3, job_id, [clip]) for job_id in (running, queued)]
    log = tmp_path / "encoder.log"
    processes: list[subprocess.Popen[bytes]] = [start_projector(own), start_encoder(own, log, **REALTIME)]
    try:
        for manifest in manifests:
            queue_job(own, manifest)  # the second waits behind the first on the only partition
        wait_for(own, running, {"processing"}, 30, processes)
        time.sleep(2)
        cancel(own, queued)  # behind both commands: read only after the first job ends
        asked = time.monotonic()
        cancel(own, running)
        first = wait_for(own, running, {"canceled", "completed", "failed"}, 15, processes)
        canceled_after = time.monotonic() - asked
        leftovers = ffmpeg_processes(str(running))
        second = wait_for(own, queued, {"canceled", "completed", "failed"}, 30, processes)
    finally:
        for process in processes:
            stop(process)
    assert first.status.value == "canceled"
    assert first.completed_at is None
    assert canceled_after < 5
    assert leftovers == []
    assert count_events(log, "ffmpeg_stopped", reason="canceled") == 1
    assert second.status.value == "canceled"
    assert [t for t, _, _ in job_events(own, queued)] == ["JobQueued", "JobCanceled"]
    assert s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{running}/").get("KeyCount", 0) == 0
