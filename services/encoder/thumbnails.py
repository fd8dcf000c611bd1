"""Thumbnails and posters as WebP (ffmpeg's libwebp): a representative frame, or the uploaded image.

The ffmpeg commands are pure (pipeline.py plans them, encode.py runs them); `check_image` measures
an uploaded image before any of them decodes it.

Every input is opened on the leash of `services.core.mediaprobe` (accepted demuxers; `file` only, or
only the protocols of the source's URL when the encoder streams it from storage).
An uploaded image is measured from its header and probed (bounded, `-max_pixels`) before anything
decodes it, so an image over COURSECAST_MAX_IMAGE_PIXELS fails the job with a clear message instead
of allocating a frame the size of the machine's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from services.core import mediaprobe
from services.encoder.errors import PermanentError, TransientError
from services.encoder.ladder import Source

THUMBNAIL_WIDTH = 640
POSTER_MAX_SHORT_SIDE = 720
# Frames the `thumbnail` filter compares: it keeps the one closest to the batch's average colour
# histogram, so a black fade or a flash frame is never the pick.
CANDIDATE_FRAMES = 100
WEBP_QUALITY = 80
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
IMAGE_PROBE_TIMEOUT_S = 30.0


def _quiet(node: Any) -> Any:
    return node.global_args("-hide_banner", "-loglevel", "error")


def frame_offset(duration_s: float) -> float:
    """Where to start looking for a representative frame: past a title card or black intro (pure)."""
    if duration_s <= 2:
        return 0.0
    return round(min(duration_s * 0.1, 30.0), 3)


def frame_images_command(
    source_input: Path | mediaprobe.MediaInput, source: Source, thumbnail: Path, poster: Path
) -> list[str]:
    """One ffmpeg run that picks a representative frame and writes the thumbnail and the poster;
    `source_input` is a local file or a remote input (read from the frame offset on: one seek)."""
    opened = mediaprobe.media_input(source_input)
    picked = (
        ffmpeg.input(
            opened.url,
            ss=frame_offset(source.duration_s),
            **mediaprobe.input_options(mediaprobe.VIDEO_DEMUXERS, source=opened),
        )
        .video.filter("thumbnail", CANDIDATE_FRAMES)
        .filter_multi_output("split", 2)
    )
    short = min(source.width, source.height)
    scale = min(1.0, POSTER_MAX_SHORT_SIDE / short) if short else 1.0
    poster_w = max(2, round(source.width * scale / 2) * 2)
    poster_h = max(2, round(source.height * scale / 2) * 2)
    webp = {"vframes": 1, "vcodec": "libwebp", "quality": WEBP_QUALITY}
    outputs = ffmpeg.merge_outputs(
        picked[0].filter("scale", THUMBNAIL_WIDTH, -2).output(str(thumbnail), **webp),
        picked[1].filter("scale", poster_w, poster_h).output(str(poster), **webp),
    )
    args: list[str] = ffmpeg.compile(_quiet(outputs), overwrite_output=True)
    return args


def normalise_command(
    uploaded: Path, thumbnail: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> list[str]:
    """Convert an uploaded image (JPEG, PNG, WebP, …) to a WebP at most THUMBNAIL_WIDTH wide."""
    leash = mediaprobe.input_options(mediaprobe.IMAGE_DEMUXERS, max_pixels)
    stream = ffmpeg.input(mediaprobe.local_input(uploaded), **leash).filter(
        "scale", f"min({THUMBNAIL_WIDTH},iw)", -2
    )
    output = stream.output(str(thumbnail), vframes=1, vcodec="libwebp", quality=WEBP_QUALITY)
    args: list[str] = ffmpeg.compile(_quiet(output), overwrite_output=True)
    return args


def placeholder_command(thumbnail: Path) -> list[str]:
    """A plain WebP card for an audio-only lecture, which has no frame to show."""
    output = ffmpeg.input("color=c=0x1f2937:s=640x360:d=1", f="lavfi").output(
        str(thumbnail), vframes=1, vcodec="libwebp", quality=WEBP_QUALITY
    )
    args: list[str] = ffmpeg.compile(_quiet(output), overwrite_output=True)
    return args


def check_image(
    uploaded: Path,
    filename: str,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    timeout_s: float = IMAGE_PROBE_TIMEOUT_S,
) -> tuple[int, int]:
    """The uploaded image's (width, height), measured before anything decodes it; refuses an image
    over `max_pixels` (input_over_limits) or one ffprobe cannot read on the leash (invalid_thumbnail)."""
    size = mediaprobe.read_image_dimensions(uploaded)
    if size is not None:
        _check_pixels(size, filename, max_pixels)
    try:
        info = mediaprobe.probe(uploaded, mediaprobe.IMAGE_DEMUXERS, timeout_s, max_pixels)
    except mediaprobe.ProbeTimeoutError:
        raise TransientError(
            f"Reading the thumbnail {filename!r} took longer than {timeout_s:g} s and was stopped; "
            "the job will be retried.",
            "probe_timeout",
        ) from None
    except mediaprobe.ProbeKilledError:
        raise TransientError(
            f"Reading the thumbnail {filename!r} was interrupted; the job will be retried.",
            "encoder_interrupted",
        ) from None
    except mediaprobe.MediaRefusedError:
        raise unreadable_image(filename, max_pixels) from None
    stream = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    width, height = (int(stream.get("width") or 0), int(stream.get("height") or 0)) if stream else (0, 0)
    if width <= 0 or height <= 0:
        # -max_pixels makes the decoder refuse an oversized picture, leaving its size unknown.
        raise unreadable_image(filename, max_pixels)
    _check_pixels((width, height), filename, max_pixels)
    return width, height


def _check_pixels(size: tuple[int, int], filename: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise PermanentError(
            f"The uploaded thumbnail {filename!r} is {width}x{height} pixels; the largest we accept "
            f"has {max_pixels:,} pixels. Please upload a smaller image (1280x720 is plenty).",
            "input_over_limits",
        )


def unreadable_image(filename: str, max_pixels: int) -> PermanentError:
    """The uploaded thumbnail cannot be read, or is over the pixel limit."""
    return PermanentError(
        f"The uploaded thumbnail {filename!r} is not an image we can read, or it has more than "
        f"{max_pixels:,} pixels. Please upload a JPEG, PNG or WebP image.",
        "invalid_thumbnail",
    )
