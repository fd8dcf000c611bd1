"""ffmpeg and ffprobe from the system, on a clip generated at test time (testsrc2 + sine)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ffmpeg
import pytest


def make_clip(path: Path, seconds: float = 2.0, size: str = "640x360") -> Path:
    """A short H.264/AAC clip with a moving test pattern and a tone."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


def test_ffprobe_reads_the_streams_of_a_generated_clip(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "lecture.mp4")
    probe = ffmpeg.probe(str(clip))
    streams = {stream["codec_type"]: stream for stream in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(float(probe["format"]["duration"]) - 2.0) < 0.2


def test_ffprobe_refuses_a_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "lecture.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(ffmpeg.Error) as caught:
        ffmpeg.probe(str(fake))
    assert b"Invalid data" in caught.value.stderr
