"""The attempt's lifecycle: one attempt of one job, in a worker thread, from claim to final event.

claim (consumer.py) → JobStarted + claim started → the work (encode.py, with heartbeat.py renewing the
lease) → final events under the claim's row lock → claim done; or, for a dead worker's attempt, its
takeover (JobStalled + the next command). The main thread keeps polling Kafka (membership) while
this runs for as long as the encode takes.
Order of effects for a completed attempt (G3):
  JobStarted acked → outputs written to S3 under hls/<job_id>/<attempt>/<video_index>/ →
  JobCompleted acked inside the claim transaction (G1) → [main thread] offset committed →
  staging deleted once the projector shows the completion applied (staging.py).
Every way an attempt can end publishes exactly one final event: JobCompleted, JobFailed (permanent,
timeout, or retries exhausted), JobRetryScheduled (+ the next attempt's command on the retry topic),
JobCanceled — or nothing, when the claim was lost to another encoder (fenced).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import psycopg
from botocore.exceptions import ClientError
from pydantic import ValidationError

from services.core import faults, logs
from services.core.manifest import MANIFEST_NAME, StagingManifest
from services.core.messages import Envelope, Payload, carries
from services.core.payloads import (
    EncodeTask,
    JobCanceled,
    JobFailed,
    JobRetryScheduled,
    JobStarted,
)
from services.core.settings import Settings
from services.core.storage import is_missing_object
from services.encoder import metrics
from services.encoder.cancel import CancelWatcher
from services.encoder.claims import ClaimStore, Decision
from services.encoder.errors import (
    AttemptError,
    CanceledError,
    ClaimLostError,
    PermanentError,
    classify,
    for_people,
    missing_input,
)
from services.encoder.heartbeat import Heartbeat, Progress
from services.encoder.publisher import AttemptEvents, Publisher, WorkCommand, next_command, stalled_event
from services.encoder.tasks import Planning, Steps, TaskWork

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("coursecast.encoder")

# Longest wait, before JobStarted, for the cancel watcher to read what is queued behind the command.
CANCEL_CATCH_UP_S = 3.0
# Taking the claim's row lock for the final events is tried this many times, on a fresh connection
# each time, when Postgres drops the connection before anything was published.
FINISH_TRIES = 4


class Outcome(StrEnum):
    """How an attempt ended, for the consumer loop."""

    COMPLETED = "completed"
    PLANNED = "planned"  # a course's attempt cut it into tasks: the conductor runs them now
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    CANCELED = "canceled"
    FENCED = "fenced"  # the claim was lost or the job had already ended: nothing was published
    UNPUBLISHED = "unpublished"  # the final events could not be acknowledged: do not commit
    ABANDONED = "abandoned"  # the process is shutting down: lease released, offset not committed


@dataclass(frozen=True, slots=True)
class RunResult:
    """What the consumer does after an attempt: commit (unless UNPUBLISHED), maybe delete staging."""

    outcome: Outcome
    delete_staging: bool = False


def retry_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Back-off before attempt `attempt + 1`: base · 2^(attempt-1), capped, plus jitter·50 % (pure)."""
    delay = min(max_s, base_s * 2.0 ** (attempt - 1)) * (1.0 + 0.5 * jitter)
    return round(float(delay), 3)


class JobRunner:
    """Runs one claimed attempt to its final event; `run` is the worker thread's body."""

    def __init__(
        self,
        settings: Settings,
        command: Envelope[WorkCommand],
        decision: Decision,
        claims: ClaimStore,
        publisher: Publisher,
        s3: S3Client,
        watcher: CancelWatcher,
        open_claims: Callable[[], ClaimStore] | None = None,
    ) -> None:
        self.settings = settings
        self.command = command
        self.decision = decision
        self.job_id = command.job_id
        # The course a task belongs to (its events are keyed by it); None for a course's attempt.
        self.course_job_id = command.course_job_id
        self.attempt = decision.attempt
        self.claims = claims
        self.publisher = publisher
        self.s3 = s3
        self.watcher = watcher
        # Opens a fresh ClaimStore: the heartbeat's own connection, and a replacement for one that broke.
        self._open_claims = open_claims
        self.result: RunResult | None = None
        self._fenced = threading.Event()
        self._abandon = threading.Event()
        self._deadline = 0.0
        self._log_extra = {"job_id": str(self.job_id), "attempt": self.attempt}

    # --- the attempt ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run the attempt; store the result for the consumer thread. Never raises."""
        metrics.ATTEMPTS_STARTED.inc()
        metrics.BUSY.set(1)
        try:
            # Every line the attempt logs names the job, a library's included (botocore, psycopg).
            with logs.bound(**self._log_extra):
                self.result = self._run()
        except Exception:
            log.exception("attempt could not publish its final event", extra=self._log_extra)
            self.result = RunResult(Outcome.UNPUBLISHED)
        finally:
            self.claims.close()
            metrics.BUSY.set(0)
            if self.result is not None:
                metrics.ATTEMPTS.labels(self.result.outcome.value).inc()

    def _run(self) -> RunResult:
        self._deadline = time.monotonic() + self.settings.encode_time_limit_s
        if self.decision.ends_dead_attempt:
            return self._end_dead_attempt()
        try:
            self.watcher.wait_caught_up(CANCEL_CATCH_UP_S)
            if (canceled := self.watcher.canceled(self.job_id)) is not None:
                raise canceled
            started = JobStarted(worker=self.publisher.name)
            self.publisher.event(started, self.job_id, self.attempt, self.course_job_id)
            if not self.claims.mark_started(self.job_id, self.attempt):
                raise ClaimLostError("claim taken over before the start")
            faults.reach("encoder.after_started")
            events = AttemptEvents(self.publisher, self.job_id, self.attempt, self.course_job_id)
            progress = Progress()
            heartbeat = Heartbeat(
                self.settings, events, progress, self.claims, self._open_claims, self._fenced
            )
            steps = Steps(self.settings, self.s3, progress, self._deadline, self._should_stop)
            command = self.command
            with heartbeat.beating():
                manifest = self._load_manifest()
                if carries(command, EncodeTask):
                    result: Payload = TaskWork(steps, events).run(command, manifest)
                else:
                    result = Planning(steps).plan(self.job_id, manifest)
            faults.reach("encoder.after_upload")
            if carries(command, EncodeTask):
                return self._finish(Outcome.COMPLETED, [result])
            return self._finish(Outcome.PLANNED, [result])
        except CanceledError as exc:
            ended = JobCanceled(requested_by=exc.requested_by, reason=exc.reason or None)
            # A course's staging goes once the course has ended; a task's end is not the course's.
            return self._finish(Outcome.CANCELED, [ended], delete_staging=self.course_job_id is None)
        except ClaimLostError as exc:
            if self._abandon.is_set():
                # The next owner of the partition takes over at once instead of waiting for the lease.
                self.claims.release(self.job_id, self.attempt)
                log.warning("attempt abandoned for shutdown; lease released", extra=self._log_extra)
                return RunResult(Outcome.ABANDONED)
            log.warning("claim lost; publishing nothing (%s)", exc, extra=self._log_extra)
            return RunResult(Outcome.FENCED)
        except Exception as exc:  # every other way out is classified (G5)
            # The detail (paths, hosts, raw text) goes to the log only; the event gets the message.
            log.warning("attempt stopped: %s", type(exc).__name__, exc_info=exc, extra=self._log_extra)
            return self._fail(classify(exc))

    def _fail(self, error: AttemptError) -> RunResult:
        metrics.ERRORS.labels(error.error_type, str(error.retryable).lower()).inc()
        log.info(
            "attempt failed: %s",
            error.message,
            extra={
                **self._log_extra,
                "error_type": error.error_type,
                "retryable": error.retryable,
                "detail": error.detail,
            },
        )
        if error.retryable and self.attempt < self.settings.max_attempts:
            delay = retry_delay(
                self.attempt,
                self.settings.retry_backoff_base_s,
                self.settings.retry_backoff_max_s,
                random.random(),
            )
            retry = JobRetryScheduled(
                error_type=error.error_type,
                message=self._for_people(error.message),
                next_attempt=self.attempt + 1,
                delay_s=delay,
            )
            return self._finish(Outcome.RETRY_SCHEDULED, [retry], retry_after=delay)
        message = self._for_people(error.message)
        if error.retryable:
            message += f" It failed {self.attempt} times in a row; you can retry the job later."
        failed = JobFailed(error_type=error.error_type, message=message, retryable=error.retryable)
        return self._finish(Outcome.FAILED, [failed])

    def _finish(
        self,
        outcome: Outcome,
        events: Sequence[Payload],
        *,
        delete_staging: bool = False,
        retry_after: float | None = None,
    ) -> RunResult:
        """Publish the final events under the claim's row lock; nothing if the claim is not ours (G1).

        A connection Postgres dropped before the lock was taken is replaced and the lock taken again;
        once an event is published, a failure is not retried (that could publish it twice): the
        attempt is UNPUBLISHED, the claim stays running, and the redelivery sorts it out.
        """
        for tries in range(1, FINISH_TRIES + 1):
            published = False
            try:
                with self.claims.finishing(self.job_id, self.attempt, outcome.value) as ours:
                    if not ours:
                        log.warning(
                            "claim lost before the final event; publishing nothing", extra=self._log_extra
                        )
                        return RunResult(Outcome.FENCED)
                    for data in events:
                        published = True
                        self.publisher.event(data, self.job_id, self.attempt, self.course_job_id)
                    if retry_after is not None:
                        published = True
                        # A crash here leaves the job queued as the next attempt with no command yet:
                        # the redelivered command finds the claim open and produces it (REQUEUE).
                        faults.reach("encoder.before_retry_command")
                        self.publisher.retry_command(
                            self.command, self.attempt + 1, time.time() + retry_after
                        )
                    # Every final event is acknowledged (acks=all); the claim is marked done only
                    # when this transaction commits, after this point. A crash here leaves the claim
                    # running with its events on the log: never a claim done without them.
                    faults.reach("encoder.final_events_acked")
                break
            except psycopg.OperationalError:
                if published or tries == FINISH_TRIES or self._open_claims is None:
                    raise
                log.warning(
                    "claim connection lost before the final event; reconnecting",
                    exc_info=True,
                    extra=self._log_extra,
                )
                time.sleep(min(2.0 ** (tries - 1), 5.0))
                with contextlib.suppress(Exception):
                    self.claims.close()
                self.claims = self._open_claims()
        if outcome is Outcome.COMPLETED:
            faults.reach("encoder.after_completed")
        if outcome is Outcome.RETRY_SCHEDULED:
            faults.reach("encoder.after_retry_scheduled")
        log.info("attempt ended: %s", outcome.value, extra={**self._log_extra, "event": f"attempt_{outcome}"})
        return RunResult(outcome, delete_staging)

    def _for_people(self, message: str) -> str:
        """The message as the job's owner may see it (see errors.for_people)."""
        return for_people(message, {self.publisher.name, socket.gethostname()})

    def _end_dead_attempt(self) -> RunResult:
        """Close the dead worker's attempt under the claim's row lock, in one Kafka transaction:
        JobStalled (unless the job was already requeued) and the next attempt's PublishCourse (when
        attempts are left).

        Nothing runs here: the next attempt starts from its command like any other, so the job is
        never requeued without a command to run it, even if this process dies right after. If the
        watchdog ended the attempt first, this JobStalled is rejected (stale attempt) and this
        command is a duplicate of the watchdog's, which the claim lets run only once.
        """
        dead = self.decision.attempt
        next_attempt = self.decision.next_attempt
        batch: list[tuple[str, Envelope]] = []
        if self.decision.stalled_attempt is not None:
            stalled = stalled_event(
                self.settings, self.job_id, dead, next_attempt, self.publisher.name, self.course_job_id
            )
            batch.append((self.settings.events_topic, stalled))
        if next_attempt is not None:
            command = next_command(self.command, next_attempt, self.publisher.name)
            batch.append((self.settings.commands_topic, command))
        outcome = Outcome.RETRY_SCHEDULED if next_attempt is not None else Outcome.FAILED
        with self.claims.finishing(self.job_id, dead, outcome.value) as ours:
            if not ours:
                log.warning("claim lost before closing the dead attempt", extra=self._log_extra)
                return RunResult(Outcome.FENCED)
            self.publisher.together(batch)
            # JobStalled and the next command are on the log together; the claim is not closed yet.
            faults.reach("encoder.after_stalled")
        log.info(
            "dead attempt %d closed (%s): %s",
            dead,
            self.decision.verdict.value,
            outcome.value,
            extra={**self._log_extra, "event": "dead_attempt_closed"},
        )
        return RunResult(outcome)

    # --- the input -------------------------------------------------------------------------------

    def _load_manifest(self) -> StagingManifest:
        key = f"{self.command.data.staging_prefix}{MANIFEST_NAME}"
        try:
            body = self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if is_missing_object(exc):
                job = self.claims.job(self.job_id)
                if job is not None and job.status.value in ("completed", "canceled", "failed"):
                    # G1: staging is deleted only after a job ends, so this is a late duplicate.
                    raise ClaimLostError(f"manifest gone and job {job.status}: duplicate delivery") from None
                raise missing_input("list (manifest.json)") from None
            raise
        try:
            return StagingManifest.from_json(body)
        except ValidationError as exc:
            raise PermanentError(
                "The course's list of uploaded files is damaged, so the videos cannot be found. "
                "Please upload the course again.",
                "invalid_manifest",
            ) from exc

    # --- stopping ----------------------------------------------------------------------------

    def abandon(self) -> None:
        """Stop ffmpeg and give the attempt up (SIGTERM): another encoder will take it over."""
        self._abandon.set()

    def _should_stop(self) -> AttemptError | None:
        if self._abandon.is_set():
            return ClaimLostError("the encoder is shutting down")
        if self._fenced.is_set():
            return ClaimLostError("lease lost while encoding")
        return self.watcher.canceled(self.job_id)
