"""When a job's staging files may be deleted: only once publish_jobs shows the end the encoder published."""

from __future__ import annotations

from uuid import uuid4

import pytest

from services.core.jobs import JobStatus
from services.encoder.claims import JobView
from services.encoder.staging import Cleanup, PendingCleanup, judge, judge_orphan


def _pending(ended_as: JobStatus = JobStatus.COMPLETED, attempt: int = 1) -> PendingCleanup:
    job_id = uuid4()
    return PendingCleanup(job_id, attempt, ended_as, f"staging/{job_id}/")


def test_an_applied_completion_of_the_same_attempt_deletes_staging() -> None:
    assert judge(_pending(), JobView(JobStatus.COMPLETED, 1)) is Cleanup.DELETE


def test_an_applied_cancel_deletes_staging() -> None:
    assert judge(_pending(JobStatus.CANCELED, 2), JobView(JobStatus.CANCELED, 2)) is Cleanup.DELETE


@pytest.mark.parametrize(
    "job",
    [
        JobView(JobStatus.CANCELED, 1),  # canceled meanwhile: our JobCompleted was rejected
        JobView(JobStatus.FAILED, 1),  # ended failed by a verdict: the owner may retry from staging
        JobView(JobStatus.QUEUED, 2),  # our attempt went stale: the next one needs the files
        JobView(JobStatus.PROCESSING, 2),
        JobView(JobStatus.COMPLETED, 2),  # completed by another attempt, not by ours
    ],
)
def test_a_rejected_completion_keeps_staging(job: JobView) -> None:
    assert judge(_pending(), job) is Cleanup.KEEP


@pytest.mark.parametrize("job", [None, JobView(JobStatus.PROCESSING, 1), JobView(JobStatus.QUEUED, 1)])
def test_a_completion_not_yet_applied_waits(job: JobView | None) -> None:
    assert judge(_pending(), job) is Cleanup.WAIT


def test_the_sweeper_deletes_only_jobs_over_for_good() -> None:
    assert judge_orphan(JobView(JobStatus.COMPLETED, 3)) is Cleanup.DELETE
    assert judge_orphan(JobView(JobStatus.CANCELED, 1)) is Cleanup.DELETE
    for job in (None, JobView(JobStatus.FAILED, 1), JobView(JobStatus.QUEUED, 1)):
        assert judge_orphan(job) is Cleanup.KEEP
