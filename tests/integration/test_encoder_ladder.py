"""The ladder command on real ffmpeg for the awkward sources: portrait, no audio track, audio only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ffmpeg
import pytest

from services.encoder.ladder import MASTER_NAME, choose_ladder, hls_command, parse_master
from services.encoder.probe import describe, probe

pytestmark = pytest.mark.integration


def _source(path: Path, *inputs: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs, "-t", "3", str(path)],
        check=True,
        timeout=60,
    )
    return path


def _encode(path: Path, out: Path) -> list[tuple[int, int, str]]:
    source = describe(probe(path, path.name), path.name)
    ladder = choose_ladder(source)
    subprocess.run(
        hls_command(path, out, ladder, preset="ultrafast"), check=True, capture_output=True, timeout=120
    )
    variants = parse_master((out / MASTER_NAME).read_text())
    assert len(variants) == len(ladder)
    for index in range(len(ladder)):
        assert ffmpeg.probe(str(out / str(index) / "index.m3u8"))["streams"]
    return [(v.width, v.height, v.codecs) for v in variants]


def test_a_portrait_phone_video_keeps_its_orientation_on_every_rung(tmp_path: Path) -> None:
    clip = _source(
        tmp_path / "portrait.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=360x640:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
    )  # fmt: skip
    assert [(w, h) for w, h, _ in _encode(clip, tmp_path / "out")] == [(360, 640), (240, 426)]


def test_a_video_without_sound_gets_video_only_renditions(tmp_path: Path) -> None:
    clip = _source(
        tmp_path / "silent.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    variants = _encode(clip, tmp_path / "out")
    assert [(w, h) for w, h, _ in variants] == [(640, 360), (426, 240)]
    assert all("mp4a" not in codecs for _, _, codecs in variants)


def test_an_audio_only_lecture_gets_one_audio_rendition(tmp_path: Path) -> None:
    clip = _source(tmp_path / "podcast.m4a", "-f", "lavfi", "-i", "sine=frequency=440", "-c:a", "aac")
    (variant,) = _encode(clip, tmp_path / "out")
    assert variant[:2] == (0, 0)
    assert "mp4a" in variant[2]
