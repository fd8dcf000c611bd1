"""Liveness of running jobs, derived from the log alone: the watchdog's pure half (no I/O, no clock).

`observe` folds a job's events into what the watchdog needs to know — is an attempt running, since
when, and when did its worker last speak — and `judge` decides, given the time now, whether that
silence or that duration deserves a verdict (G2). The faust app in watchdog.py only feeds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core.messages import Envelope, MessageType

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
    }
)


@dataclass(frozen=True, slots=True)
class Running:
    """An attempt that has started and not ended, as far as the log says."""

    attempt: int
    started_at: datetime
    last_seen_at: datetime
    judged: bool = False  # a verdict was already sent; never send a second one for this attempt

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form for the watchdog's table."""
        return {
            "attempt": self.attempt,
            "started_at": self.started_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "judged": self.judged,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Running:
        """The inverse of to_json."""
        return cls(
            attempt=int(value["attempt"]),
            started_at=datetime.fromisoformat(value["started_at"]),
            last_seen_at=datetime.fromisoformat(value["last_seen_at"]),
            judged=bool(value.get("judged", False)),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """An explicit end for a silent or overlong attempt: JobStalled or JobTimedOut, never retried here."""

    type: MessageType
    attempt: int
    data: dict[str, Any]


def observe(current: Running | None, event: Envelope) -> Running | None:
    """The job's liveness after `event` (None: no attempt is running)."""
    if event.type == M.JOB_STARTED:
        if current is not None and current.attempt >= event.attempt:
            return current  # a redelivered or competing start of an attempt already running
        return Running(event.attempt, event.occurred_at, event.occurred_at)
    if current is None or event.attempt != current.attempt:
        return current  # events of other attempts say nothing about this one's worker
    if event.type in _SIGNS_OF_LIFE:
        return Running(
            current.attempt, current.started_at, max(current.last_seen_at, event.occurred_at), current.judged
        )
    if event.type in _ENDINGS:
        return None
    return current


def judge(
    running: Running, now: datetime, stall_timeout_s: float, time_limit_s: float, grace_s: float
) -> Verdict | None:
    """A verdict when the attempt's worker is silent past the stall timeout, or the attempt is past
    its time limit plus a grace period in which the encoder should have stopped it itself."""
    if running.judged:
        return None
    silent_s = (now - running.last_seen_at).total_seconds()
    running_s = (now - running.started_at).total_seconds()
    if running_s > time_limit_s + grace_s:
        return Verdict(
            M.JOB_TIMED_OUT,
            running.attempt,
            {
                "time_limit_s": int(time_limit_s),
                "will_retry": False,
                "message": (
                    f"The encode ran {running_s:.0f} s, past its {time_limit_s:.0f} s limit, and its "
                    "worker did not stop it; the watchdog ended the job."
                ),
            },
        )
    if silent_s > stall_timeout_s:
        return Verdict(
            M.JOB_STALLED,
            running.attempt,
            {
                "last_heartbeat_at": running.last_seen_at.isoformat(),
                "stall_timeout_s": int(stall_timeout_s),
                "will_retry": False,
                "message": (
                    f"No progress from the encoder for {silent_s:.0f} s (the limit is "
                    f"{stall_timeout_s:.0f} s); its worker is presumed dead. Retry the job to run it again."
                ),
            },
        )
    return None
