"""ffmpeg and ffprobe from the system, on a clip generated at test time (testsrc2 + sine)."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import pytest

from tests.support.staging import make_clip


def test_ffprobe_reads_the_streams_of_a_generated_clip(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "lecture.mp4", size="640x360")
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
