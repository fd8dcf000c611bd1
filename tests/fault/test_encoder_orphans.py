"""G2 under kill -9: no ffmpeg outlives the encoder that started it.

A process killed with SIGKILL runs no cleanup, so the encoder cannot stop its own ffmpeg; the kernel
does (`setpriv --pdeathsig KILL`, see services/core/mediaprobe.die_with_parent). Without it the
orphan would keep encoding, and uploading nothing, for as long as its input lasts. Under fan-out
the ffmpeg that runs for long is a task's (docs/fan-out.md): the one-lecture course's `lecture` task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.encoder import FAST, queue_job
from tests.support.observe import count_events, ffmpeg_processes, wait_for_lecture_task
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=1)]


def test_kill_9_of_the_encoder_leaves_no_ffmpeg_running(own: Settings, s3: S3Client, tmp_path: Path) -> None:
    job_id = new_job_id()
    # Read at its native rate, the 60 s clip keeps ffmpeg busy for a minute after the encoder dies.
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=60)])
    log = tmp_path / "encoder.log"
    marker = f"coursecast-{job_id}-"  # until the task is known
    try:
        with running(own, tmp_path) as run:
            projector = run.projector()  # shows the course's task, whose id names ffmpeg's work folder
            encoder = run.encoder(**FAST, COURSECAST_ENCODER_REALTIME_INPUT="true")
            queue_job(own, manifest)
            # The course's attempt plans; its task's attempt runs the transcode, in its work folder.
            marker = f"coursecast-{wait_for_lecture_task(own, job_id, 0, 120, [encoder, projector]).job_id}-"
            deadline = time.monotonic() + 120
            while not ffmpeg_processes(marker):
                assert encoder.poll() is None, "the encoder exited early"
                assert time.monotonic() < deadline, "ffmpeg never started"
                time.sleep(0.2)
            assert count_events(log, "ffmpeg_started") >= 1
            run.kill(encoder)
            deadline = time.monotonic() + 15
            while (orphans := ffmpeg_processes(marker)) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        for pid in ffmpeg_processes(marker):  # never leave one behind, even on failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert orphans == []
