"""When a job's staging files may be deleted: only once publish_jobs shows the end the encoder published,
and, for a completed job (its course's uploaded sources), only once their retention has run out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.core.jobs import JobStatus
from services.encoder.claims import JobView
from services.encoder.staging import Cleanup, PendingCleanup, judge, judge_orphan

RETENTION = timedelta(days=30)
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _pending(ended_as: JobStatus = JobStatus.COMPLETED, attempt: int = 1) -> PendingCleanup:
    job_id = uuid4()
    return PendingCleanup(job_id, attempt, ended_as, f"staging/{job_id}/")


def _completed(attempt: int = 1, days_ago: float = 0) -> JobView:
    return JobView(JobStatus.COMPLETED, attempt, completed_at=NOW - timedelta(days=days_ago))


def test_an_applied_completion_of_the_same_attempt_retains_the_sources() -> None:
    assert judge(_pending(), _completed(), RETENTION) is Cleanup.RETAIN


def test_without_retention_an_applied_completion_of_the_same_attempt_deletes_staging() -> None:
    assert judge(_pending(), _completed(), timedelta(0)) is Cleanup.DELETE


def test_an_applied_cancel_deletes_staging_whatever_the_retention() -> None:
    for retention in (RETENTION, timedelta(0)):
        assert (
            judge(_pending(JobStatus.CANCELED, 2), JobView(JobStatus.CANCELED, 2), retention)
            is Cleanup.DELETE
        )


@pytest.mark.parametrize(
    "job",
    [
        JobView(JobStatus.CANCELED, 1),  # canceled meanwhile: our JobCompleted was rejected
        JobView(JobStatus.FAILED, 1),  # ended failed by a verdict: the owner may retry from staging
        JobView(JobStatus.QUEUED, 2),  # our attempt went stale: the next one needs the files
        JobView(JobStatus.PROCESSING, 2),
        _completed(attempt=2),  # completed by another attempt, not by ours
    ],
)
@pytest.mark.parametrize("retention", [RETENTION, timedelta(0)])
def test_a_rejected_completion_keeps_staging(job: JobView, retention: timedelta) -> None:
    assert judge(_pending(), job, retention) is Cleanup.KEEP


@pytest.mark.parametrize("job", [None, JobView(JobStatus.PROCESSING, 1), JobView(JobStatus.QUEUED, 1)])
def test_a_completion_not_yet_applied_waits(job: JobView | None) -> None:
    assert judge(_pending(), job, RETENTION) is Cleanup.WAIT


def test_the_sweeper_deletes_canceled_jobs_and_completed_ones_whose_sources_expired() -> None:
    assert judge_orphan(JobView(JobStatus.CANCELED, 1), NOW, RETENTION) is Cleanup.DELETE
    assert judge_orphan(_completed(attempt=3, days_ago=30), NOW, RETENTION) is Cleanup.DELETE
    assert judge_orphan(_completed(days_ago=29.9), NOW, RETENTION) is Cleanup.RETAIN
    assert judge_orphan(_completed(), NOW, timedelta(0)) is Cleanup.DELETE
    for job in (None, JobView(JobStatus.FAILED, 1), JobView(JobStatus.QUEUED, 1)):
        assert judge_orphan(job, NOW, RETENTION) is Cleanup.KEEP
