"""`coursecast publish` as an instructor runs it: two files, killed twice, run again, one job.

The first run dies (SIGKILL, the `cli.after_part` fault point) right after S3 acknowledged the first
part of the first file; the same command run again continues that very upload with the parts not yet
sent, uploads the second file and submits the course — and dies too (`cli.after_submit`), the course
accepted but the local state not cleared. The third run sends no byte again, gets the same job back
(the submission's Idempotency-Key) and follows the encode to `completed`: one job, not two. The real
api, projector and encoder run as processes; the CLI talks to them over HTTP only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from devtools.demo import create_instructor, make_lecture
from services.core.settings import PROJECT_ROOT, Settings, environment
from tests.support.observe import course_tasks
from tests.support.services import running

MIB = 1024**2


def make_large_clip(path: Path) -> Path:
    """A 4 s testsrc2 + sine clip made hard to compress (noise): ~10 MB, more than one upload part."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
         "-vf", "noise=alls=25:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`coursecast ARGS` as a separate process, with these settings and extra environment."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=PROJECT_ROOT,
        env=environment(settings, COLUMNS="200", **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_publish_resumes_after_a_kill_mid_file_and_follows_the_job_to_completed(
    own: Settings, tmp_path: Path
) -> None:
    first = make_large_clip(tmp_path / "1강 소개.mp4")
    second = make_lecture(tmp_path / "2강 배열.mp4", seconds=4, size="640x360")
    assert first.stat().st_size > own.upload_part_bytes, "the first file must need more than one part"
    state_file = tmp_path / "uploads.json"
    with running(own, tmp_path) as services:
        services.projector()
        services.encoder()
        base = services.api()
        _, token = create_instructor(own)
        publish = ("publish", str(first), str(second), "--name", "CLI 강좌", "--curriculum", "CLI-101",
                   "--api-url", base, "--state-file", str(state_file), "--wait", "--json")  # fmt: skip

        killed = cli(own, *publish, COURSECAST_TOKEN=token, COURSECAST_FAULT_POINT="cli.after_part:1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        (entry,) = orjson.loads(state_file.read_bytes())["files"].values()
        assert sorted(entry["etags"]) == ["1"]
        assert entry["completed"] is False
        assert state_file.stat().st_mode & 0o077 == 0, "the state holds presigned URLs: owner only"

        submitted = cli(own, *publish, COURSECAST_TOKEN=token, COURSECAST_FAULT_POINT="cli.after_submit:1")
        assert submitted.returncode == -signal.SIGKILL, submitted.stderr
        kept = orjson.loads(state_file.read_bytes())["files"]
        assert [entry["upload_id"]] == [e["upload_id"] for e in kept.values() if len(e["etags"]) > 1]
        assert all(e["completed"] for e in kept.values())

        resumed = cli(own, *publish, COURSECAST_TOKEN=token)
        assert resumed.returncode == 0, resumed.stderr
        report: dict[str, Any] = orjson.loads(resumed.stdout)
        assert report["status"] == "completed", report
        one, two = report["uploads"]
        assert one["upload_id"] == entry["upload_id"], "the interrupted upload was not continued"
        assert one["parts"] >= 2
        assert one["parts_resumed"] == one["parts"]  # every part was in S3 before this run
        assert one["size_bytes"] == first.stat().st_size
        assert two["parts_resumed"] == two["parts"]
        job = report["job"]
        assert job["job_id"] == report["job_id"]
        assert job["video_count"] == 2
        assert len(job["outputs"]["videos"]) == 2
        # The uploads became the job's: nothing is left to resume.
        assert orjson.loads(state_file.read_bytes())["files"] == {}

        # One job for the three runs: the third got the second's job back, it did not publish again.
        courses = cli(own, "courses", "--api-url", base, "--json", COURSECAST_TOKEN=token)
        assert courses.returncode == 0, courses.stderr
        (course,) = orjson.loads(courses.stdout)["items"]  # the catalogue's entry for the course
        assert course["job_id"] == course["course_id"] == report["job_id"]
        assert course["name"] == "CLI 강좌"
        assert [lecture["index"] for lecture in course["lectures"]] == [0, 1]

        refused = cli(own, "courses", "--api-url", base, "--json", COURSECAST_TOKEN="cc_not-a-token")
        assert refused.returncode == 1
        assert orjson.loads(refused.stdout)["problem"]["status"] == 401

    listed = cli(own, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    # The test's own schema holds this test's jobs only: exactly the one course (its tasks are not
    # listed, as the api lists courses only)...
    assert [item["job_id"] for item in orjson.loads(listed.stdout)["items"]] == [report["job_id"]]
    # ...and with --tasks, its two lecture tasks too (docs/fan-out.md).
    tasks = {str(task.job_id) for task in course_tasks(own, UUID(report["job_id"]))}
    assert len(tasks) == 2
    everything = cli(own, "jobs", "--tasks", "--json")
    assert everything.returncode == 0, everything.stderr
    assert {item["job_id"] for item in orjson.loads(everything.stdout)["items"]} == {report["job_id"], *tasks}
    detail = cli(own, "job", report["job_id"], "--json")
    assert detail.returncode == 0, detail.stderr
    shown = orjson.loads(detail.stdout)
    assert shown["job"]["status"] == "completed"
    assert shown["events"][0]["type"] == "JobQueued"
