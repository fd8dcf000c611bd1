"""Liveness of running jobs, derived from the log alone: the watchdog's pure half (no I/O, no clock).

`observe` folds a job's events into what the watchdog needs to know — the job's PublishCourse data
(from JobQueued, so a retry can be commanded), whether an attempt is running, since when, and when its
worker last spoke — and `judge` decides, given the time now, whether that silence or that duration
deserves a verdict (G2), and whether the retry policy sends the job back to the queue as the next
attempt or fails it. The faust app in watchdog.py only feeds them.

Times compared are event times (`occurred_at`, stamped by the encoder's clock) against the watchdog's
clock, so every threshold is widened by a clock-skew margin: a worker whose clock runs behind the
watchdog's is never judged silent while it speaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from services.core.messages import Envelope, MessageType
from services.core.payloads import EncodeTask, JobQueued, JobStalled, JobTimedOut, PublishCourse, TaskQueued

M = MessageType

# Events that prove the running attempt's worker is alive.
_SIGNS_OF_LIFE = frozenset({M.JOB_PROGRESS, M.VIDEO_ENCODED, M.THUMBNAIL_SAVED})
# Events after which the attempt is no longer running, whatever comes next.
_ENDINGS = frozenset(
    {
        M.JOB_COMPLETED,
        M.JOB_FAILED,
        M.JOB_CANCELED,
        M.JOB_RETRY_SCHEDULED,
        M.JOB_STALLED,
        M.JOB_TIMED_OUT,
        # A course's attempt that planned it handed its work to its tasks, each watched on its own.
        M.COURSE_PLANNED,
    }
)
# Events after which the job never runs again: the watchdog forgets it.
_TERMINAL = frozenset({M.JOB_COMPLETED, M.JOB_CANCELED, M.TASK_COMPLETED})
# The command that starts an attempt: a course's PublishCourse or a task's EncodeTask.
Command = PublishCourse | EncodeTask
# The watchdog's own name on the envelopes it produces.
WATCHDOG = "watchdog"


@dataclass(frozen=True, slots=True)
class Running:
    """An attempt that has started and not ended, as far as the log says."""

    attempt: int
    started_at: datetime
    last_seen_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form for the watchdog's table."""
        return {
            "attempt": self.attempt,
            "started_at": self.started_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Running:
        """The inverse of to_json."""
        return cls(
            attempt=int(value["attempt"]),
            started_at=datetime.fromisoformat(value["started_at"]),
            last_seen_at=datetime.fromisoformat(value["last_seen_at"]),
        )


@dataclass(frozen=True, slots=True)
class Tracked:
    """What the watchdog knows of one job that has not ended for good."""

    # Every attempt's command data, from JobQueued or TaskQueued; None if never seen.
    command: Command | None
    running: Running | None
    # The course a task belongs to: its verdicts and its next command name it (and are keyed by it).
    course_job_id: UUID | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form for the watchdog's table."""
        value: dict[str, Any] = {
            "command": msgspec.to_builtins(self.command) if self.command is not None else None,
            "running": self.running.to_json() if self.running is not None else None,
        }
        if self.course_job_id is not None:
            value["course_job_id"] = str(self.course_job_id)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Tracked:
        """The inverse of to_json; also reads a table row written before commands were kept."""
        if "attempt" in value:
            return cls(None, Running.from_json(value))
        running, command, course = value.get("running"), value.get("command"), value.get("course_job_id")
        kind: type[Command] = EncodeTask if course is not None else PublishCourse
        return cls(
            msgspec.convert(command, kind) if command is not None else None,
            Running.from_json(running) if running else None,
            UUID(course) if course is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """The thresholds of a judgement, all in seconds, and how many attempts a job gets."""

    stall_timeout_s: float
    time_limit_s: float
    grace_s: float
    clock_skew_s: float
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """An explicit end for a silent or overlong attempt: JobStalled or JobTimedOut, and its retry.

    When `retry` is set the verdict requeues the job as attempt + 1, and its emitter must make that
    attempt's PublishCourse exist atomically with it (`retry` is that command's data).
    """

    attempt: int
    data: JobStalled | JobTimedOut
    retry: Command | None = None
    course_job_id: UUID | None = None

    @property
    def type(self) -> MessageType:
        """JobStalled or JobTimedOut."""
        return self.data.message_type


def observe(current: Tracked | None, event: Envelope) -> Tracked | None:
    """The job's liveness after `event` (None: the job has ended for good, forget it)."""
    if isinstance(event.data, JobQueued | TaskQueued):
        command = (
            event.data.publish_command() if isinstance(event.data, JobQueued) else event.data.encode_command()
        )
        return Tracked(command, current.running if current is not None else None, event.course_job_id)
    if current is None:
        if event.type == M.JOB_STARTED:
            started = Running(event.attempt, event.occurred_at, event.occurred_at)
            return Tracked(None, started, event.course_job_id)
        return None  # a job the watchdog never saw queued nor started: nothing to follow
    running = current.running
    if event.type == M.JOB_STARTED:
        if running is not None and running.attempt >= event.attempt:
            return current  # a redelivered or competing start of an attempt already running
        started = Running(event.attempt, event.occurred_at, event.occurred_at)
        return Tracked(current.command, started, current.course_job_id)
    if event.producer == WATCHDOG:
        # Our own verdict, possibly of a transaction that was aborted (this consumer reads
        # uncommitted records): it must not end the attempt, or an aborted verdict would leave the
        # attempt unjudged forever. The next attempt's JobStarted replaces it once the retry runs.
        return current
    if event.type in _TERMINAL and (running is None or event.attempt >= running.attempt):
        return None
    if running is None or event.attempt != running.attempt:
        return current  # events of other attempts say nothing about this one's worker
    if event.type in _SIGNS_OF_LIFE:
        seen = max(running.last_seen_at, event.occurred_at)
        return Tracked(
            current.command, Running(running.attempt, running.started_at, seen), current.course_job_id
        )
    if event.type in _ENDINGS:
        return Tracked(current.command, None, current.course_job_id)
    return current


def judge(tracked: Tracked, now: datetime, policy: Policy) -> Verdict | None:
    """A verdict when the running attempt's worker is silent past the stall timeout, or the attempt
    is past its time limit plus a grace period in which the encoder should have stopped it itself.

    Both thresholds are widened by the clock-skew margin. The verdict retries the job as the next
    attempt while attempts are left and the job's command is known; otherwise it fails the job.
    """
    running = tracked.running
    if running is None:
        return None
    silent_s = (now - running.last_seen_at).total_seconds()
    running_s = (now - running.started_at).total_seconds()
    will_retry = running.attempt < policy.max_attempts and tracked.command is not None
    retry = tracked.command if will_retry else None
    if will_retry:
        outcome = f" The job goes back to the queue as attempt {running.attempt + 1}."
    elif running.attempt >= policy.max_attempts:
        outcome = (
            f" It was attempt {running.attempt} of {policy.max_attempts}; retry the job to run it again."
        )
    else:
        outcome = " Retry the job to run it again."
    # Silence first: a worker silent past the stall timeout is presumed dead, whatever the run's length,
    # and "stalled" says so; JobTimedOut is for a live worker that overran its limit and did not stop.
    if silent_s > policy.stall_timeout_s + policy.clock_skew_s:
        return Verdict(
            running.attempt,
            JobStalled(
                last_heartbeat_at=running.last_seen_at,
                stall_timeout_s=int(policy.stall_timeout_s),
                will_retry=will_retry,
                message=(
                    f"No progress from the encoder for {silent_s:.0f} s (the limit is "
                    f"{policy.stall_timeout_s:.0f} s); its worker is presumed dead." + outcome
                ),
            ),
            retry,
            tracked.course_job_id,
        )
    if running_s > policy.time_limit_s + policy.grace_s + policy.clock_skew_s:
        return Verdict(
            running.attempt,
            JobTimedOut(
                time_limit_s=int(policy.time_limit_s),
                will_retry=will_retry,
                message=(
                    f"The encode ran {running_s:.0f} s, past its {policy.time_limit_s:.0f} s limit, and "
                    "its worker did not stop it; the watchdog ended the attempt." + outcome
                ),
            ),
            retry,
            tracked.course_job_id,
        )
    return None
