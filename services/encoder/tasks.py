"""The work of a course's attempt and of a task's attempt (docs/fan-out.md), executed.

A course's attempt plans (`Planning.plan`): it measures every lecture (download, probe, limits: a bad
video fails the course here, with a message a person understands, G5) and cuts the course into
tasks (core/course_plan.py); the conductor runs them. A task's attempt (`TaskWork.run`) encodes one
piece and uploads it under hls/<task_id>/<attempt>/<lecture_index>/, unique to the attempt (G1: a
zombie attempt never writes where another attempt's output lives), and returns the TaskCompleted
that names it:
  lecture  the whole lecture as one process does it (encode.Encode): ladder with its audio, images;
  video    one chunk of the lecture's video ladder (chunk_encode.encode_video_chunk);
  audio    the lecture's audio rendition, once (chunk_encode.encode_audio), with its images.
The stop check (time limit per task, cancel, lost claim) is asked between steps and while ffmpeg runs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from uuid import UUID

from botocore.exceptions import ClientError

from services.core.chunking import Chunk
from services.core.course_plan import LectureSource, plan_course
from services.core.manifest import StagedVideo, StagingManifest
from services.core.messages import Envelope
from services.core.payloads import CoursePlanned, EncodeTask, Rendition, TaskCompleted
from services.core.settings import Settings
from services.core.storage import is_missing_object, public_url
from services.encoder import chunk_encode
from services.encoder import ladder as hls
from services.encoder.encode import Encode
from services.encoder.errors import AttemptError, PermanentError, TimeLimitError, missing_input
from services.encoder.heartbeat import Progress
from services.encoder.pipeline import (
    FfmpegRun,
    WorkPaths,
    ladder_settings,
    output_keys,
    plan_video,
    work_paths,
)
from services.encoder.probe import check_limits, describe, probe
from services.encoder.process import run_ffmpeg
from services.encoder.progress import Step
from services.encoder.publisher import AttemptEvents
from services.encoder.thumbnails import check_image, unreadable_image
from services.encoder.upload import tree, upload_files

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The audio rendition of a chunked lecture, as the master playlist and the events name it.
AUDIO_RENDITION = Rendition(
    name="audio", width=0, height=0, bandwidth=hls.AUDIO_BITRATE, codecs=hls.AUDIO_CODEC
)


def lecture_title(video: StagedVideo) -> str:
    """The title a lecture gets when none was given: its file's name without the extension."""
    stem = PurePosixPath(video.filename).stem.strip()
    return stem or f"Lecture {video.index + 1}"


@dataclass(frozen=True, slots=True)
class Steps:
    """What every piece of work needs besides its input: S3, progress, and when to stop."""

    settings: Settings
    s3: S3Client
    progress: Progress
    # The attempt's time limit, as a time.monotonic() instant.
    deadline: float
    # What stops the work now (canceled, fenced, shutting down), or None to go on.
    should_stop: Callable[[], AttemptError | None]

    def download(self, key: str, path: Path, filename: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(self.settings.s3_bucket, key, str(path))
        except ClientError as exc:
            if is_missing_object(exc):
                raise missing_input(repr(filename)) from None
            raise
        return path

    def measure(self, video: StagedVideo, path: Path) -> hls.Source:
        """Probe a downloaded video and hold it to the limits (G5: a bad one is a permanent error)."""
        s = self.settings
        source = describe(probe(path, video.filename, s.probe_timeout_s), video.filename)
        check_limits(source, video.filename, s.max_video_duration_s, s.max_video_width, s.max_video_height)
        return source

    def run(self, run: FfmpegRun) -> None:
        run_ffmpeg(
            run.argv,
            deadline=self.deadline,
            time_limit_s=self.settings.encode_time_limit_s,
            should_stop=self.should_stop,
            what=run.what,
        )

    def check(self) -> None:
        """Between steps: raise what would have stopped ffmpeg (time limit, cancel, lost claim)."""
        if time.monotonic() >= self.deadline:
            raise TimeLimitError(
                f"The task took longer than the time limit of {self.settings.encode_time_limit_s} s "
                "and was stopped."
            )
        stop = self.should_stop()
        if stop is not None:
            raise stop


def find_video(manifest: StagingManifest, index: int) -> StagedVideo:
    for video in manifest.videos:
        if video.index == index:
            return video
    raise PermanentError(
        f"Lecture {index + 1} is not in the course's list of uploaded files. Please upload the course again.",
        "invalid_manifest",
    )


@dataclass(frozen=True, slots=True)
class Planning:
    """A course's attempt: measure its lectures, cut it into tasks."""

    steps: Steps

    def plan(self, course_job_id: UUID, manifest: StagingManifest) -> CoursePlanned:
        workdir = Path(tempfile.mkdtemp(prefix=f"coursecast-plan-{course_job_id}-"))
        try:
            lectures = []
            videos = sorted(manifest.videos, key=lambda v: v.index)
            for position, video in enumerate(videos):
                self.steps.progress.set_step(position, len(videos), Step.PROBING, 0.0)
                self.steps.check()
                local = workdir / f"{video.index}{PurePosixPath(video.key).suffix}"
                path = self.steps.download(video.key, local, video.filename)
                source = self.steps.measure(video, path)
                path.unlink()
                lectures.append(
                    LectureSource(
                        index=video.index,
                        title=lecture_title(video),
                        duration_s=source.duration_s,
                        source_key=video.key,
                        thumbnail_key=video.thumbnail.key if video.thumbnail is not None else None,
                    )
                )
            s = self.steps.settings
            return plan_course(course_job_id, lectures, s.chunk_s, hls.SEGMENT_S)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class TaskWork:
    """A task's attempt: encode its piece of a lecture, upload it, say what was written."""

    steps: Steps
    events: AttemptEvents

    def run(self, command: Envelope[EncodeTask], manifest: StagingManifest) -> TaskCompleted:
        task = command.data.task
        video = find_video(manifest, task.lecture_index)
        if task.media == "lecture":
            return self._whole_lecture(manifest, video)
        workdir = Path(tempfile.mkdtemp(prefix=f"coursecast-task-{command.job_id}-{command.attempt}-"))
        try:
            paths = work_paths(workdir, video)
            self.steps.progress.set_step(0, 1, Step.PROBING, 0.0)
            self.steps.download(video.key, paths.source, video.filename)
            self.steps.check()
            source = self.steps.measure(video, paths.source)
            out = paths.hls
            out.mkdir(parents=True)
            if task.media == "video":
                chunk = Chunk(task.chunk_index, task.start_s, task.end_s)
                renditions = self._video_chunk(chunk, paths.source, source, out)
                images: dict[str, Path] = {}
                thumbnail_url = poster_url = None
            else:
                renditions = self._audio(paths.source, source, out)
                images, thumbnail_url, poster_url = self._images(video, paths, source)
            self.steps.progress.set_step(0, 1, Step.UPLOADING, 0.0)
            self.steps.check()
            prefix = self._prefix(task.lecture_index)
            upload_files(
                self.steps.s3,
                self.steps.settings.s3_bucket,
                tree(out, prefix) | images,
                self.steps.settings.encoder_upload_concurrency,
            )
            self.steps.check()
            return TaskCompleted(
                output_prefix=f"{prefix}/",
                renditions=renditions,
                duration_s=round(task.end_s - task.start_s, 6),
                thumbnail_url=thumbnail_url,
                poster_url=poster_url,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _prefix(self, lecture_index: int) -> str:
        return output_keys(self.events.job_id, self.events.attempt, lecture_index, has_poster=False).prefix

    def _whole_lecture(self, manifest: StagingManifest, video: StagedVideo) -> TaskCompleted:
        s = self.steps
        encode = Encode(
            s.settings, s.s3, self.events, s.progress, deadline=s.deadline, should_stop=s.should_stop
        )
        (published,) = encode.all(manifest.model_copy(update={"videos": [video]}))
        return TaskCompleted(
            output_prefix=f"{self._prefix(video.index)}/",
            renditions=published.renditions,
            duration_s=published.duration_s,
            master_playlist_url=published.master_playlist_url,
            thumbnail_url=published.thumbnail_url,
            poster_url=published.poster_url,
        )

    def _video_chunk(self, chunk: Chunk, path: Path, source: hls.Source, out: Path) -> tuple[Rendition, ...]:
        ladder = [r for r in hls.choose_ladder(source) if r.width]
        if not ladder:
            raise PermanentError("The video has no picture to encode.", "invalid_media")
        s = self.steps
        s.progress.set_step(0, 1, Step.TRANSCODING, 0.0)
        chunk_encode.encode_video_chunk(
            path,
            out,
            chunk,
            ladder,
            deadline=s.deadline,
            time_limit_s=s.settings.encode_time_limit_s,
            should_stop=s.should_stop,
            on_progress=lambda f: s.progress.set_step(0, 1, Step.TRANSCODING, f),
            preset=ladder_settings(s.settings).preset,
        )
        # Each rung as the master names it: its bandwidth and codecs count the audio that plays along.
        return tuple(hls.as_reported(r) for r in hls.choose_ladder(source) if r.width)

    def _audio(self, path: Path, source: hls.Source, out: Path) -> tuple[Rendition, ...]:
        if not source.has_audio:
            return ()
        s = self.steps
        s.progress.set_step(0, 1, Step.TRANSCODING, 0.0)
        chunk_encode.encode_audio(
            path,
            out,
            source.duration_s,
            deadline=s.deadline,
            time_limit_s=s.settings.encode_time_limit_s,
            should_stop=s.should_stop,
            on_progress=lambda f: s.progress.set_step(0, 1, Step.TRANSCODING, f),
        )
        return (AUDIO_RENDITION,)

    def _images(
        self, video: StagedVideo, paths: WorkPaths, source: hls.Source
    ) -> tuple[dict[str, Path], str | None, str | None]:
        """The lecture's thumbnail and poster, made as the whole-lecture encode makes them."""
        s = self.steps
        s.progress.set_step(0, 1, Step.THUMBNAILS, 0.0)
        paths.images.mkdir(parents=True, exist_ok=True)
        if video.thumbnail is not None and paths.uploaded_thumbnail is not None:
            s.download(video.thumbnail.key, paths.uploaded_thumbnail, video.thumbnail.filename)
            limit = s.settings.max_image_pixels
            check_image(paths.uploaded_thumbnail, video.thumbnail.filename, limit, s.settings.probe_timeout_s)
        ladder = ladder_settings(s.settings)
        plan = plan_video(self.events.job_id, self.events.attempt, video, paths, source, ladder)
        s.run(plan.frame_images)
        if plan.uploaded_thumbnail is not None:
            try:
                s.run(plan.uploaded_thumbnail.convert)
            except PermanentError:
                raise unreadable_image(
                    plan.uploaded_thumbnail.filename, s.settings.max_image_pixels
                ) from None
        poster = public_url(s.settings, plan.keys.poster) if plan.keys.poster is not None else None
        return plan.image_files(), public_url(s.settings, plan.keys.thumbnail), poster
