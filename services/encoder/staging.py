"""Staging cleanup: a job's staging/<job_id>/ files are deleted only once its end is in the status table,
and a completed job's (its course's uploaded sources) only once their retention has run out.

An encoder that published JobCompleted (or JobCanceled) does not know whether the projector accepted
it: the job may have been canceled meanwhile, or the attempt may have gone stale, and then the event
is rejected (G4) and the job may still need its files (a failed job the owner retries runs again from
staging). So the encoder hands the job to this janitor, which reads publish_jobs — the projector's
record of what the log decided — and deletes staging only when it shows the very end this encoder
published, for the very attempt. A rejected end keeps the files. If the projector has not applied the
end within COURSECAST_STAGING_CLEANUP_WAIT_S, the files are left for `coursecast staging sweep`, which
applies the same rule to every staging folder.

Sources kept: a completed job's files are its course's uploaded videos, which a re-encode reads
again (`coursecast reencode`). They are retained COURSECAST_SOURCE_RETENTION_DAYS after the
completion the status table shows, and then deleted by `coursecast staging sweep`; with a retention
of 0 the janitor deletes them at once, as it does a canceled job's.

Under fan-out (docs/fan-out.md) a course's attempt on an encoder only plans: it ends 'planned' and
hands nothing to this janitor, because the tasks go on reading staging/<course>/. The rule is the
same, applied by the process that sees each end:
- completed: the conductor, which publishes the course's JobCompleted, deletes the staging once its
  book folds that completion back from the log (an accepted end, never a rejected one), or leaves
  the sources to their retention (services/conductor/worker.py);
- canceled: the encoder that ends the planned course (consumer._cancel_idle_job) hands it to this
  janitor, as before;
- failed: kept, for the owner's retry, which plans again from the same sources;
- anything left over (a process died, a retention ran out): `coursecast staging sweep`.
A task has no staging of its own: its end never deletes anything.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from services.core.jobs import JobStatus
from services.core.manifest import STAGING_ROOT, staging_prefix
from services.core.storage import delete_prefix
from services.encoder.claims import ClaimStore, JobView

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("coursecast.encoder.staging")

CHECK_EVERY_S = 1.0
# On shutdown, pending jobs get this long for one last look before the process exits.
DRAIN_S = 5.0


class Cleanup(StrEnum):
    """What the status table says about a job's staging files."""

    DELETE = "delete"  # the end we published is the job's end: nothing will read staging again
    KEEP = "keep"  # our end was rejected, or the job moved on: its files may still be needed
    WAIT = "wait"  # the projector has not applied our end yet
    RETAIN = "retain"  # a completed job's sources, kept for re-encodes until their retention ends


@dataclass(frozen=True, slots=True)
class PendingCleanup:
    """A job whose end this encoder published, waiting for the projector to apply it."""

    job_id: UUID
    attempt: int
    ended_as: JobStatus
    prefix: str


def judge(pending: PendingCleanup, job: JobView | None, retention: timedelta) -> Cleanup:
    """Delete staging only if publish_jobs shows exactly the end we published, for our attempt, and
    it is not a completion whose sources are retained (pure)."""
    if job is None:
        return Cleanup.WAIT
    if job.status == pending.ended_as and job.attempt == pending.attempt:
        if job.status == JobStatus.COMPLETED and retention > timedelta(0):
            return Cleanup.RETAIN
        return Cleanup.DELETE
    if job.attempt != pending.attempt or job.status in (
        JobStatus.COMPLETED,
        JobStatus.CANCELED,
        JobStatus.FAILED,
    ):
        return Cleanup.KEEP
    return Cleanup.WAIT


def judge_orphan(job: JobView | None, now: datetime, retention: timedelta) -> Cleanup:
    """The sweeper's rule for a staging folder nobody is waiting on: a canceled job loses its files,
    a completed one once `retention` has passed since its completion; failed jobs may be retried,
    unknown ones are left alone (pure)."""
    if job is None:
        return Cleanup.KEEP
    if job.status == JobStatus.CANCELED:
        return Cleanup.DELETE
    if job.status == JobStatus.COMPLETED:
        expired = job.completed_at is None or job.completed_at + retention <= now
        return Cleanup.DELETE if expired else Cleanup.RETAIN
    return Cleanup.KEEP


class StagingJanitor:
    """A thread that deletes staging folders once the status table confirms the end they wait for."""

    def __init__(
        self,
        open_claims: Callable[[], ClaimStore],
        s3: S3Client,
        bucket: str,
        wait_s: float,
        retention: timedelta = timedelta(0),
    ) -> None:
        self._open_claims = open_claims
        self._s3 = s3
        self._bucket = bucket
        self._wait_s = wait_s
        self._retention = retention
        self._pending: dict[PendingCleanup, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="staging-janitor", daemon=True)
        self._store: ClaimStore | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def after_end(self, job_id: UUID, attempt: int, ended_as: JobStatus, prefix: str) -> None:
        """Delete `prefix` once publish_jobs shows the job `ended_as` on `attempt`; keep it otherwise."""
        with self._lock:
            self._pending[PendingCleanup(job_id, attempt, ended_as, prefix)] = time.monotonic() + self._wait_s
        self._wake.set()

    def pending(self) -> list[PendingCleanup]:
        """The jobs still waiting for the projector."""
        with self._lock:
            return list(self._pending)

    def close(self) -> None:
        """Take a last look at what is pending (bounded), then stop; leftovers wait for the sweeper."""
        self._stop.set()
        self._wake.set()
        self._thread.join(DRAIN_S + 10)
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(CHECK_EVERY_S)
            self._wake.clear()
            self._look()
        drain_until = time.monotonic() + DRAIN_S
        while self.pending() and time.monotonic() < drain_until:
            self._look()
            if self.pending():
                time.sleep(0.25)
        for left in self.pending():
            log.warning(
                "staging left for the sweeper: the end was not applied before shutdown",
                extra={"job_id": str(left.job_id), "attempt": left.attempt},
            )

    def _look(self) -> None:
        for item in self.pending():
            try:
                if self._store is None:
                    self._store = self._open_claims()
                verdict = judge(item, self._store.job(item.job_id), self._retention)
                if verdict is Cleanup.DELETE:
                    deleted = delete_prefix(self._s3, self._bucket, item.prefix)
                    log.info(
                        "staging deleted",
                        extra={
                            "job_id": str(item.job_id),
                            "attempt": item.attempt,
                            "objects": deleted,
                            "event": "staging_deleted",
                        },
                    )
            except Exception:
                # Postgres or S3 briefly away: look again at the next round, on a new connection.
                log.warning("staging check failed; trying again", exc_info=True)
                if self._store is not None:
                    with contextlib.suppress(Exception):
                        self._store.close()
                self._store = None
                return
            self._settle(item, verdict)

    def _settle(self, item: PendingCleanup, verdict: Cleanup) -> None:
        extra = {"job_id": str(item.job_id), "attempt": item.attempt}
        with self._lock:
            give_up_at = self._pending.get(item)
            if verdict is Cleanup.WAIT and give_up_at is not None and time.monotonic() < give_up_at:
                return
            self._pending.pop(item, None)
        if verdict is Cleanup.KEEP:
            log.info(
                "staging kept: the job's end is not the one this encoder published",
                extra={**extra, "event": "staging_kept"},
            )
        elif verdict is Cleanup.RETAIN:
            log.info(
                "sources retained for re-encodes; `coursecast staging sweep` deletes them once expired",
                extra={**extra, "event": "sources_retained", "retention_days": self._retention.days},
            )
        elif verdict is Cleanup.WAIT:
            log.warning("staging left for the sweeper: the end was not applied in time", extra=extra)


def staged_job_ids(s3: S3Client, bucket: str) -> Iterator[UUID]:
    """The job id of every folder under staging/ (names that are not job ids are not ours: skipped)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=STAGING_ROOT, Delimiter="/")
    for page in pages:
        for common in page.get("CommonPrefixes", []):
            name = common.get("Prefix", "").removeprefix(STAGING_ROOT).rstrip("/")
            with contextlib.suppress(ValueError):
                yield UUID(name)


def sweep(
    store: ClaimStore, s3: S3Client, bucket: str, retention: timedelta, now: datetime | None = None
) -> list[UUID]:
    """Delete the staging folder of every job the status table shows canceled, or completed more
    than `retention` ago (its retained sources have expired).

    Also for the folders no encoder deleted (it died, or the projector was behind for longer than
    COURSECAST_STAGING_CLEANUP_WAIT_S). Failed, running and unknown jobs keep their files.
    """
    now = now or datetime.now(UTC)
    swept = []
    for job_id in staged_job_ids(s3, bucket):
        if judge_orphan(store.job(job_id), now, retention) is Cleanup.DELETE:
            deleted = delete_prefix(s3, bucket, staging_prefix(job_id))
            log.info("staging swept", extra={"job_id": str(job_id), "objects": deleted})
            swept.append(job_id)
    return swept
