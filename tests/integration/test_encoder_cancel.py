"""CancelJob: a running course's task stops ffmpeg within 5 s and the course ends canceled; a queued
task of a canceled course ends before it starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.encoder import REALTIME, cancel, queue_job
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, course_tasks, ffmpeg_processes, job_events, wait_for
from tests.support.services import running, wait_until
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
            queue_job(own, manifest)  # both planned; their tasks queue on the only partition

        def a_task_of_the_first_runs() -> bool:
            return any(t.status.value == "processing" for t in course_tasks(own, running_job))

        wait_until("the first course's task is encoding", a_task_of_the_first_runs, 60, run.processes)
        (task,) = course_tasks(own, running_job)
        time.sleep(2)
        cancel(own, queued)  # behind both tasks' commands: read only after the first task ends
        asked = time.monotonic()
        cancel(own, running_job)
        stopped = wait_for(own, task.job_id, {"canceled", "completed", "failed"}, 15, run.processes)
        stopped_after = time.monotonic() - asked
        leftovers = ffmpeg_processes(str(task.job_id))
        first = wait_for(own, running_job, {"canceled", "completed", "failed"}, 30, run.processes)
        second = wait_for(own, queued, {"canceled", "completed", "failed"}, 30, run.processes)
        (queued_task,) = course_tasks(own, queued)
    # The running task stopped within 5 s of its course's CancelJob; ffmpeg went with it.
    assert stopped.status.value == "canceled"
    assert stopped_after < 5
    assert leftovers == []
    assert count_events(log, "ffmpeg_stopped", reason="canceled") == 1
    assert first.status.value == "canceled"
    assert first.completed_at is None
    # The other course's task was canceled before it started: it never ran.
    assert second.status.value == "canceled"
    assert [t for t, _, _ in job_events(own, queued_task.job_id)] == ["TaskQueued", "JobCanceled"]
    assert s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{running_job}/").get("KeyCount", 0) == 0
