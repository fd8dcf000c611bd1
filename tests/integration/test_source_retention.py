"""Sources kept for re-encodes: `coursecast staging sweep` deletes a completed job's staging only once
COURSECAST_SOURCE_RETENTION_DAYS have passed since the completion the status table shows; a canceled
job's at once; a failed job's never (its owner may retry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from devtools.demo import coursecast
from services.core.messages import MessageType
from services.core.settings import Settings
from tests.support.messages import course_job
from tests.support.observe import wait_for
from tests.support.projector import produce
from tests.support.services import running

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=1)]

M = MessageType


def stage(own: Settings, s3: S3Client, job_id: UUID) -> None:
    """A job's staging folder as the api leaves it: a video and the manifest."""
    for name in ("videos/000-lecture.mp4", "manifest.json"):
        s3.put_object(Bucket=own.s3_bucket, Key=f"staging/{job_id}/{name}", Body=b"x")


def staged(own: Settings, s3: S3Client, job_id: UUID) -> int:
    return int(s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/").get("KeyCount", 0))


def test_the_sweep_deletes_expired_sources_and_canceled_staging_and_keeps_the_rest(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    expired, retained, canceled, failed = uuid4(), uuid4(), uuid4(), uuid4()
    # Completed 31 and 1 day(s) ago by the log's own clock (the events' time), and ended today.
    histories = {
        expired: course_job(expired, expired, start=now - timedelta(days=31)),
        retained: course_job(retained, retained, start=now - timedelta(days=1)),
        canceled: course_job(canceled, canceled, start=now, outcome=M.JOB_CANCELED),
        failed: course_job(failed, failed, start=now, outcome=M.JOB_FAILED),
    }
    for job_id in histories:
        stage(own, s3, job_id)
    with running(own, tmp_path) as run:
        run.projector()
        produce(own, [event for history in histories.values() for event in history])
        for job_id, history in histories.items():
            ending = {M.JOB_COMPLETED: "completed", M.JOB_CANCELED: "canceled", M.JOB_FAILED: "failed"}
            wait_for(own, job_id, {ending[history[-1].type]}, 30, run.processes)
    swept = coursecast(own, "staging", "sweep")
    after_default = {job_id: staged(own, s3, job_id) for job_id in histories}
    no_retention = coursecast(own.model_copy(update={"source_retention_days": 0}), "staging", "sweep")
    after_no_retention = {job_id: staged(own, s3, job_id) for job_id in histories}

    assert own.source_retention_days == 30
    assert "swept 2 staging folder(s)" in swept.stdout
    assert after_default == {expired: 0, retained: 2, canceled: 0, failed: 2}
    assert "swept 1 staging folder(s)" in no_retention.stdout
    assert after_no_retention == {expired: 0, retained: 0, canceled: 0, failed: 2}
