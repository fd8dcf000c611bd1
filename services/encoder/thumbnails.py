"""Thumbnails and posters as WebP (ffmpeg's libwebp): a representative frame, or the uploaded image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ffmpeg

from services.encoder.errors import AttemptError, PermanentError
from services.encoder.ladder import Source
from services.encoder.process import run_ffmpeg

THUMBNAIL_WIDTH = 640
POSTER_MAX_SHORT_SIDE = 720
# Frames the `thumbnail` filter compares: it keeps the one closest to the batch's average colour
# histogram, so a black fade or a flash frame is never the pick.
CANDIDATE_FRAMES = 100
WEBP_QUALITY = 80


def _quiet(node: Any) -> Any:
    return node.global_args("-hide_banner", "-loglevel", "error")


def frame_offset(duration_s: float) -> float:
    """Where to start looking for a representative frame: past a title card or black intro (pure)."""
    if duration_s <= 2:
        return 0.0
    return round(min(duration_s * 0.1, 30.0), 3)


def frame_images_command(source_path: Path, source: Source, thumbnail: Path, poster: Path) -> list[str]:
    """One ffmpeg run that picks a representative frame and writes the thumbnail and the poster."""
    picked = (
        ffmpeg.input(str(source_path), ss=frame_offset(source.duration_s))
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


def normalise_command(uploaded: Path, thumbnail: Path) -> list[str]:
    """Convert an uploaded image (JPEG, PNG, WebP, …) to a WebP at most THUMBNAIL_WIDTH wide."""
    stream = ffmpeg.input(str(uploaded)).filter("scale", f"min({THUMBNAIL_WIDTH},iw)", -2)
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


def make_images(
    source_path: Path,
    source: Source,
    uploaded: Path | None,
    out_dir: Path,
    *,
    deadline: float,
    time_limit_s: int,
    should_stop: Callable[[], AttemptError | None],
) -> tuple[Path, Path | None, str]:
    """(thumbnail, poster or None, source "uploaded"|"frame") for one video, written in `out_dir`."""
    thumbnail, poster = out_dir / "thumbnail.webp", out_dir / "poster.webp"

    def run(argv: list[str], what: str) -> None:
        run_ffmpeg(argv, deadline=deadline, time_limit_s=time_limit_s, should_stop=should_stop, what=what)

    if source.has_video:
        run(frame_images_command(source_path, source, thumbnail, poster), "thumbnail")
    else:
        run(placeholder_command(thumbnail), "thumbnail")
    if uploaded is None:
        return thumbnail, poster if source.has_video else None, "frame"
    try:
        run(normalise_command(uploaded, thumbnail), "uploaded thumbnail")
    except PermanentError:
        raise PermanentError(
            f"The uploaded thumbnail {uploaded.name!r} is not an image we can read. "
            "Please upload a JPEG, PNG or WebP image.",
            "invalid_thumbnail",
        ) from None
    return thumbnail, poster if source.has_video else None, "uploaded"
