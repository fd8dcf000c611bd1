"""The api's decisions about a job, without HTTP, Kafka or Postgres: which messages a retry or a cancel
appends, and which jobs they refuse (409 problems). The HTTP tests (tests/integration/api) cover the
same handlers end to end; these pin down the messages themselves, and that the contract accepts them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.api.handlers.jobs import cancel_messages, check_cancelable, check_retryable, retry_messages
from services.api.models import JobPublic
from services.api.problems import ProblemError
from services.core import codec
from services.core.jobs import JobStatus
from services.core.manifest import manifest_key, staging_prefix
from services.core.messages import COMMAND_TYPES, MessageType
from services.core.payloads import CancelJob, JobCanceled, JobRetryRequested, PublishCourse
from services.core.settings import Settings

TOPICS = Settings()


def command_data(of: JobPublic) -> PublishCourse:
    """The PublishCourse `of` was queued with."""
    return PublishCourse(
        owner=of.owner,
        course_name=of.course_name,
        curriculum=of.curriculum,
        staging_prefix=staging_prefix(of.job_id),
        manifest_key=manifest_key(of.job_id),
        video_count=of.video_count,
    )


def job(status: JobStatus, attempt: int = 1) -> JobPublic:
    """A job of `ada` in `status` at `attempt`."""
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    return JobPublic(
        job_id=uuid4(),
        owner="ada",
        course_name="데이터과학 입문",
        curriculum="CS-101",
        video_count=2,
        status=status,
        attempt=attempt,
        progress_percent=0.0,
        created_at=now,
        updated_at=now,
    )


def refusal(check: Any, of: JobPublic) -> ProblemError:
    with pytest.raises(ProblemError) as raised:
        check(of)
    return raised.value


# --- retry ---------------------------------------------------------------------------------------


def test_only_a_failed_job_is_retryable() -> None:
    check_retryable(job(JobStatus.FAILED))
    for status in set(JobStatus) - {JobStatus.FAILED}:
        problem = refusal(check_retryable, job(status))
        assert (problem.status, problem.kind, problem.title) == (
            409,
            "job-not-failed",
            "Job cannot be retried",
        )
        assert problem.extensions == {"job_status": status.value}
        assert status.value in problem.detail


def test_a_retry_requests_the_next_attempt_and_commands_it_with_the_original_data() -> None:
    failed = job(JobStatus.FAILED, attempt=2)
    [(events_topic, requested), (commands_topic, command)] = retry_messages(
        failed, "grace", command_data(failed), TOPICS
    )
    assert (events_topic, commands_topic) == (TOPICS.events_topic, TOPICS.commands_topic)
    # The request belongs to the failed attempt (the state machine checks it); the command to the next.
    assert (requested.type, requested.attempt) == (MessageType.JOB_RETRY_REQUESTED, 2)
    assert requested.data == JobRetryRequested(requested_by="grace", next_attempt=3)
    assert (command.type, command.attempt) == (MessageType.PUBLISH_COURSE, 3)
    assert command.data == command_data(failed)
    assert requested.job_id == command.job_id == failed.job_id
    assert requested.event_id != command.event_id
    for message in (requested, command):
        assert message.producer == "api"
        codec.encode(message)  # the contract accepts it (schema and control characters)


# --- cancel --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (JobStatus.COMPLETED, "it has already ended"),
        (JobStatus.CANCELED, "it has already ended"),
        (JobStatus.FAILED, "it has failed (retry it, or leave it)"),
    ],
)
def test_an_ended_job_cannot_be_canceled(status: JobStatus, why: str) -> None:
    problem = refusal(check_cancelable, job(status))
    assert (problem.status, problem.kind, problem.title) == (409, "job-ended", "Job cannot be canceled")
    assert problem.detail == (
        f"the job is {status.value}: {why}; only a queued or processing job can be canceled"
    )
    assert problem.extensions == {"job_status": status.value}


def test_a_queued_job_is_canceled_on_the_log_and_its_command_stopped_in_one_append() -> None:
    queued = job(JobStatus.QUEUED, attempt=1)
    check_cancelable(queued)
    [(events_topic, canceled), (commands_topic, command)] = cancel_messages(
        queued, "ada", "wrong files", TOPICS
    )
    assert (events_topic, commands_topic) == (TOPICS.events_topic, TOPICS.commands_topic)
    assert (canceled.type, command.type) == (MessageType.JOB_CANCELED, MessageType.CANCEL_JOB)
    assert canceled.data == JobCanceled(requested_by="ada", reason="wrong files")
    assert command.data == CancelJob(requested_by="ada", reason="wrong files")
    for message in (canceled, command):
        assert (message.job_id, message.attempt) == (queued.job_id, 1)
        codec.encode(message)


def test_a_processing_job_gets_only_the_command_its_encoder_answers_with_job_canceled() -> None:
    processing = job(JobStatus.PROCESSING, attempt=3)
    check_cancelable(processing)
    [(topic, command)] = cancel_messages(processing, "ada", None, TOPICS)
    assert topic == TOPICS.commands_topic
    assert command.type in COMMAND_TYPES
    assert (command.type, command.attempt) == (MessageType.CANCEL_JOB, 3)
    assert command.data == CancelJob(requested_by="ada", reason=None)  # no reason given: none sent
    codec.encode(command)


def test_an_empty_reason_is_not_sent() -> None:
    [(_, canceled), (_, command)] = cancel_messages(job(JobStatus.QUEUED), "ada", "", TOPICS)
    assert canceled.data == JobCanceled(requested_by="ada", reason=None)
    assert command.data == CancelJob(requested_by="ada", reason=None)
