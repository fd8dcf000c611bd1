"""Encoder pipeline overhead against the raw ffmpeg CLI producing the same ladder from the same file.

    python -m bench encoder [--seconds 60] [--long]

Overhead = wall time from PublishCourse to JobCompleted ÷ wall time of the bare ffmpeg command that
the encoder itself builds for that file (same ladder, same preset), run by this script in the same
session. The pipeline (encoder, conductor and projector: the course is planned as one lecture task,
which the conductor queues and completes, docs/fan-out.md) has its wall time taken from the log:
occurred_at of JobQueued (produced just before PublishCourse) to occurred_at of JobCompleted, so
projector lag is not counted. Targets:
≤ 1.15 for a 60 s 720p clip, ≤ 1.05 for a 10-minute clip (--long). Also prints the encoder's encode
speed (× realtime, from its ffmpeg_finished log line) and its upload: the encoder streams the source
from S3 and uploads segments while ffmpeg writes them, so what counts is the upload time left once
ffmpeg has finished (`after_encode_s` of its upload_completed log line).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from psycopg import sql

from bench.report import Check, Section, Table
from services.core.settings import Settings
from services.core.storage import s3_client
from services.encoder.ladder import choose_ladder, hls_command
from services.encoder.probe import describe, probe
from services.projector.store import JobStore
from tests.support.encoder import queue_job
from tests.support.observe import log_lines, wait_for
from tests.support.projector import isolated
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course


def raw_ffmpeg(clip: Path, settings: Settings) -> float:
    """Seconds for the bare ffmpeg CLI to write the ladder the encoder would write for `clip`."""
    source = describe(probe(clip, clip.name), clip.name)
    with tempfile.TemporaryDirectory(prefix="bench-raw-") as out:
        argv = hls_command(clip, Path(out), choose_ladder(source), preset=settings.encoder_x264_preset)
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def pipeline(clip: Path, settings: Settings, workdir: Path) -> dict[str, float]:
    """Publish `clip` through a real encoder + projector on isolated topics; timings of the job."""
    s3 = s3_client(settings)
    with isolated(settings, partitions=1) as own:
        job_id = new_job_id()
        manifest = stage_course(own, s3, job_id, [clip])
        # A projector, an encoder and the conductor that completes the course (docs/fan-out.md).
        with running(own, workdir) as run:
            run.projector()
            run.encoder()
            time.sleep(6)  # the encoder joins its group before the clock starts
            queue_job(own, manifest)
            job = wait_for(own, job_id, {"completed", "failed"}, 3600, run.processes)
        log = run.log("encoder")
        if job.status.value != "completed":
            raise SystemExit(f"bench job failed: {job.error_type}: {job.error_message}")
        store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
        try:
            row = store.connection.execute(
                sql.SQL(
                    "SELECT max(occurred_at) FILTER (WHERE type = 'JobCompleted')"
                    " - min(occurred_at) FILTER (WHERE type = 'JobQueued') FROM job_events WHERE job_id = %s"
                ),
                (job_id,),
            ).fetchone()
        finally:
            store.close()
        assert row is not None
        lines = log_lines(log)
    transcode = next(
        line["seconds"]
        for line in lines
        if line.get("event") == "ffmpeg_finished" and "video" in line["what"]
    )
    upload = next(line for line in lines if line.get("event") == "upload_completed")
    return {
        "wall_s": row[0].total_seconds(),
        "transcode_s": transcode,
        "upload_bytes": upload["bytes"],
        "upload_s": upload["seconds"],
        "upload_after_encode_s": upload.get("after_encode_s", upload["seconds"]),
        "upload_files": upload["files"],
    }


def main(argv: list[str]) -> Section:
    """Run the benchmark, print its figures (one JSON line at the end) and return them."""
    parser = argparse.ArgumentParser(prog="python -m bench encoder")
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    parser.add_argument("--long", action="store_true", help="use a 10-minute clip")
    args = parser.parse_args(argv)
    seconds = 600.0 if args.long else args.seconds
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        workdir = Path(tmp)
        clip = make_clip(workdir / "lecture.mp4", seconds=seconds, size="1280x720")
        raw_before = raw_ffmpeg(clip, settings)
        result = pipeline(clip, settings, workdir)
        raw_after = raw_ffmpeg(clip, settings)
    raw = (raw_before + raw_after) / 2
    ratio = result["wall_s"] / raw
    print(f"encoder bench: {seconds:.0f} s 1280x720 clip, preset {settings.encoder_x264_preset}")
    print(f"  raw ffmpeg CLI, same ladder      {raw:8.2f} s  (runs: {raw_before:.2f}, {raw_after:.2f})")
    print(f"  PublishCourse -> JobCompleted    {result['wall_s']:8.2f} s")
    print(f"  pipeline overhead                {ratio:8.3f} x  (target <= {1.05 if args.long else 1.15})")
    print(f"  encode speed in the encoder      {seconds / result['transcode_s']:8.2f} x realtime")
    # Robust to load on the machine, unlike the ratio: what the job spent outside its ladder's ffmpeg
    # (source download or not, probe, thumbnail pass, the upload left after ffmpeg, events).
    print(f"  outside the ladder's ffmpeg      {result['wall_s'] - result['transcode_s']:8.2f} s")
    print(
        f"  upload                           {result['upload_bytes'] / 1e6:8.2f} MB,"
        f" {result['upload_files']:.0f} files over {result['upload_s']:.2f} s (mostly during the encode),"
        f" {result['upload_after_encode_s']:.2f} s of it after ffmpeg finished"
    )
    outside = result["wall_s"] - result["transcode_s"]
    summary = {"seconds": seconds, "raw_s": raw, **result, "ratio": ratio, "outside_ffmpeg_s": outside}
    print(orjson.dumps(summary).decode())
    target = 1.05 if args.long else 1.15
    return Section(
        "encoder",
        "Encoder",
        "python -m bench encoder" + (" --long" if args.long else f" --seconds {seconds:g}"),
        (
            Table(
                ("measure", "result"),
                (
                    (
                        "raw ffmpeg CLI, same ladder (mean of 2)",
                        f"{raw:.2f} s ({raw_before:.2f}, {raw_after:.2f})",
                    ),
                    ("PublishCourse → JobCompleted", f"{result['wall_s']:.2f} s"),
                    ("encode speed in the encoder", f"{seconds / result['transcode_s']:.2f} × realtime"),
                    ("outside the ladder's ffmpeg", f"{outside:.2f} s"),
                    (
                        "upload",
                        f"{result['upload_bytes'] / 1e6:.1f} MB, {result['upload_files']:.0f} files"
                        f" over {result['upload_s']:.2f} s, {result['upload_after_encode_s']:.2f} s of it"
                        " after ffmpeg finished",
                    ),
                ),
            ),
        ),
        (Check("overhead pipeline ÷ raw ffmpeg", f"{ratio:.3f}", f"≤ {target}", ratio <= target),),
        f"{seconds:.0f} s 1280x720 clip, preset {settings.encoder_x264_preset}",
    )


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]).met else 1)
