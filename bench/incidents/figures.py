"""What each incident scenario measured, on either side, in the same terms."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RedeliveryFigures:
    """Incident 1: one job whose publish message is delivered again and again."""

    deliveries: int  # times the task / command reached a worker
    runs: int  # times the job's work was started (task body entered / JobStarted)
    encodes: int  # ffmpeg encodes of the job's video
    completions: int  # times the job was marked completed
    final_status: str
    completed_at_set: bool
    completed_at_kept: bool  # completed_at still equals the first completion's
    final_error: str | None
    duration_s: float

    @property
    def corrupted(self) -> bool:
        """The incident's row: completed once, and now something else while completed_at stays set."""
        return self.completions >= 1 and self.final_status != "completed"

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {**asdict(self), "corrupted": self.corrupted}


@dataclass(frozen=True)
class StoppedEncodeFigures:
    """Incident 2 and its variant: one job whose encode is stopped from outside — by the hard time
    limit, or by its worker process dying (SIGKILL, as the time limit did to Celery's pool process)."""

    cause: str  # what stopped the encode
    final_status: str
    error_type: str | None
    error_message: str | None
    unexplained_s: float  # seconds after the stop during which the job's row said nothing of why
    explained: bool  # the job's row ended with a reason
    endings_recorded: int  # records that end the job with a reason: failure log lines / terminal events
    ffmpeg_left: int  # ffmpeg processes of the job still alive once the job was judged
    cause_logged: bool  # some process logged what stopped this job's encode, naming the job or its task
    duration_s: float

    @property
    def stuck(self) -> bool:
        """The incident's row: still `processing`, with nobody working on it."""
        return self.final_status == "processing"

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {**asdict(self), "stuck": self.stuck}
