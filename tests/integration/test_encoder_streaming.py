"""The encoder streams its source from S3 and uploads each segment while ffmpeg writes the next.

- No playlist is stored before the segments it names, and segments are stored while ffmpeg runs.
- G5 for a streamed source: a read that S3 breaks off mid-stream is never taken for the end of the
  video; it is retried when the object is still there (503, a dropped connection), and fails the job
  at once when S3 says the object is gone (404) or forbidden (403).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from services.core import mediaprobe
from services.core.chunking import Chunk
from services.core.settings import Settings
from services.core.stitch import parse_media_playlist
from services.core.storage import presigned_get_url
from services.encoder import chunk_encode
from services.encoder.errors import AttemptError
from services.encoder.ladder import MASTER_NAME, PLAYLIST_NAME, Source, choose_ladder
from tests.support.encoder import FAST, REALTIME, queue_job
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import course_tasks, ffmpeg_processes, job_events, wait_for, wait_for_lecture_task
from tests.support.s3_faults import CUT, Request, faulty_s3
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only, with a short retry back-off.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_RETRY)]

# The MP4 index (moov) sits at the end of the test clips: reads that start this close to the end,
# or at 0, are the probe's and the demuxer's header reads; any other is a read of the media data.
INDEX_TAIL_BYTES = 256 * 1024


def stored_keys(own: Settings, s3: S3Client, prefix: str) -> set[str]:
    """Every key under `prefix` on the S3 endpoint."""
    listing = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def test_segments_are_stored_while_ffmpeg_encodes_and_every_playlist_after_its_segments(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    # Read at its native rate, the 24 s clip keeps ffmpeg busy for about 24 s: 4 segments of 6 s.
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=24)])
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**REALTIME)
        queue_job(own, manifest)
        # The lecture is one task of the course (docs/fan-out.md): its attempt writes hls/<task>/1/0/.
        task = wait_for_lecture_task(own, job_id, 0, 90, run.processes)
        prefix = f"hls/{task.job_id}/1/0/"
        deadline = time.monotonic() + 90
        early = stored_keys(own, s3, prefix)
        while not any(key.endswith(".ts") for key in early):
            assert time.monotonic() < deadline, "no segment was stored while the job ran"
            time.sleep(0.1)
            early = stored_keys(own, s3, prefix)
        encoding = ffmpeg_processes(str(task.job_id))
        job = wait_for(own, job_id, {"completed", "failed"}, 90, run.processes)

    assert encoding, "the first segment was stored only after the task's ffmpeg had finished"
    assert not [key for key in early if key.endswith(".m3u8")], early
    assert job.status.value == "completed", (job.error_type, job.error_message)
    # The course plays what the task stored, where it stored it.
    assert job.outputs is not None
    assert job.outputs.videos[0].master_playlist_url.endswith(f"/{prefix}{MASTER_NAME}")
    stored = stored_keys(own, s3, prefix)
    assert f"{prefix}{MASTER_NAME}" in stored
    playlists = sorted(key for key in stored if key.endswith(PLAYLIST_NAME))
    assert playlists
    for playlist in playlists:
        text = s3.get_object(Bucket=own.s3_bucket, Key=playlist)["Body"].read().decode()
        folder = playlist.rsplit("/", 1)[0]
        named = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert named
        assert {f"{folder}/{name}" for name in named} <= stored


def source_faults(
    jobs: dict[UUID, tuple[int, int]],
) -> tuple[dict[UUID, list[str]], Callable[[Request], int | None]]:
    """A proxy rule for the source of each course: (status S3 answers after the break, source size).

    The faults are the task attempt's, the unit that encodes the lecture (docs/fan-out.md): the
    course's planning attempt looks at the source (HEAD) and probes it first, untouched; the task
    attempt's look (the second HEAD) arms the rule. Then the probe's and the demuxer's header reads
    pass; the first read of the media data is
    cut mid-body (the connection drops); every later read of the source gets `status`, and so does
    the encoder's HEAD that asks S3 about the object after the failed read — except a 503's, which
    is answered truly: the object is there, and from then on the source is served again (the next
    attempt reads it whole)."""
    seen: dict[UUID, list[str]] = {job_id: [] for job_id in jobs}

    def rule(request: Request) -> int | None:
        for job_id, (status, size) in jobs.items():
            if f"/staging/{job_id}/videos/0" not in request.path:
                continue
            steps = seen[job_id]
            if "over" in steps:
                return None
            if request.method == "HEAD":
                if "cut" not in steps:
                    steps.append("opened")
                    return None
                steps.append("over" if status == 503 else "head")
                return None if status == 503 else status
            if steps.count("opened") < 2:
                return None  # the planning attempt's probe
            start = request.range_start or 0
            if request.method != "GET" or start == 0 or start >= size - INDEX_TAIL_BYTES:
                return None
            if "cut" not in steps:
                steps.append("cut")
                return CUT
            steps.append(str(status))
            return status
        return None

    return seen, rule


def test_a_source_read_broken_off_mid_stream_is_retried_or_failed_as_s3_says_never_published_short(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "lecture.mp4", seconds=20, size="640x360")
    size = clip.stat().st_size
    assert size > 2 * INDEX_TAIL_BYTES
    unavailable, gone, forbidden = new_job_id(), new_job_id(), new_job_id()
    manifests = {job_id: stage_course(own, s3, job_id, [clip]) for job_id in (unavailable, gone, forbidden)}
    seen, rule = source_faults({unavailable: (503, size), gone: (404, size), forbidden: (403, size)})
    assert own.s3_endpoint_url is not None
    with faulty_s3(own.s3_endpoint_url, rule) as (proxy, _faulted), running(own, tmp_path) as run:
        run.projector()
        run.encoder(COURSECAST_S3_ENDPOINT_URL=proxy, **FAST)
        for manifest in manifests.values():
            queue_job(own, manifest)
        jobs = {
            job_id: wait_for(own, job_id, {"completed", "failed"}, 240, run.processes) for job_id in manifests
        }

    for job_id in manifests:
        # Planned untouched, then the task attempt's read broken off.
        assert seen[job_id][:3] == ["opened", "opened", "cut"], (job_id, seen[job_id])
    # The course's lecture is one task (docs/fan-out.md): the read broken off is the task attempt's, so
    # the retry and the failure are the task's; the course is planned once and ends once, as its task says.
    # 503 after a dropped connection: transient, the task is retried, its next attempt publishes it whole.
    job = jobs[unavailable]
    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert job.attempt == 1
    (task,) = course_tasks(own, unavailable)
    assert (task.status.value, task.attempt) == ("completed", 2), task
    types = job_events(own, task.job_id)
    assert ("JobRetryScheduled", 1, None) in types
    assert not [event for event in types if event[0] == "VideoEncoded" and event[1] == 1]
    assert ("VideoEncoded", 2, None) in types
    # Nothing of the broken-off attempt is published: no playlist under its prefix, and the course
    # plays attempt 2's, whole.
    assert not [key for key in stored_keys(own, s3, f"hls/{task.job_id}/1/") if key.endswith(".m3u8")]
    assert job.outputs is not None
    assert f"/hls/{task.job_id}/2/0/" in job.outputs.videos[0].master_playlist_url
    assert abs(job.outputs.videos[0].duration_s - 20.0) < 0.5
    course_types = [event for event, _, _ in job_events(own, unavailable)]
    assert "JobRetryScheduled" not in course_types
    assert course_types.count("JobCompleted") == 1
    # 404 / 403: S3 says the source is gone or forbidden: permanent, at once, nothing published; the
    # course fails with its lecture's reason.
    for job_id, error_type, phrase in (
        (gone, "NoSuchKey", "could not be found"),
        (forbidden, "storage_access_denied", "not allowed to read or write storage"),
    ):
        (task,) = course_tasks(own, job_id)
        for failed in (jobs[job_id], task):
            assert failed.status.value == "failed", failed
            assert failed.error_type == error_type, (failed.error_type, failed.error_message)
            assert phrase in (failed.error_message or "")
            assert "Signature" not in (failed.error_message or ""), (
                "the presigned URL leaked into the message"
            )
        assert task.attempt == 1
        for events_of in (job_id, task.job_id):
            types = job_events(own, events_of)
            assert "JobRetryScheduled" not in [event for event, _, _ in types]
            assert "VideoEncoded" not in [event for event, _, _ in types]
        assert [event for event, _, _ in job_events(own, job_id)].count("JobFailed") == 1
        assert not [key for key in stored_keys(own, s3, f"hls/{task.job_id}/") if key.endswith(".m3u8")]


def _never_stop() -> AttemptError | None:
    return None


def test_a_chunk_and_the_lectures_audio_encode_from_a_presigned_url_with_one_thread(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    manifest = stage_course(own, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=24)])
    url = presigned_get_url(s3, own.s3_bucket, manifest.videos[0].key, 600)
    source = mediaprobe.remote_input(url, "lecture.mp4")
    renditions = choose_ladder(Source(320, 180, 24.0))
    out = tmp_path / "hls"
    deadline = time.monotonic() + 300
    # The second half of the lecture: an accurate seek to 12 s over a ranged read, one thread.
    chunk_encode.encode_video_chunk(
        source,
        out,
        Chunk(1, 12.0, 24.0),
        renditions,
        deadline=deadline,
        time_limit_s=300,
        should_stop=_never_stop,
        preset="ultrafast",
        threads=1,
    )
    chunk_encode.encode_audio(
        source, out, 24.0, deadline=deadline, time_limit_s=300, should_stop=_never_stop, threads=1
    )
    video = parse_media_playlist((out / "0" / chunk_encode.chunk_playlist_name(1)).read_text())
    audio = parse_media_playlist((out / chunk_encode.AUDIO_DIR / chunk_encode.AUDIO_CHUNK_NAME).read_text())
    assert abs(sum(segment.duration_s for segment in video) - 12.0) < 0.5
    assert abs(sum(segment.duration_s for segment in audio) - 24.0) < 0.5
    assert all((out / "0" / segment.uri).stat().st_size > 0 for segment in video)
