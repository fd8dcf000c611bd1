"""Test media and staged courses: a generated clip, and a course staged in S3 as the api stages it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from services.core.manifest import StagedFile, StagedVideo, StagingManifest, manifest_key, staging_prefix
from services.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def new_job_id() -> UUID:
    """A fresh job id."""
    return uuid4()


def make_clip(
    path: Path, seconds: float = 2.0, size: str = "320x180", rate: int = 25, timeout_s: float = 120
) -> Path:
    """A H.264/AAC test clip (testsrc2 + sine), moov atom at the end as ffmpeg writes it by default."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50",
            "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=timeout_s,
    )  # fmt: skip
    return path


def stage_course(
    settings: Settings,
    s3: S3Client,
    job_id: UUID,
    videos: Iterable[Path],
    thumbnails: dict[int, Path] | None = None,
) -> StagingManifest:
    """Upload `videos` under staging/<job_id>/ and write the manifest, as the api does before queuing."""
    staged = []
    for index, path in enumerate(videos):
        key = f"{staging_prefix(job_id)}videos/{index}{path.suffix}"
        s3.upload_file(str(path), settings.s3_bucket, key)
        thumbnail = None
        if thumbnails and index in thumbnails:
            image = thumbnails[index]
            thumb_key = f"{staging_prefix(job_id)}thumbnails/{index}{image.suffix}"
            s3.upload_file(str(image), settings.s3_bucket, thumb_key)
            thumbnail = StagedFile(
                key=thumb_key, filename=image.name, size_bytes=image.stat().st_size, content_type="image/png"
            )
        staged.append(
            StagedVideo(
                key=key,
                filename=path.name,
                size_bytes=max(1, path.stat().st_size),
                content_type="video/mp4",
                index=index,
                thumbnail=thumbnail,
            )
        )
    manifest = StagingManifest(
        job_id=job_id, owner="instructor-1", course_name="배열 Arrays", curriculum="CS101", videos=staged
    )
    s3.put_object(Bucket=settings.s3_bucket, Key=manifest_key(job_id), Body=manifest.to_json())
    return manifest


def staged_jobs(
    settings: Settings, s3: S3Client, clip_dir: Path, count: int, seconds: float, name: str = "lecture.mp4"
) -> list[StagingManifest]:
    """`count` new jobs, each a one-video course staged from the same `seconds`-long test clip."""
    clip = make_clip(clip_dir / name, seconds=seconds)
    return [stage_course(settings, s3, new_job_id(), [clip]) for _ in range(count)]


def staged_job(
    settings: Settings, s3: S3Client, clip_dir: Path, seconds: float, name: str = "lecture.mp4"
) -> tuple[UUID, StagingManifest]:
    """A new job id and its one-video course staged as the api would: a `seconds`-long test clip."""
    job_id = new_job_id()
    return job_id, stage_course(settings, s3, job_id, [make_clip(clip_dir / name, seconds=seconds)])
