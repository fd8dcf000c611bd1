"""Classified errors (G5): bad input fails at once with a readable reason; a storage hiccup is retried."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.manifest import staging_prefix
from services.core.settings import Settings
from tests.support.encoder import FAST, queue_job, run_to_end
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import course_tasks, job_events, wait_for
from tests.support.s3_faults import failing_s3
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course, staged_job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only, with a short retry back-off.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_RETRY)]


def test_permanent_errors_fail_at_once_with_a_clear_message_and_no_retry(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    deleted, text, truncated = new_job_id(), new_job_id(), new_job_id()
    # 1. The staged video vanished (the incident's NoSuchKey, for a job that has not ended).
    manifest_deleted = stage_course(own, s3, deleted, [make_clip(tmp_path / "gone.mp4", seconds=2)])
    s3.delete_object(Bucket=own.s3_bucket, Key=f"{staging_prefix(deleted)}videos/0.mp4")
    # 2. A text file named .mp4.
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my lecture notes, not a video\n" * 20)
    manifest_text = stage_course(own, s3, text, [fake])
    # 3. A truncated mp4: the first half of a real clip (its index, at the end, is lost).
    whole = make_clip(tmp_path / "whole.mp4", seconds=4).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    manifest_truncated = stage_course(own, s3, truncated, [cut])

    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**FAST)
        for manifest in (manifest_deleted, manifest_text, manifest_truncated):
            queue_job(own, manifest)
        jobs = {
            job_id: wait_for(own, job_id, {"completed", "failed"}, 60, run.processes)
            for job_id in (deleted, text, truncated)
        }

    expectations = {
        deleted: ("NoSuchKey", "could not be found"),
        text: ("invalid_media", "'notes.mp4' is not a video we can read"),
        truncated: ("invalid_media", "'cut.mp4' is not a video we can read"),
    }
    for job_id, (error_type, phrase) in expectations.items():
        job = jobs[job_id]
        assert job.status.value == "failed", job
        assert job.error_type == error_type
        assert job.error_message is not None
        assert phrase in job.error_message, job.error_message
        assert "Traceback" not in job.error_message
        assert job.attempt == 1
        assert job.completed_at is None
        types = [t for t, _, _ in job_events(own, job_id)]
        assert "JobRetryScheduled" not in types
        assert types.count("JobFailed") == 1


def test_a_transient_storage_error_is_retried_with_backoff_and_then_succeeds(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_job(own, s3, tmp_path, seconds=3, name="clip.mp4")
    assert own.s3_endpoint_url is not None
    # Every upload of a task's attempt 1 (hls/<task>/1/...) gets 503 (botocore retries, then gives up
    # too); attempt 2 is served.
    first_attempt = re.compile(r"/hls/[0-9a-f-]{36}/1/")
    with failing_s3(
        own.s3_endpoint_url, lambda method, path: method == "PUT" and bool(first_attempt.search(path))
    ) as (proxy, failed):
        job = run_to_end(own, manifest, tmp_path, 90, COURSECAST_S3_ENDPOINT_URL=proxy, **FAST)
    assert failed, "the proxy never injected a fault"
    assert job.status.value == "completed", (job.error_type, job.error_message)
    # The task was retried, not the course: the course completed on its first attempt.
    assert job.attempt == 1
    (task,) = course_tasks(own, job_id)
    assert (task.status.value, task.attempt) == ("completed", 2)
    events = job_events(own, task.job_id)
    assert ("JobRetryScheduled", 1, None) in events
    assert ("TaskCompleted", 2, None) in events
    assert job.outputs is not None
    assert f"/hls/{task.job_id}/2/0/master.m3u8" in job.outputs.videos[0].master_playlist_url
