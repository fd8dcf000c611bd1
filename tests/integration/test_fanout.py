"""Fan-out (docs/fan-out.md): a course's lectures and a long lecture's chunks run as tasks over the
encoder group, the conductor stitches and ends the course; G1-G6 hold per task.

Real services throughout: projector, encoders and conductor processes on the real Kafka, Postgres and
S3 of the local stack. The chunk length is 12 s here, so a 30 s lecture is 3 chunks (12 + 12 + 6)
plus its audio task: the whole chunked path at the cost of a few seconds of video.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.core import codec, ts_continuity
from services.core.kafka_config import reader_config
from services.core.messages import Envelope, carries
from services.core.payloads import EncodeTask
from services.core.settings import Settings
from services.core.stitch import parse_media_playlist
from tests.support.encoder import FAST, REALTIME, queue_job, send
from tests.support.encoder_checks import completed_at_iff_completed, wait_drained
from tests.support.observe import course_tasks, job_events, wait_for
from tests.support.services import running, wait_until
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(
        partitions=4, chunk_s=12, heartbeat_interval_s=2, session_timeout_ms=6_000, encoder_lease_s=8
    ),
]

LONG_S = 30
SHORT_S = 8


def task_commands(settings: Settings) -> list[Envelope[EncodeTask]]:
    """Every EncodeTask on the commands topic (the conductor's, the takeovers', the verdicts')."""
    reader = Consumer(reader_config(settings, f"probe-{new_job_id()}", "test-probe"))
    found: list[Envelope[EncodeTask]] = []
    try:
        partitions = [TopicPartition(settings.commands_topic, p, 0) for p in range(settings.topic_partitions)]
        reader.assign(partitions)
        at_end: set[int] = set()
        deadline = time.monotonic() + 30
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                at_end.add(message.partition() or 0)
                continue
            envelope = codec.decode(message.value())
            if carries(envelope, EncodeTask):
                found.append(envelope)
    finally:
        reader.close()
    return found


def download(s3: S3Client, bucket: str, prefix: str, into: Path) -> list[str]:
    """Every object under `prefix` into `into`; returns the keys relative to the prefix."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"].removeprefix(prefix)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            names.append(name)
    return names


def ffprobe_duration(playlist: Path) -> float:
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-protocol_whitelist", "file", "-show_entries", "format=duration",
            "-of", "csv=p=0", str(playlist),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return float(out.stdout.decode().strip())


def gray_frame(source: str, at_s: float) -> bytes:
    """The picture at `at_s` (from the start of `source`), 80x45 gray."""
    out = subprocess.run(
        [
            "ffmpeg", "-v", "error", "-protocol_whitelist", "file", "-ss", f"{at_s:.3f}", "-i", source,
            "-frames:v", "1", "-s", "80x45", "-pix_fmt", "gray", "-f", "rawvideo", "-",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert len(out.stdout) == 80 * 45, len(out.stdout)
    return out.stdout


def mean_difference(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def test_a_course_fans_out_over_the_encoder_group_and_its_long_lecture_is_stitched_seamlessly(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    short = make_clip(tmp_path / "intro.mp4", seconds=SHORT_S)
    long = make_clip(tmp_path / "graphs.mp4", seconds=LONG_S, size="480x270", rate=10)
    manifest = stage_course(own, s3, job_id, [short, long])
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder("encoder-a", **FAST)
        run.encoder("encoder-b", **FAST)
        queue_job(own, manifest)
        job = wait_for(own, job_id, {"completed", "failed"}, 240, run.processes)
        assert job.status.value == "completed", (job.error_type, job.error_message)
        tasks = course_tasks(own, job_id)

    # Lecture 0 (8 s) is one task; lecture 1 (30 s) is its audio and 3 chunks on the 6 s grid.
    assert [(t.task.lecture_index, t.task.media, t.task.start_s, t.task.end_s) for t in tasks if t.task] == [
        (0, "lecture", 0.0, pytest.approx(SHORT_S, abs=0.1)),
        (1, "audio", 0.0, pytest.approx(LONG_S, abs=0.1)),
        (1, "video", 0.0, 12.0),
        (1, "video", 12.0, 24.0),
        (1, "video", 24.0, pytest.approx(LONG_S, abs=0.1)),
    ]
    assert all((t.status.value, t.attempt) == ("completed", 1) for t in tasks)
    assert [lecture.title for lecture in job.lectures] == ["intro", "graphs"]
    assert job.outputs is not None
    assert [v.video_index for v in job.outputs.videos] == [0, 1]
    assert job.completed_at is not None

    # The stitched lecture, as a player fetches it: every rendition whole, one stream, in sync.
    lecture = job.outputs.videos[1]
    prefix = f"hls/{job_id}/1/1/"
    assert lecture.master_playlist_url.endswith(f"/{prefix}master.m3u8")
    out = tmp_path / "published"
    names = download(s3, own.s3_bucket, prefix, out)
    master = (out / "master.m3u8").read_text()
    assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio"' in master
    playlists = [
        line for line in master.splitlines() if line.endswith("index.m3u8") and not line.startswith("#")
    ]
    assert len(playlists) == len(lecture.renditions) >= 1
    named: list[str] = []
    for uri in [*playlists, "audio/index.m3u8"]:
        playlist = out / uri
        text = playlist.read_text()
        assert "#EXT-X-DISCONTINUITY" not in text
        segments = parse_media_playlist(text)
        assert abs(sum(s.duration_s for s in segments) - LONG_S) < 0.5, uri
        folder = uri.rsplit("/", 1)[0]
        named += [f"{folder}/{s.uri}" for s in segments]
        # TS continuity counters run on across the seams (the chunks' muxers each started at 0).
        data = [(playlist.parent / s.uri).read_bytes() for s in segments]
        assert ts_continuity.breaks(data) == [], uri
    # No segment twice and none that no playlist names.
    assert sorted(n for n in names if n.endswith(".ts")) == sorted(named)
    assert abs(ffprobe_duration(out / "master.m3u8") - LONG_S) <= 6.0
    # The picture at each seam (12 s, 24 s) is the source's picture at the same time.
    for seam in (12.0, 24.0):
        stitched = gray_frame(str(out / playlists[0]), seam + 0.05)
        original = gray_frame(str(long), seam + 0.05)
        assert mean_difference(stitched, original) < 12, seam


def test_kill_9_of_an_encoder_mid_chunk_lets_another_redo_it_and_publishes_no_segment_twice(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    long = make_clip(tmp_path / "long.mp4", seconds=LONG_S, size="320x180", rate=10)
    manifest = stage_course(own, s3, job_id, [long])
    with running(own, tmp_path) as run:
        run.projector()
        # Read at the video's own rate: a 12 s chunk takes 12 s, time to kill its encoder mid-way.
        first = run.encoder("encoder-a", **REALTIME)
        queue_job(own, manifest)

        def a_chunk_runs_on_first() -> bool:
            return any(
                t.task is not None and t.task.media == "video" and t.status.value == "processing"
                for t in course_tasks(own, job_id)
            )

        wait_until("a video chunk is running on the first encoder", a_chunk_runs_on_first, 120, run.processes)
        victim = next(
            t
            for t in course_tasks(own, job_id)
            if t.task and t.task.media == "video" and t.status.value == "processing"
        )
        run.kill(first)
        run.encoder("encoder-b", **REALTIME)
        job = wait_for(own, job_id, {"completed", "failed"}, 300, run.processes)
        assert job.status.value == "completed", (job.error_type, job.error_message)
        redone = next(t for t in course_tasks(own, job_id) if t.job_id == victim.job_id)

    # The killed attempt was ended (JobStalled by the takeover) and the chunk redone as attempt 2.
    assert (redone.status.value, redone.attempt) == ("completed", 2)
    kinds = Counter(
        (kind, attempt) for kind, attempt, rejection in job_events(own, victim.job_id) if rejection is None
    )
    assert kinds[("JobStalled", 1)] == 1
    assert kinds[("TaskCompleted", 2)] == 1
    assert kinds[("TaskCompleted", 1)] == 0
    # The published lecture names segments of one attempt per chunk, each once, and nothing else.
    out = tmp_path / "published"
    names = download(s3, own.s3_bucket, f"hls/{job_id}/1/0/", out)
    named = []
    for uri in [
        line
        for line in (out / "master.m3u8").read_text().splitlines()
        if line.endswith(".m3u8") and not line.startswith("#")
    ] + ["audio/index.m3u8"]:
        folder = uri.rsplit("/", 1)[0]
        named += [f"{folder}/{s.uri}" for s in parse_media_playlist((out / uri).read_text())]
    assert len(named) == len(set(named))
    assert sorted(n for n in names if n.endswith(".ts")) == sorted(named)
    assert completed_at_iff_completed(own) == 0


def test_every_task_command_redelivered_15_times_changes_nothing(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id = new_job_id()
    long = make_clip(tmp_path / "long.mp4", seconds=LONG_S, size="320x180", rate=10)
    manifest = stage_course(own, s3, job_id, [long, make_clip(tmp_path / "short.mp4", seconds=4)])
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder("encoder-a", **FAST)
        run.encoder("encoder-b", **FAST)
        queue_job(own, manifest)
        done = wait_for(own, job_id, {"completed", "failed"}, 240, run.processes)
        assert done.status.value == "completed", (done.error_type, done.error_message)
        before = {t.job_id: job_events(own, t.job_id) for t in course_tasks(own, job_id)}
        commands = task_commands(own)
        assert {c.job_id for c in commands} == set(before)
        # Incident 1, per task: every task's command delivered 15 more times after the course ended.
        send(own, own.commands_topic, [c for c in commands for _ in range(15)])
        wait_drained(own, 120, run.processes)
        after_course = wait_for(own, job_id, {"completed"}, 10, run.processes)
        after = {t.job_id: job_events(own, t.job_id) for t in course_tasks(own, job_id)}

    assert after == before  # not one event more for any task: nothing ran again
    assert all(Counter(kind for kind, _, _ in events)["JobStarted"] == 1 for events in after.values())
    assert after_course.completed_at == done.completed_at
    assert after_course.outputs == done.outputs
