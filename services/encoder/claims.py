"""Claims (G1): which encoder owns which attempt of a job, as leases in Postgres, and the pure decision
of what a delivered PublishCourse should do given the claim and the job's projected status.

A command may be delivered many times (a rebalance, a crash before the commit, a producer retry, an
operator replay). Only the delivery that wins the claim runs the attempt; a claim is re-checked,
under a row lock, in the same transaction that publishes the attempt's final events, so an encoder
that lost its claim (its lease expired while it was paused or partitioned away) publishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from services.core.jobs import JobStatus
from services.core.migrations import migrate

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Claim:
    """A row of encoder_claims, with the lease judged against the database clock."""

    job_id: UUID
    attempt: int
    origin_attempt: int
    worker: str
    state: str
    started: bool
    outcome: str | None
    lease_expires_at: datetime
    lease_expired: bool


@dataclass(frozen=True, slots=True)
class JobView:
    """The job as the projector last wrote it (it may lag the log by a moment)."""

    status: JobStatus
    attempt: int
    # Why the job was last requeued or failed ("stalled": by a stall verdict, whose command of the
    # next attempt was produced in the same transaction).
    error_type: str | None = None
    # When it completed (the event's time): its sources are retained from then on (staging.py).
    completed_at: datetime | None = None


class Verdict(StrEnum):
    """What to do with one delivery of PublishCourse."""

    RUN = "run"  # claim `attempt` and run it
    # The worker of `stalled_attempt` died mid-run: end that attempt with JobStalled(will_retry) and,
    # in the same Kafka transaction, the PublishCourse of `next_attempt`, which then runs like any other.
    TAKE_OVER = "take_over"
    FAIL_STALLED = "fail_stalled"  # the worker died on the last allowed attempt: end the job failed
    # The job was requeued as `attempt` + 1 but the claim of `attempt` was never closed: its worker
    # died between the requeuing event and its command. Produce that command (again: a duplicate is
    # skipped by the claim), so the job never stays queued without one.
    REQUEUE = "requeue"
    WAIT = "wait"  # a live worker owns it: look again when its lease would expire
    SKIP = "skip"  # a duplicate or stale delivery: acknowledge it and do nothing


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict with the attempt it concerns and the reason, for the log line.

    For TAKE_OVER and FAIL_STALLED, `attempt` is the dead worker's attempt, the one the claim is won
    for and ended; the next attempt, if any, runs from its own command, never inside this delivery.
    """

    verdict: Verdict
    reason: str
    attempt: int = 0
    stalled_attempt: int | None = None

    @property
    def next_attempt(self) -> int | None:
        """The attempt whose command this delivery produces (with the JobStalled, for a takeover)."""
        return self.attempt + 1 if self.verdict in (Verdict.TAKE_OVER, Verdict.REQUEUE) else None

    @property
    def ends_dead_attempt(self) -> bool:
        """True when the delivery closes a dead worker's attempt instead of running one."""
        return self.verdict in (Verdict.TAKE_OVER, Verdict.FAIL_STALLED, Verdict.REQUEUE)


def decide(command_attempt: int, claim: Claim | None, job: JobView | None, max_attempts: int) -> Decision:
    """What a delivery of PublishCourse for `command_attempt` must do (pure).

    Whoever ends a dead attempt N with a retry — this encoder's takeover or the watchdog's verdict —
    also produces the PublishCourse of N + 1 in the same transaction, so a job requeued as N + 1
    always has a command to run it: the command of N is then stale (SKIP), and of two commands of
    N + 1 only the first wins the claim (the other WAITs, then SKIPs).
    """
    a = command_attempt
    if (
        job is not None
        and job.status == JobStatus.QUEUED
        and job.attempt == a + 1
        and claim is not None
        and (claim.attempt, claim.origin_attempt, claim.state) == (a, a, "running")
        and claim.started
    ):
        # The job was requeued but the attempt's claim is still open: its worker is producing the
        # next command (wait for it to close the claim), or died before it could.
        if not claim.lease_expired:
            if job.error_type == "stalled":
                # Requeued by a stall verdict: its command of attempt a + 1 exists; this one is stale.
                return Decision(Verdict.SKIP, f"attempt {a} is stale: the job is on attempt {job.attempt}")
            return Decision(
                Verdict.WAIT, f"attempt {a} is being closed by {claim.worker}", attempt=claim.attempt
            )
        return Decision(
            Verdict.REQUEUE,
            f"the job was requeued as attempt {a + 1} but worker {claim.worker} died before closing "
            f"attempt {a}; producing the command of attempt {a + 1}",
            attempt=a,
        )
    if job is not None:
        if job.status in (JobStatus.COMPLETED, JobStatus.CANCELED):
            return Decision(Verdict.SKIP, f"job is {job.status}; redelivered command of attempt {a} ignored")
        if job.attempt > a:
            return Decision(Verdict.SKIP, f"attempt {a} is stale: the job is on attempt {job.attempt}")
        if job.status == JobStatus.FAILED and job.attempt == a:
            return Decision(Verdict.SKIP, f"attempt {a} already failed; only the owner's retry runs it again")
    if claim is None or (claim.attempt < a and claim.origin_attempt < a):
        # A dead or fenced claim of an earlier attempt does not block this one: its results are
        # fenced by the claim from now on (finishing() finds it is no longer theirs).
        return Decision(Verdict.RUN, f"attempt {a} is unclaimed", attempt=a)
    if claim.origin_attempt != a:
        return Decision(
            Verdict.SKIP, f"attempt {a} is stale: attempt {claim.attempt} was claimed by {claim.worker}"
        )
    if claim.state == "done":
        return Decision(
            Verdict.SKIP, f"attempt {claim.attempt} already ran ({claim.outcome}); duplicate delivery"
        )
    if not claim.lease_expired:
        return Decision(
            Verdict.WAIT, f"attempt {claim.attempt} is running on {claim.worker}", attempt=claim.attempt
        )
    if not claim.started:
        # The dead worker never got JobStarted acknowledged: run the claimed attempt again; a
        # JobStarted it did write makes ours a harmless rejection.
        return Decision(
            Verdict.RUN,
            f"worker {claim.worker} died before starting attempt {claim.attempt}",
            attempt=claim.attempt,
        )
    if claim.attempt >= max_attempts:
        return Decision(
            Verdict.FAIL_STALLED,
            f"worker {claim.worker} died during attempt {claim.attempt}, the last allowed",
            attempt=claim.attempt,
            stalled_attempt=claim.attempt,
        )
    return Decision(
        Verdict.TAKE_OVER,
        f"worker {claim.worker} died during attempt {claim.attempt}; "
        f"requeuing the job as attempt {claim.attempt + 1}",
        attempt=claim.attempt,
        stalled_attempt=claim.attempt,
    )


_CLAIM_COLUMNS = (
    "job_id, attempt, origin_attempt, worker, state, started, outcome, lease_expires_at,"
    " lease_expires_at < now() AS lease_expired"
)


class ClaimStore:
    """encoder_claims (and a read of publish_jobs) in the deployment's Postgres schema."""

    def __init__(self, conn: Connection, worker: str, lease_s: int) -> None:
        self._conn = conn
        self.worker = worker
        self.lease_s = lease_s

    @classmethod
    def open(cls, database_url: str, schema: str, worker: str, lease_s: int) -> ClaimStore:
        """Connect, apply the schema's pending migrations (claims and the status table), and use `schema`."""
        conn: Connection = psycopg.connect(database_url, autocommit=True)
        migrate(conn, schema)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return cls(conn, worker, lease_s)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def claim(self, job_id: UUID) -> Claim | None:
        """The job's claim row, or None."""
        row = self._conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM encoder_claims WHERE job_id = %s", (job_id,)
        ).fetchone()
        return Claim(*row) if row else None

    def job(self, job_id: UUID) -> JobView | None:
        """The job's projected status and attempt, or None if the projector has not seen it yet."""
        row = self._conn.execute(
            "SELECT status, attempt, error_type, completed_at FROM publish_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
        return JobView(JobStatus(row[0]), row[1], row[2], row[3]) if row else None

    def acquire(self, job_id: UUID, decision: Decision, command_attempt: int, seen: Claim | None) -> bool:
        """Win the claim the decision calls for; False when another process won it first.

        A takeover names the exact row it judged dead (`seen`), so two survivors cannot both win it.
        """
        row = self._conn.execute(
            """
            INSERT INTO encoder_claims AS c
                (job_id, attempt, origin_attempt, worker, state, started, lease_expires_at)
            VALUES (%(job)s, %(attempt)s, %(origin)s, %(worker)s, 'running', false,
                    now() + make_interval(secs => %(lease)s))
            ON CONFLICT (job_id) DO UPDATE SET
                attempt = EXCLUDED.attempt, origin_attempt = EXCLUDED.origin_attempt,
                worker = EXCLUDED.worker, state = 'running', outcome = NULL,
                -- A takeover keeps `started`: if its final events fail, the next look still sees
                -- a started attempt to end (not one to run again).
                started = CASE WHEN %(takeover)s THEN c.started ELSE false END,
                lease_expires_at = EXCLUDED.lease_expires_at, claimed_at = now(), updated_at = now()
            WHERE (c.attempt < EXCLUDED.origin_attempt AND c.origin_attempt < EXCLUDED.origin_attempt)
               OR (c.origin_attempt = EXCLUDED.origin_attempt AND c.state = 'running'
                   AND c.lease_expires_at < now() AND c.attempt = %(seen)s AND c.started = %(seen_started)s)
            RETURNING job_id
            """,
            {
                "job": job_id,
                "attempt": decision.attempt,
                "origin": command_attempt,
                "worker": self.worker,
                "lease": self.lease_s,
                "seen": seen.attempt if seen is not None else 0,
                "seen_started": seen.started if seen is not None else False,
                "takeover": decision.ends_dead_attempt,
            },
        ).fetchone()
        return row is not None

    def mark_started(self, job_id: UUID, attempt: int) -> bool:
        """Record that JobStarted of our attempt is acknowledged; False if the claim is no longer ours."""
        return self._update(job_id, attempt, "started = true")

    def renew(self, job_id: UUID, attempt: int) -> bool:
        """Extend our lease (at every heartbeat); False if the claim is no longer ours."""
        return self._update(job_id, attempt, "lease_expires_at = now() + make_interval(secs => %(lease)s)")

    def release(self, job_id: UUID, attempt: int) -> bool:
        """Expire our lease now (graceful shutdown), so the next owner takes the job over at once."""
        return self._update(job_id, attempt, "lease_expires_at = now() - interval '1 second'")

    def _update(self, job_id: UUID, attempt: int, assignment: str) -> bool:
        row = self._conn.execute(
            f"UPDATE encoder_claims SET {assignment}, updated_at = now()"
            " WHERE job_id = %(job)s AND attempt = %(attempt)s AND worker = %(worker)s AND state = 'running'"
            " RETURNING job_id",
            {"job": job_id, "attempt": attempt, "worker": self.worker, "lease": self.lease_s},
        ).fetchone()
        return row is not None

    @contextmanager
    def finishing(self, job_id: UUID, attempt: int, outcome: str) -> Iterator[bool]:
        """Lock our claim; yields whether it is still ours. On a clean exit the claim is marked done.

        G1: the caller publishes the attempt's final events inside this block, so they are published
        at most once: a competitor's takeover blocks on the row lock and then finds the claim done.
        If publishing raises, the transaction rolls back and the claim stays running.
        """
        with self._conn.transaction():
            row = self._conn.execute(
                "SELECT 1 FROM encoder_claims WHERE job_id = %s AND attempt = %s AND worker = %s"
                " AND state = 'running' FOR UPDATE",
                (job_id, attempt, self.worker),
            ).fetchone()
            yield row is not None
            if row is not None:
                self._conn.execute(
                    "UPDATE encoder_claims SET state = 'done', outcome = %s, updated_at = now()"
                    " WHERE job_id = %s",
                    (outcome, job_id),
                )

    @contextmanager
    def closing_queued(self, job_id: UUID, attempt: int, outcome: str) -> Iterator[bool]:
        """`close_queued` in a transaction that commits only when the block exits cleanly.

        The caller publishes the job's final event inside the block: the claim is marked done only
        after that event is acknowledged, and a crash or a failed publish leaves the claim as it was,
        so the redelivered command finds the job still to be ended (or ended by the log).
        """
        with self._conn.transaction():
            yield self.close_queued(job_id, attempt, outcome)

    def close_queued(self, job_id: UUID, attempt: int, outcome: str) -> bool:
        """Mark a job that no encoder is running as done (canceled while queued); False if one is."""
        row = self._conn.execute(
            """
            INSERT INTO encoder_claims AS c
                (job_id, attempt, origin_attempt, worker, state, outcome, lease_expires_at)
            VALUES (%(job)s, %(attempt)s, %(attempt)s, %(worker)s, 'done', %(outcome)s, now())
            ON CONFLICT (job_id) DO UPDATE SET state = 'done', outcome = EXCLUDED.outcome,
                attempt = GREATEST(c.attempt, EXCLUDED.attempt),
                origin_attempt = GREATEST(c.origin_attempt, EXCLUDED.attempt),
                worker = EXCLUDED.worker, updated_at = now()
            -- Only a job waiting for its next attempt, a course whose work is now its tasks' (planned),
            -- or one whose worker is dead, is ours to end.
            WHERE (c.state = 'done' AND c.outcome IN ('retry_scheduled', 'planned'))
               OR (c.state = 'running' AND c.lease_expires_at < now())
            RETURNING job_id
            """,
            {"job": job_id, "attempt": attempt, "worker": self.worker, "outcome": outcome},
        ).fetchone()
        return row is not None
