"""Chunk planning, pure: where a long lecture is cut so that several encoders can share its video.

A lecture longer than the chunk length is encoded as consecutive chunks, each its own task. Every
boundary is a multiple of the HLS segment length: the encoder forces a keyframe at every segment
boundary of its OUTPUT (ladder.SEGMENT_S), so a chunk starting at a multiple of it starts on a
keyframe and ends where the next chunk's first segment begins. The stitched playlist is then the
chunks' segments in order, with no partial segment at a seam.

The source's own keyframes do not constrain the boundaries: a chunk's encode seeks the input
accurately (ffmpeg decodes from the input keyframe before the start and drops the frames before it),
so a boundary may fall inside an input GOP. They only cost decoding: `preroll_s` says how far before
its start a chunk's decode begins, which matters for sources with very sparse keyframes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# COURSECAST_CHUNK_S's default: a lecture up to this long is one chunk (one task, as today).
DEFAULT_CHUNK_S: Final = 300
# A last chunk shorter than this share of the chunk length is merged into the one before it.
TAIL_FRACTION: Final = 0.2


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a lecture's video: [start_s, end_s) of the source's timeline."""

    index: int
    start_s: float
    end_s: float
    # Seconds of video decoded and dropped before start_s (the input keyframe at or before it).
    preroll_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def plan_chunks(
    duration_s: float,
    chunk_s: float = DEFAULT_CHUNK_S,
    segment_s: float = 6,
    keyframes_s: Sequence[float] | None = None,
) -> list[Chunk]:
    """The chunks that cover [0, duration_s) exactly, in order, without gaps or overlaps.

    The chunk length is rounded down to a multiple of `segment_s` (at least one segment), so every
    inner boundary is a multiple of it. The last chunk absorbs a tail shorter than TAIL_FRACTION of
    a chunk rather than leaving it a task of its own: at 300 s, 720 s gives 300, 300, 120 and 650 s
    gives 300, 350. `keyframes_s`, the source's keyframe times if the probe read them, only fills in
    each chunk's `preroll_s`.
    """
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"a lecture's duration must be positive, not {duration_s!r}")
    if segment_s <= 0 or chunk_s <= 0:
        raise ValueError("chunk and segment lengths must be positive")
    step = max(1, math.floor(chunk_s / segment_s)) * segment_s
    starts = [index * step for index in range(max(1, math.ceil(duration_s / step)))]
    # A short tail joins the chunk before it: a task of a few seconds costs more in start-up and
    # seeking than it saves in parallelism.
    if len(starts) > 1 and duration_s - starts[-1] < step * TAIL_FRACTION:
        starts.pop()
    ends = [*starts[1:], duration_s]
    keyframes = sorted(keyframes_s) if keyframes_s else []
    return [
        Chunk(index, start, end, _preroll(start, keyframes))
        for index, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def _preroll(start_s: float, keyframes: Sequence[float]) -> float:
    """How far before `start_s` the last keyframe at or before it lies (0 without keyframe times)."""
    if not keyframes or start_s == 0:
        return 0.0
    at = bisect.bisect_right(keyframes, start_s + 1e-6) - 1
    return start_s - keyframes[at] if at >= 0 else start_s
