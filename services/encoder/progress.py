"""Progress, pure: ffmpeg's `-progress` key=value lines to a fraction, and a job's overall percent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.core.payloads import ProgressStep

# What a running attempt is doing, as JobProgress reports it: the contract's own enumeration.
Step = ProgressStep

# Share of one video's work spent in each step, and where the step starts within the video.
_SPANS: Final[dict[Step, tuple[float, float]]] = {
    Step.PROBING: (0.0, 0.02),
    Step.TRANSCODING: (0.02, 0.85),
    Step.THUMBNAILS: (0.85, 0.90),
    Step.UPLOADING: (0.90, 1.0),
}


@dataclass
class ProgressParser:
    """Folds ffmpeg `-progress` lines into the fraction of `duration_s` encoded so far."""

    duration_s: float
    fraction: float = 0.0
    ended: bool = False

    def feed(self, line: str) -> float | None:
        """The new fraction when `line` completes a progress block, else None."""
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" or key == "out_time_ms":
            # Both are microseconds in ffmpeg 4–7 (out_time_ms is misnamed); "N/A" before the first frame.
            try:
                seconds = int(value) / 1_000_000
            except ValueError:
                return None
            if self.duration_s > 0:
                self.fraction = min(1.0, max(self.fraction, seconds / self.duration_s))
            return None
        if key == "progress":
            if value == "end":
                self.ended = True
                self.fraction = 1.0
            return self.fraction
        return None


def overall_percent(video_index: int, video_count: int, step: Step, fraction: float) -> float:
    """The job's percent when video `video_index` of `video_count` is `fraction` through `step`."""
    start, end = _SPANS[step]
    within_video = start + (end - start) * min(1.0, max(0.0, fraction))
    return round(100.0 * (video_index + within_video) / max(1, video_count), 1)
