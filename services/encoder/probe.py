"""ffprobe adapter: what a staged file contains, or a classified error saying why it cannot be used.

The probe runs on the leash of `services.core.mediaprobe` (video demuxers only; the `file` protocol
only, or only the protocols of the source's presigned URL; bounded reads, killed at its timeout): a
playlist or polyglot that slipped past the api fails the job as invalid media without ffprobe opening
anything else, a probe that hangs is a transient error, and so is a read that storage broke off
(SourceReadError, which encode.py turns permanent if S3 says the object is gone or forbidden).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.core import mediaprobe
from services.encoder.errors import PermanentError, SourceReadError, TransientError, unreadable_media
from services.encoder.ladder import Source

PROBE_TIMEOUT_S = 30.0
# Video codecs ffmpeg decodes reliably enough to publish; anything else is refused up front.
SUPPORTED_VIDEO_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mjpeg", "prores", "dnxhd", "theora", "wmv3"}
)


def probe(
    source: Path | mediaprobe.MediaInput, filename: str, timeout_s: float = PROBE_TIMEOUT_S
) -> dict[str, Any]:
    """ffprobe's JSON for `source` (a local file or a remote input); an unreadable or refused file is
    a permanent error naming `filename`, a probe killed at `timeout_s` or a read that failed in
    transport a transient one (the job is retried)."""
    try:
        return mediaprobe.probe(source, mediaprobe.VIDEO_DEMUXERS, timeout_s)
    except mediaprobe.MediaRefusedError as exc:
        raise unreadable_media(filename, exc.reason) from None
    except mediaprobe.InputReadError as exc:
        raise SourceReadError(f"video {filename!r}", exc.reason) from None
    except mediaprobe.ProbeTimeoutError:
        raise TransientError(
            f"Reading the video {filename!r} took longer than {timeout_s:g} s and was stopped; "
            "the job will be retried.",
            "probe_timeout",
        ) from None
    except mediaprobe.ProbeKilledError:
        raise TransientError(
            f"Reading the video {filename!r} was interrupted (the encoder may have run short of "
            "memory); the job will be retried.",
            "encoder_interrupted",
        ) from None


def describe(info: dict[str, Any], filename: str) -> Source:
    """The Source an ffprobe result describes; refuses what cannot be published (pure)."""
    streams = info.get("streams", [])
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise unreadable_media(filename, "it has no video or audio stream")
    duration = _duration(info, video or audio or {})
    if duration <= 0:
        raise unreadable_media(filename, "its duration is unknown or zero; the file may be truncated")
    if video is None:
        return Source(0, 0, duration, has_video=False, has_audio=True)
    codec = str(video.get("codec_name", "unknown"))
    if codec not in SUPPORTED_VIDEO_CODECS:
        raise PermanentError(
            f"The video {filename!r} uses the {codec} codec, which we cannot convert. "
            "Please export it as H.264 MP4 and upload it again.",
            "unsupported_codec",
        )
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise unreadable_media(filename, "its picture size is unknown")
    rotation = _rotation(video)
    if rotation in (90, 270):
        width, height = height, width
    return Source(width, height, duration, has_video=True, has_audio=audio is not None, fps=_fps(video))


def check_limits(
    source: Source, filename: str, max_duration_s: float, max_width: int, max_height: int
) -> None:
    """Refuse a source over the configured limits, with the limit in the message (pure)."""
    if source.duration_s > max_duration_s:
        raise PermanentError(
            f"The video {filename!r} is {source.duration_s / 60:.0f} minutes long; the limit is "
            f"{max_duration_s / 60:.0f} minutes. Please split it into shorter lectures.",
            "input_over_limits",
        )
    long_side, short_side = max(source.width, source.height), min(source.width, source.height)
    if long_side > max(max_width, max_height) or short_side > min(max_width, max_height):
        raise PermanentError(
            f"The video {filename!r} is {source.width}x{source.height}; the largest size we accept is "
            f"{max_width}x{max_height}. Please export it at a lower resolution.",
            "input_over_limits",
        )


def _duration(info: dict[str, Any], stream: dict[str, Any]) -> float:
    for value in (info.get("format", {}).get("duration"), stream.get("duration")):
        try:
            if value is not None:
                return float(value)
        except (TypeError, ValueError):
            continue
    return 0.0


def _fps(stream: dict[str, Any]) -> float:
    num, _, den = str(stream.get("avg_frame_rate") or "25/1").partition("/")
    try:
        return float(num) / float(den or 1) or 25.0
    except (ValueError, ZeroDivisionError):
        return 25.0


def _rotation(stream: dict[str, Any]) -> int:
    rotate = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            rotate = side["rotation"]
    try:
        return abs(int(float(rotate or 0))) % 360
    except (TypeError, ValueError):
        return 0
