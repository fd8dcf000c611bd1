"""G2 under kill -9: no ffmpeg outlives the encoder that started it.

A process killed with SIGKILL runs no cleanup, so the encoder cannot stop its own ffmpeg; the kernel
does (`setpriv --pdeathsig KILL`, see services/core/mediaprobe.die_with_parent). Without it the
orphan would keep encoding, and uploading nothing, for as long as its input lasts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.integration.encoder_harness import (
    FAST,
    count_events,
    ffmpeg_processes,
    make_clip,
    new_job_id,
    queue_job,
    stage_course,
    start_encoder,
)
from tests.integration.projector_harness import isolated, stop

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    """Topics, schema and groups of this test only."""
    with isolated(settings, partitions=1) as base:
        yield base


def test_kill_9_of_the_encoder_leaves_no_ffmpeg_running(own: Settings, s3: S3Client, tmp_path: Path) -> None:
    job_id = new_job_id()
    # Read at its native rate, the 60 s clip keeps ffmpeg busy for a minute after the encoder dies.
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=60)])
    log = tmp_path / "encoder.log"
    encoder = start_encoder(own, log, **FAST, COURSECAST_ENCODER_REALTIME_INPUT="true")
    try:
        queue_job(own, manifest)
        deadline = time.monotonic() + 120
        while not ffmpeg_processes(f"coursecast-{job_id}-"):
            assert encoder.poll() is None, "the encoder exited early"
            assert time.monotonic() < deadline, "ffmpeg never started"
            time.sleep(0.2)
        assert count_events(log, "ffmpeg_started") >= 1
        encoder.send_signal(signal.SIGKILL)
        encoder.wait(10)
        deadline = time.monotonic() + 15
        while (orphans := ffmpeg_processes(f"coursecast-{job_id}-")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop(encoder)
        for pid in ffmpeg_processes(f"coursecast-{job_id}-"):  # never leave one behind, even on failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert orphans == []
