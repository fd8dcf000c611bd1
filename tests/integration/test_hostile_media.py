"""ffmpeg is given only what it should read: the encoder's probe, ladder and thumbnails on hostile media.

A playlist or polyglot that slipped past the api fails its job as invalid media with no outbound
request and no local file read; a probe that hangs is killed and retried; an image over the pixel
limit fails the job before anything decodes it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from services.api.problems import ProblemError
from services.api.staging import probe_local_copy, probe_staged
from services.core import mediaprobe
from services.core.settings import Settings
from services.encoder.errors import AttemptError, PermanentError, TransientError
from services.encoder.probe import probe
from services.encoder.thumbnails import check_image
from tests.support.encoder import FAST, queue_job, run_to_end
from tests.support.fixtures import QUICK_RETRY
from tests.support.hostile_media import HOSTILE_KINDS, SECRET, huge_png, loopback_server, secret_fifo
from tests.support.observe import count_events, ffmpeg_processes, job_events, wait_for
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Topics, schema and groups of this test only, with a short retry back-off.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_RETRY)]


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16000x16000 PNG: tiny on disk, about 768 MB once decoded."""
    return huge_png(tmp_path_factory.mktemp("images") / "poster-16000.png")


def probes_of(marker: str) -> list[int]:
    """Pids of live ffprobe/ffmpeg processes whose command line mentions `marker`."""
    return ffmpeg_processes(marker, tools=("ffprobe", "ffmpeg"))


def within(seconds: float, call: Any) -> Any:
    """`call()`'s result (or raised error) if it returns within `seconds`; fails the test if it hangs."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call did not return within {seconds} s: it has no real timeout"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --- playlists and polyglots staged for the encoder ----------------------------------------------


def test_a_staged_playlist_or_polyglot_fails_its_job_as_invalid_media_with_no_request_and_no_file_read(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    with loopback_server() as server, secret_fifo(tmp_path) as secret:
        jobs: dict[UUID, str] = {}
        for kind, build in HOSTILE_KINDS.items():
            # The local secret first: before this change ffprobe read it while opening the playlist.
            disguised = tmp_path / f"{kind}.mp4"
            disguised.write_bytes(build(f"file://{secret.path}", f"{server.base_url}/{kind}.mp4"))
            job_id = new_job_id()
            jobs[job_id] = kind
            queue_job(own, stage_course(own, s3, job_id, [disguised]))
        with running(own, tmp_path) as run:
            run.projector()
            run.encoder(**FAST)
            ended = {
                job_id: wait_for(own, job_id, {"completed", "failed"}, 120, run.processes) for job_id in jobs
            }
        assert server.connections == 0, server.paths
        assert not secret.opened.is_set(), "ffmpeg opened the local secret file a playlist referenced"

    for job_id, kind in jobs.items():
        job = ended[job_id]
        assert job.status.value == "failed", (kind, job)
        assert job.error_type == "invalid_media", (kind, job)
        message = job.error_message or ""
        assert f"'{kind}.mp4' is not a video we can read" in message, message
        assert "format, which we do not accept" in message, message
        assert "/tmp" not in message, message
        assert SECRET.decode().strip() not in message, message
        types = [event for event, _, _ in job_events(own, job_id)]
        assert "JobRetryScheduled" not in types, (kind, types)


def test_ffprobe_refuses_each_hostile_kind_by_its_demuxer_name_without_opening_anything(
    tmp_path: Path,
) -> None:
    with loopback_server() as server, secret_fifo(tmp_path) as secret:
        refusals = {}
        for kind, build in HOSTILE_KINDS.items():
            disguised = tmp_path / f"{kind}.mp4"
            disguised.write_bytes(build(f"file://{secret.path}", f"{server.base_url}/x.mp4"))
            with pytest.raises(mediaprobe.MediaRefusedError) as refused:
                within(60, lambda path=disguised: mediaprobe.probe(path, mediaprobe.VIDEO_DEMUXERS, 30))
            refusals[kind] = refused.value.reason
        assert server.connections == 0
        assert not secret.opened.is_set()
    assert refusals == {
        "dash-free-polyglot": "its content is in the dash format, which we do not accept",
        "hls-m3u8": "its content is in the hls format, which we do not accept",
        "ffconcat": "its content is in the concat format, which we do not accept",
    }


# --- timeouts ------------------------------------------------------------------------------------


def test_an_encoder_probe_that_hangs_is_killed_and_is_a_transient_error(tmp_path: Path) -> None:
    # A FIFO nobody writes to: ffprobe blocks in open() and would wait forever.
    stuck = tmp_path / f"stuck-{uuid4().hex[:8]}.mp4"
    os.mkfifo(stuck)
    with pytest.raises(AttemptError) as raised:
        within(60, lambda: probe(stuck, "lecture.mp4", timeout_s=2))
    error = raised.value
    assert isinstance(error, TransientError)
    assert error.retryable
    assert error.error_type == "probe_timeout"
    assert "'lecture.mp4'" in error.message
    assert str(tmp_path) not in error.message
    assert probes_of(stuck.name) == [], "the timed-out ffprobe is still running"


def test_an_encoder_probe_killed_by_a_signal_is_a_transient_error_never_invalid_media(tmp_path: Path) -> None:
    # The OOM killer's SIGKILL says nothing about the file: the job must be retried, not failed.
    stuck = tmp_path / f"killed-{uuid4().hex[:8]}.mp4"
    os.mkfifo(stuck)

    def kill_the_probe() -> None:
        deadline = time.monotonic() + 30
        while not (pids := probes_of(stuck.name)):
            assert time.monotonic() < deadline, "ffprobe never started"
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_probe, daemon=True)
    killer.start()
    with pytest.raises(AttemptError) as raised:
        within(60, lambda: probe(stuck, "lecture.mp4", timeout_s=30))
    killer.join(30)
    error = raised.value
    assert isinstance(error, TransientError)
    assert error.error_type == "encoder_interrupted"
    assert "'lecture.mp4'" in error.message


def test_a_probe_timeout_in_the_encoder_is_retried_with_backoff_never_failed_as_invalid_media(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    # A real ffprobe on a real staged clip, with a timeout no ffprobe can meet (it is killed at once).
    hurried = own.model_copy(update={"probe_timeout_s": 0.001, "max_attempts": 2})
    job_id = new_job_id()
    manifest = stage_course(
        hurried, s3, job_id, [make_clip(tmp_path / "lecture.mp4", seconds=1, size="160x120")]
    )
    job = run_to_end(hurried, manifest, tmp_path, 120, **FAST)
    assert job.status.value == "failed", job
    assert job.attempt == 2
    assert job.error_type == "probe_timeout"
    assert "took longer than 0.001 s" in (job.error_message or "")
    events = job_events(hurried, job_id)
    assert [
        (event, attempt) for event, attempt, _ in events if event in {"JobRetryScheduled", "JobFailed"}
    ] == [
        ("JobRetryScheduled", 1),
        ("JobFailed", 2),
    ]


def test_an_api_probe_that_hangs_is_a_503_problem_with_retry_after(tmp_path: Path) -> None:
    stuck = tmp_path / f"stuck-{uuid4().hex[:8]}.mp4"
    os.mkfifo(stuck)
    with pytest.raises(ProblemError) as raised:
        within(60, lambda: asyncio.run(probe_local_copy(stuck, 2)))
    assert raised.value.status == 503
    assert raised.value.kind == "probe-timeout"
    assert raised.value.headers.get("Retry-After")
    assert probes_of(stuck.name) == [], "the timed-out ffprobe is still running"


# --- the api's probe reads a bounded local copy ----------------------------------------------------


def test_the_api_probes_a_sparse_local_copy_that_still_finds_an_index_at_the_end(
    settings: Settings, s3: S3Client, tmp_path: Path
) -> None:
    # make_clip writes the MP4 index (moov) after the media data, as most cameras do.
    clip = make_clip(tmp_path / "moov-at-end.mp4", seconds=4)
    window = 64 * 1024
    assert clip.stat().st_size > 2 * window
    assert clip.read_bytes()[4:8] == b"ftyp"
    assert b"moov" not in clip.read_bytes()[:window]
    key = f"test-probe/{uuid4().hex}/moov-at-end.mp4"
    s3.upload_file(str(clip), settings.s3_bucket, key)
    try:
        streams = asyncio.run(probe_staged(s3, settings.s3_bucket, key, window, 30))
    finally:
        s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    assert streams is not None
    video = next(s for s in streams if s.get("codec_type") == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)


# --- image size limit ----------------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_before_any_decode(
    big_png: Path, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError) as raised:
        within(60, lambda: check_image(big_png, "poster.png", max_pixels=50_000_000, timeout_s=30))
    assert raised.value.error_type == "input_over_limits"
    assert "16000x16000" in raised.value.message
    assert "50,000,000" in raised.value.message
    # An image whose header the pure reader cannot measure is still bounded by ffprobe's -max_pixels.
    small = tmp_path / "small.png"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=size=320x240",
            "-frames:v",
            "1",
            str(small),
        ],
        check=True,
        timeout=60,
    )
    assert check_image(small, "small.png", max_pixels=320 * 240, timeout_s=30) == (320, 240)
    with pytest.raises(PermanentError) as over:
        check_image(small, "small.png", max_pixels=320 * 240 - 1, timeout_s=30)
    assert over.value.error_type == "input_over_limits"


def test_a_16000_pixel_square_thumbnail_fails_the_job_with_a_clear_message(
    own: Settings, s3: S3Client, tmp_path: Path, big_png: Path
) -> None:
    job_id = new_job_id()
    clip = make_clip(tmp_path / "lecture.mp4", seconds=1, size="160x120")
    manifest = stage_course(own, s3, job_id, [clip], thumbnails={0: big_png})
    log = tmp_path / "encoder.log"
    job = run_to_end(own, manifest, tmp_path, 180, **FAST)
    assert job.status.value == "failed", job
    assert job.error_type == "input_over_limits"
    assert "'poster-16000.png' is 16000x16000 pixels" in (job.error_message or "")
    types = [event for event, _, _ in job_events(own, job_id)]
    assert "JobRetryScheduled" not in types
    assert "JobCompleted" not in types
    # Refused before the encode: no ffmpeg ran at all, so nothing decoded the 768 MB picture.
    assert count_events(log, "ffmpeg_started") == 0
