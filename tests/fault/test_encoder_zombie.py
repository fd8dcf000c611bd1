"""G1 against a zombie: an encoder frozen mid-encode (SIGSTOP) loses its lease, another encoder takes
the job over, and the frozen one then wakes up (SIGCONT) with its encode done or nearly done.

The zombie's claim is no longer its own, so its renewals fail and its final-event transaction is
refused: it publishes no JobCompleted, whatever it had finished, and it keeps running.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.fault.encoder_checks import (
    assert_nothing_duplicated,
    assert_rebuild_equals_live,
    wait_drained,
    wait_logged,
)
from tests.integration.encoder_harness import (
    FAST,
    count_events,
    job_events,
    make_clip,
    new_job_id,
    queue_job,
    stage_course,
    start_encoder,
    wait_for,
)
from tests.integration.projector_harness import isolated, start_projector, stop, wait_caught_up

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    """One partition per topic; a frozen member is evicted and its lease runs out within seconds."""
    with isolated(settings, partitions=1) as base:
        yield base.model_copy(
            update={"heartbeat_interval_s": 2, "session_timeout_ms": 6_000, "encoder_lease_s": 8}
        )


def test_a_frozen_encoder_waking_after_a_takeover_publishes_no_completion(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=8)])
    zombie_log, survivor_log = tmp_path / "encoder-zombie.log", tmp_path / "encoder-survivor.log"
    projector = start_projector(own)
    zombie = start_encoder(own, zombie_log, **REALTIME)
    processes: list[subprocess.Popen[bytes]] = [projector, zombie]
    frozen = False
    try:
        queue_job(own, manifest)
        wait_for(own, job_id, {"processing"}, 60, processes)
        survivor = start_encoder(own, survivor_log, **REALTIME)
        processes.append(survivor)
        wait_logged(zombie_log, 60, processes, event="running_partition_revoked")
        zombie.send_signal(signal.SIGSTOP)  # its ffmpeg child keeps encoding meanwhile
        frozen = True
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, survivor])
        zombie.send_signal(signal.SIGCONT)
        frozen = False
        wait_logged(zombie_log, 60, processes, message="claim lost")
        wait_drained(own, 120, processes)
        wait_caught_up(own, timeout_s=120, processes=[projector])
    finally:
        if frozen:
            zombie.send_signal(signal.SIGCONT)
        codes = [stop(process) for process in processes]
    assert codes == [0, 0, 0]  # the zombie woke up, stood down, and stopped cleanly
    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert done.attempt == 2
    events = job_events(own, job_id)
    assert ("JobStalled", 1, None) in events
    assert ("JobCompleted", 1) not in [(t, a) for t, a, _ in events]
    assert_nothing_duplicated(own, job_id, completing_attempt=2)
    assert count_events(zombie_log, "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert count_events(survivor_log, "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert_rebuild_equals_live(own)
