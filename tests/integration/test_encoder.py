"""The encoder end to end on the real stack: a staged course becomes a playable HLS ladder.

Each test runs `coursecast encoder` and `coursecast projector` subprocesses on topics, a Postgres
schema and consumer groups of its own (tests.support.projector.isolated), and reads the outcome where a
user would: the job's row in publish_jobs, and the files on the S3 endpoint.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import ffmpeg
import pytest

from services.core.settings import Settings
from services.encoder.ladder import Source, choose_ladder
from tests.support.encoder import FAST, run_to_end
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import count_events, lecture_task
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only, with short liveness settings.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_RETRY)]


def _s3_key(settings: Settings, url: str) -> str:
    return url.removeprefix(settings.cdn_base_url.rstrip("/") + "/")


def test_a_staged_course_becomes_a_playable_hls_ladder_with_webp_thumbnails(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    clip = make_clip(tmp_path / "lecture 1 — 배열.mp4", seconds=14, size="640x360")
    # A second video, with the instructor's own thumbnail (a PNG), gets outputs of its own.
    second = make_clip(tmp_path / "lecture 2.mp4", seconds=3, size="426x240")
    cover = tmp_path / "cover.png"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720",
            "-frames:v",
            "1",
            str(cover),
        ],
        check=True,
    )
    manifest = stage_course(own, s3, job_id, [clip, second], thumbnails={1: cover})
    log = tmp_path / "encoder.log"
    job = run_to_end(own, manifest, tmp_path, 90, **FAST)
    assert job.status.value == "completed", (job.error_type, job.error_message, log.read_text()[-3000:])
    assert job.completed_at is not None
    assert job.outputs is not None
    video = job.outputs.videos[0]
    expected = choose_ladder(Source(640, 360, 14.0))
    assert [(r.width, r.height) for r in video.renditions] == [(r.width, r.height) for r in expected]
    assert abs(video.duration_s - 14.0) < 0.5

    # Download what a player would fetch and check it with ffprobe.
    out = tmp_path / "published"
    # The lecture was one task (docs/fan-out.md): published under its task's attempt, hls/<task>/1/0/.
    task = lecture_task(own, job_id, 0)
    prefix = f"hls/{task.job_id}/1/0/"
    listing = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=prefix)["Contents"]
    for item in listing:
        target = out / item["Key"].removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(own.s3_bucket, item["Key"], str(target))
        head = s3.head_object(Bucket=own.s3_bucket, Key=item["Key"])
        suffix = target.suffix
        expected_type = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".webp": "image/webp"}
        assert head["ContentType"] == expected_type[suffix]
        assert "max-age" in head["CacheControl"]
    master = (out / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == len(expected)
    for attribute in ("BANDWIDTH=", "RESOLUTION=", 'CODECS="avc1.'):
        assert master.count(attribute) == len(expected)
    assert _s3_key(own, video.master_playlist_url) == f"{prefix}master.m3u8"

    master_probe = ffmpeg.probe(str(out / "master.m3u8"))
    assert {s["codec_type"] for s in master_probe["streams"]} == {"video", "audio"}
    for index, rendition in enumerate(expected):
        playlist = out / str(index) / "index.m3u8"
        probe = ffmpeg.probe(str(playlist))
        stream = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)
        assert stream["codec_name"] == "h264"
        durations = [
            float(line.split(":")[1].rstrip(","))
            for line in playlist.read_text().splitlines()
            if line.startswith("#EXTINF")
        ]
        assert durations
        assert max(durations) <= 6.5
        assert abs(sum(durations) - 14.0) < 0.5
    for name in ("thumbnail.webp", "poster.webp"):
        data = (out / name).read_bytes()
        assert data[:4] == b"RIFF"
        assert data[8:12] == b"WEBP"
        image = ffmpeg.probe(str(out / name))["streams"][0]
        assert image["codec_name"] == "webp"
    assert image["height"] == 360  # the poster keeps the source size (≤ 720p)

    # The second video: its own task and prefix, one rendition at its size, the uploaded cover as WebP.
    other = job.outputs.videos[1]
    other_task = lecture_task(own, job_id, 1)
    assert other_task.job_id != task.job_id
    assert other.video_index == 1
    assert [(r.width, r.height) for r in other.renditions] == [(426, 240)]
    cover_key = _s3_key(own, other.thumbnail_url)
    assert cover_key == f"hls/{other_task.job_id}/1/1/thumbnail.webp"
    cover_webp = tmp_path / "cover.webp"
    s3.download_file(own.s3_bucket, cover_key, str(cover_webp))
    cover_probe = ffmpeg.probe(str(cover_webp))["streams"][0]
    assert (cover_probe["codec_name"], cover_probe["width"]) == ("webp", 640)

    # The uploaded sources stay for re-encodes (COURSECAST_SOURCE_RETENTION_DAYS, 30 by default): the
    # conductor, which ends the course (docs/fan-out.md), judged the staging once the course's completion
    # was accepted, and kept it; ffmpeg ran once for the ladder.
    assert count_events(tmp_path / "conductor.log", "sources_retained", job_id=str(job_id)) == 1
    staged = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/")
    assert {obj["Key"] for obj in staged.get("Contents", [])} >= {v.key for v in manifest.videos}
    assert count_events(log, "ffmpeg_started", what=f"video {clip.name!r}") == 1
