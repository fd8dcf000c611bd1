"""The job runner: one attempt of one job, in a worker thread, from claim to final event.

The main thread keeps polling Kafka (membership) while this runs for as long as the encode takes.
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
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg
from botocore.exceptions import ClientError
from confluent_kafka import KafkaError, Producer
from pydantic import ValidationError

from services.core import bus, codec, faults
from services.core.manifest import StagedVideo, StagingManifest
from services.core.messages import Envelope, Payload, new_message
from services.core.payloads import (
    JobCanceled,
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobProgress,
    JobRetryScheduled,
    JobStalled,
    JobStarted,
    PublishCourse,
    PublishedVideo,
    Rendition,
    ThumbnailSaved,
    VideoEncoded,
)
from services.core.settings import Settings
from services.core.storage import is_missing_object, public_url
from services.core.transactions import AtomicPublisher
from services.encoder import ladder as hls
from services.encoder.cancel import CancelWatcher
from services.encoder.claims import ClaimStore, Decision
from services.encoder.errors import (
    AttemptError,
    CanceledError,
    ClaimLostError,
    PermanentError,
    TimeLimitError,
    classify,
    for_people,
    missing_input,
)
from services.encoder.probe import check_limits, describe, probe
from services.encoder.process import run_ffmpeg
from services.encoder.progress import ProgressParser, Step, overall_percent
from services.encoder.thumbnails import check_image, make_images
from services.encoder.upload import tree, upload_files

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("coursecast.encoder")

NOT_BEFORE_HEADER = "coursecast.not_before"
# Progress is looked at this often, and reported when it moved this much (or the step changed).
PROGRESS_CHECK_S = 1.0
PROGRESS_REPORT_PERCENT = 5.0
# Longest wait, before JobStarted, for the cancel watcher to read what is queued behind the command.
CANCEL_CATCH_UP_S = 3.0
# Taking the claim's row lock for the final events is tried this many times, on a fresh connection
# each time, when Postgres drops the connection before anything was published.
FINISH_TRIES = 4


class Outcome(StrEnum):
    """How an attempt ended, for the consumer loop."""

    COMPLETED = "completed"
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


class Publisher:
    """Thread-safe producer of this encoder's events and retry commands; every call waits for acks=all."""

    def __init__(self, producer: Producer, settings: Settings, name: str) -> None:
        self._producer = producer
        self._settings = settings
        self.name = name
        self._lock = threading.Lock()
        # A transactional id unique to this process (claims, not Kafka fencing, exclude zombies).
        self._atomic = AtomicPublisher(settings, "encoder", f"coursecast-encoder-{name}")

    def event(self, data: Payload, job_id: UUID, attempt: int) -> None:
        """Publish one event and wait for its acknowledgement."""
        message = new_message(data, job_id=job_id, attempt=attempt, producer=self.name)
        with self._lock:
            bus.publish(self._producer, self._settings.events_topic, [message])

    def together(self, batch: Sequence[tuple[str, Envelope]]) -> None:
        """Publish (topic, message) pairs in one Kafka transaction: all of them or none."""
        self._atomic.publish(batch)

    def retry_command(self, command: Envelope[PublishCourse], next_attempt: int, not_before: float) -> None:
        """Put the next attempt's PublishCourse on the retry topic, due at `not_before` (epoch s)."""
        message = new_message(
            command.data,
            job_id=command.job_id,
            attempt=next_attempt,
            producer=self.name,
        )
        reports: list[KafkaError | None] = []
        with self._lock:
            self._producer.produce(
                self._settings.commands_retry_topic,
                value=codec.encode(message),
                key=message.kafka_key(),
                headers=[(NOT_BEFORE_HEADER, f"{not_before:.3f}".encode("ascii"))],
                on_delivery=lambda err, _m: reports.append(err),
            )
            bus.await_reports(self._producer, lambda: bool(reports))
        if reports[0] is not None:
            raise bus.DeliveryFailedError(f"retry command not acknowledged: {reports[0]}")


class JobRunner:
    """Runs one claimed attempt to its final event; `run` is the worker thread's body."""

    def __init__(
        self,
        settings: Settings,
        command: Envelope[PublishCourse],
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
        self._done = threading.Event()
        self._deadline = 0.0
        self._step = Step.PROBING
        self._video_index = 0
        self._percent = 0.0
        self._state_lock = threading.Lock()
        self._log_extra = {"job_id": str(self.job_id), "attempt": self.attempt}

    # --- the attempt ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run the attempt; store the result for the consumer thread. Never raises."""
        try:
            self.result = self._run()
        except Exception:
            log.exception("attempt could not publish its final event", extra=self._log_extra)
            self.result = RunResult(Outcome.UNPUBLISHED)
        finally:
            self._done.set()
            self.claims.close()

    def _run(self) -> RunResult:
        self._deadline = time.monotonic() + self.settings.encode_time_limit_s
        if self.decision.ends_dead_attempt:
            return self._end_dead_attempt()
        try:
            self.watcher.wait_caught_up(CANCEL_CATCH_UP_S)
            if (canceled := self.watcher.canceled(self.job_id)) is not None:
                raise canceled
            self.publisher.event(JobStarted(worker=self.publisher.name), self.job_id, self.attempt)
            if not self.claims.mark_started(self.job_id, self.attempt):
                raise ClaimLostError("claim taken over before the start")
            faults.reach("encoder.after_started")
            heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
            heartbeat.start()
            try:
                videos = self._encode_all()
            finally:
                self._done.set()
                heartbeat.join()
            faults.reach("encoder.after_upload")
            completed = JobCompleted(outputs=JobOutputs(videos=tuple(videos)))
            return self._finish(Outcome.COMPLETED, [completed], delete_staging=True)
        except CanceledError as exc:
            ended = JobCanceled(requested_by=exc.requested_by, reason=exc.reason or None)
            return self._finish(Outcome.CANCELED, [ended], delete_staging=True)
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
                        self.publisher.event(data, self.job_id, self.attempt)
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
            batch.append((self.settings.events_topic, self._stalled_event(dead, next_attempt)))
        if next_attempt is not None:
            command = new_message(
                self.command.data,
                job_id=self.job_id,
                attempt=next_attempt,
                producer=self.publisher.name,
            )
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

    def _stalled_event(self, stalled: int, next_attempt: int | None) -> Envelope:
        if next_attempt is not None:
            outcome = f" The job goes back to the queue as attempt {next_attempt}."
        else:
            outcome = (
                f" It was attempt {stalled} of {self.settings.max_attempts}; retry the job to run it again."
            )
        data = JobStalled(
            last_heartbeat_at=None,
            stall_timeout_s=self.settings.encoder_lease_s,
            will_retry=next_attempt is not None,
            message=(
                f"The encoder running attempt {stalled} stopped responding (its lease of "
                f"{self.settings.encoder_lease_s} s expired)." + outcome
            ),
        )
        return new_message(
            data,
            job_id=self.job_id,
            attempt=stalled,
            producer=self.publisher.name,
        )

    # --- the work ------------------------------------------------------------------------------

    def _encode_all(self) -> list[PublishedVideo]:
        manifest = self._load_manifest()
        workdir = Path(tempfile.mkdtemp(prefix=f"coursecast-{self.job_id}-{self.attempt}-"))
        try:
            videos = sorted(manifest.videos, key=lambda v: v.index)
            return [
                self._encode_video(video, position, len(videos), workdir)
                for position, video in enumerate(videos)
            ]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _load_manifest(self) -> StagingManifest:
        key = self.command.data.manifest_key
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

    def _encode_video(self, video: StagedVideo, position: int, count: int, workdir: Path) -> PublishedVideo:
        index = video.index
        folder = workdir / str(index)
        out_dir = folder / "hls"
        images = folder / "images"
        out_dir.mkdir(parents=True)
        images.mkdir()
        self._set_step(position, count, Step.PROBING, 0.0)
        source_path = self._download(
            video.key, folder / f"source{PurePosixPath(video.key).suffix}", video.filename
        )
        thumb_path = None
        if video.thumbnail is not None:
            suffix = PurePosixPath(video.thumbnail.key).suffix
            thumb_path = self._download(
                video.thumbnail.key, folder / f"uploaded{suffix}", video.thumbnail.filename
            )
            # An image over the pixel limit fails the job now, not after the whole encode.
            check_image(
                thumb_path,
                video.thumbnail.filename,
                self.settings.max_image_pixels,
                self.settings.probe_timeout_s,
            )
        self._check()
        source = describe(probe(source_path, video.filename, self.settings.probe_timeout_s), video.filename)
        check_limits(
            source,
            video.filename,
            self.settings.max_video_duration_s,
            self.settings.max_video_width,
            self.settings.max_video_height,
        )
        renditions = hls.choose_ladder(source)

        self._set_step(position, count, Step.TRANSCODING, 0.0)
        argv = hls.hls_command(
            source_path,
            out_dir,
            renditions,
            preset=self.settings.encoder_x264_preset,
            realtime_input=self.settings.encoder_realtime_input,
        )
        run_ffmpeg(
            argv,
            deadline=self._deadline,
            time_limit_s=self.settings.encode_time_limit_s,
            should_stop=self._should_stop,
            parser=ProgressParser(source.duration_s),
            on_progress=lambda f: self._set_step(position, count, Step.TRANSCODING, f),
            what=f"video {video.filename!r}",
        )

        self._set_step(position, count, Step.THUMBNAILS, 0.0)
        thumbnail, poster, image_source = make_images(
            source_path,
            source,
            thumb_path,
            images,
            deadline=self._deadline,
            time_limit_s=self.settings.encode_time_limit_s,
            should_stop=self._should_stop,
            max_image_pixels=self.settings.max_image_pixels,
            probe_timeout_s=self.settings.probe_timeout_s,
            uploaded_filename=video.thumbnail.filename if video.thumbnail is not None else None,
        )

        self._set_step(position, count, Step.UPLOADING, 0.0)
        self._check()
        prefix = f"hls/{self.job_id}/{self.attempt}/{index}"
        files = tree(out_dir, prefix)
        files[f"{prefix}/thumbnail.webp"] = thumbnail
        if poster is not None:
            files[f"{prefix}/poster.webp"] = poster
        uploaded = upload_files(
            self.s3, self.settings.s3_bucket, files, self.settings.encoder_upload_concurrency
        )
        log.info(
            "uploaded",
            extra={
                **self._log_extra,
                "event": "upload_completed",
                "video_index": index,
                "files": uploaded.files,
                "bytes": uploaded.bytes,
                "seconds": round(uploaded.seconds, 3),
            },
        )
        self._check()

        variants = hls.parse_master((out_dir / hls.MASTER_NAME).read_text())
        rendition_list = tuple(
            Rendition(
                name=rendition.name,
                width=variant.width or rendition.width,
                height=variant.height or rendition.height,
                bandwidth=variant.bandwidth or rendition.bandwidth,
                codecs=variant.codecs or hls.codecs_string(rendition),
            )
            for rendition, variant in zip(renditions, variants, strict=False)
        )
        master_url = public_url(self.settings, f"{prefix}/{hls.MASTER_NAME}")
        thumbnail_url = public_url(self.settings, f"{prefix}/thumbnail.webp")
        poster_url = public_url(self.settings, f"{prefix}/poster.webp") if poster is not None else None
        duration = round(source.duration_s, 3)
        self.publisher.event(
            VideoEncoded(
                video_index=index,
                master_playlist_url=master_url,
                renditions=rendition_list,
                duration_s=duration,
            ),
            self.job_id,
            self.attempt,
        )
        self.publisher.event(
            ThumbnailSaved(video_index=index, kind="thumbnail", source=image_source, url=thumbnail_url),
            self.job_id,
            self.attempt,
        )
        if poster_url is not None:
            self.publisher.event(
                ThumbnailSaved(video_index=index, kind="poster", source="frame", url=poster_url),
                self.job_id,
                self.attempt,
            )
        return PublishedVideo(
            video_index=index,
            master_playlist_url=master_url,
            renditions=rendition_list,
            duration_s=duration,
            thumbnail_url=thumbnail_url,
            poster_url=poster_url,
        )

    def _download(self, key: str, path: Path, filename: str) -> Path:
        try:
            self.s3.download_file(self.settings.s3_bucket, key, str(path))
        except ClientError as exc:
            if is_missing_object(exc) or exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise missing_input(repr(filename)) from None
            raise
        return path

    # --- liveness, limits, cancel --------------------------------------------------------------

    def abandon(self) -> None:
        """Stop ffmpeg and give the attempt up (SIGTERM): another encoder will take it over."""
        self._abandon.set()

    def _should_stop(self) -> AttemptError | None:
        if self._abandon.is_set():
            return ClaimLostError("the encoder is shutting down")
        if self._fenced.is_set():
            return ClaimLostError("lease lost while encoding")
        return self.watcher.canceled(self.job_id)

    def _check(self) -> None:
        """Between steps: raise what would have stopped ffmpeg (time limit, cancel, lost claim)."""
        if time.monotonic() >= self._deadline:
            raise TimeLimitError(
                f"The job took longer than the time limit of {self.settings.encode_time_limit_s} s "
                "and was stopped."
            )
        stop = self._should_stop()
        if stop is not None:
            raise stop

    def _set_step(self, position: int, count: int, step: Step, fraction: float) -> None:
        with self._state_lock:
            self._step, self._video_index = step, position
            self._percent = overall_percent(position, count, step, fraction)

    def _heartbeat(self) -> None:
        """G2: JobProgress at least every heartbeat interval, and the lease renewed with it (G1).

        Between heartbeats, progress is also reported as soon as it moves by PROGRESS_REPORT_PERCENT
        or the step changes, so a person watching sees the encode advance, not only a pulse.

        The thread outlives any error (a Postgres restart, a terminated connection, a broker away):
        it logs it, reconnects on its own connection, and tries again at the next check, a second
        later. It stops only when the attempt is done or the lease turns out to be someone else's.
        """
        interval = min(self.settings.heartbeat_interval_s, max(1.0, self.settings.encoder_lease_s / 3))
        last_sent, last_percent, last_step = time.monotonic(), 0.0, self._step
        lease: ClaimStore | None = None
        retry_now = False
        try:
            while not self._done.wait(min(interval, PROGRESS_CHECK_S)):
                with self._state_lock:
                    percent, step = self._percent, self._step
                    data = JobProgress(percent=percent, step=step, video_index=self._video_index)
                due = retry_now or time.monotonic() - last_sent >= interval
                moved = percent - last_percent >= PROGRESS_REPORT_PERCENT or step != last_step
                if not (due or moved):
                    continue
                last_sent, last_percent, last_step = time.monotonic(), percent, step
                retry_now = False
                try:
                    if lease is None:
                        lease = self._open_claims() if self._open_claims is not None else self.claims
                    if not lease.renew(self.job_id, self.attempt):
                        log.warning("lease lost; stopping", extra=self._log_extra)
                        self._fenced.set()
                        return
                except Exception:
                    log.warning("lease not renewed; reconnecting", exc_info=True, extra=self._log_extra)
                    retry_now = True
                    if lease is not None and lease is not self.claims:
                        with contextlib.suppress(Exception):
                            lease.close()
                    lease = None
                try:
                    self.publisher.event(data, self.job_id, self.attempt)
                except Exception:
                    log.warning("heartbeat not acknowledged", exc_info=True, extra=self._log_extra)
                    retry_now = True
        finally:
            if lease is not None and lease is not self.claims:
                with contextlib.suppress(Exception):
                    lease.close()
