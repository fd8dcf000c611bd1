"""The work of a course's attempt and of a task's attempt (docs/fan-out.md), executed.

A course's attempt plans (`Planning.plan`): it measures every lecture (probe through a presigned
URL, limits: a bad video fails the course here, with a message a person understands, G5) and cuts
the course into tasks (core/course_plan.py); the conductor runs them. A task's attempt
(`TaskWork.run`) streams its source from S3 (source.py: no download), encodes one piece, uploads
each segment while ffmpeg writes the next (upload.LiveUpload, playlists last) under
hls/<task_id>/<attempt>/<lecture_index>/, unique to the attempt (G1: a zombie attempt never writes
where another attempt's output lives), and returns the TaskCompleted that names it (G3: only once
every file it names is stored):
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
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from uuid import UUID

from botocore.exceptions import ClientError

from services.core.chunking import Chunk
from services.core.course_plan import LectureSource, plan_course
from services.core.manifest import StagedVideo, StagingManifest
from services.core.mediaprobe import MediaInput
from services.core.messages import Envelope
from services.core.payloads import CoursePlanned, EncodeTask, Rendition, TaskCompleted, TaskSpec
from services.core.settings import Settings
from services.core.storage import is_missing_object, public_url
from services.encoder import chunk_encode
from services.encoder import ladder as hls
from services.encoder.encode import Encode
from services.encoder.errors import (
    AttemptError,
    PermanentError,
    SourceReadError,
    TimeLimitError,
    classify,
    missing_input,
)
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
from services.encoder.source import read_failure, staged_input
from services.encoder.thumbnails import check_image, unreadable_image
from services.encoder.upload import LiveUpload, upload_files

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

    def source(self, video: StagedVideo) -> MediaInput:
        """The lecture's staged source, streamed (source.staged_input)."""
        return staged_input(self.settings, self.s3, video)

    def read_failure(self, video: StagedVideo, failure: SourceReadError) -> AttemptError:
        return read_failure(self.settings, self.s3, video, failure)

    def download(self, key: str, path: Path, filename: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(self.settings.s3_bucket, key, str(path))
        except ClientError as exc:
            if is_missing_object(exc):
                raise missing_input(repr(filename)) from None
            raise
        return path

    def measure(self, video: StagedVideo, source_input: MediaInput) -> hls.Source:
        """Probe a video and hold it to the limits (G5: a bad one is a permanent error)."""
        s = self.settings
        source = describe(probe(source_input, video.filename, s.probe_timeout_s), video.filename)
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
        lectures = []
        videos = sorted(manifest.videos, key=lambda v: v.index)
        for position, video in enumerate(videos):
            self.steps.progress.set_step(position, len(videos), Step.PROBING, 0.0)
            self.steps.check()
            try:
                source = self.steps.measure(video, self.steps.source(video))
            except SourceReadError as exc:
                raise self.steps.read_failure(video, exc) from None
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
            return self._piece(task, video, work_paths(workdir, video))
        except SourceReadError as exc:
            raise self.steps.read_failure(video, exc) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _piece(self, task: TaskSpec, video: StagedVideo, paths: WorkPaths) -> TaskCompleted:
        """A chunk of the lecture's video, or its audio with its images."""
        s = self.steps
        s.progress.set_step(0, 1, Step.PROBING, 0.0)
        source_input = s.source(video)
        s.check()
        source = s.measure(video, source_input)
        out = paths.hls
        out.mkdir(parents=True)
        prefix = self._prefix(task.lecture_index)
        images: dict[str, Path] = {}
        thumbnail_url = poster_url = None
        with LiveUpload(
            s.s3, s.settings.s3_bucket, out, prefix, s.settings.encoder_upload_concurrency
        ) as live:

            def stop_or_failed_upload() -> AttemptError | None:
                failed = live.error()
                return s.should_stop() or (classify(failed) if failed is not None else None)

            steps = replace(s, should_stop=stop_or_failed_upload)
            if task.media == "video":
                chunk = Chunk(task.chunk_index, task.start_s, task.end_s)
                renditions = self._video_chunk(steps, chunk, source_input, source, out)
            else:
                renditions = self._audio(steps, source_input, source, out)
                images, thumbnail_url, poster_url = self._images(steps, video, paths, source, source_input)
            s.progress.set_step(0, 1, Step.UPLOADING, 0.0)
            s.check()
            live.finish()
        upload_files(s.s3, s.settings.s3_bucket, images, s.settings.encoder_upload_concurrency)
        s.check()
        return TaskCompleted(
            output_prefix=f"{prefix}/",
            renditions=renditions,
            duration_s=round(task.end_s - task.start_s, 6),
            thumbnail_url=thumbnail_url,
            poster_url=poster_url,
        )

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

    def _video_chunk(
        self, s: Steps, chunk: Chunk, source_input: MediaInput, source: hls.Source, out: Path
    ) -> tuple[Rendition, ...]:
        ladder = [r for r in hls.choose_ladder(source) if r.width]
        if not ladder:
            raise PermanentError("The video has no picture to encode.", "invalid_media")
        s.progress.set_step(0, 1, Step.TRANSCODING, 0.0)
        chunk_encode.encode_video_chunk(
            source_input,
            out,
            chunk,
            ladder,
            deadline=s.deadline,
            time_limit_s=s.settings.encode_time_limit_s,
            should_stop=s.should_stop,
            on_progress=lambda f: s.progress.set_step(0, 1, Step.TRANSCODING, f),
            preset=ladder_settings(s.settings).preset,
            threads=s.settings.encoder_threads,
        )
        # Each rung as the master names it: its bandwidth and codecs count the audio that plays along.
        return tuple(hls.as_reported(r) for r in hls.choose_ladder(source) if r.width)

    def _audio(
        self, s: Steps, source_input: MediaInput, source: hls.Source, out: Path
    ) -> tuple[Rendition, ...]:
        if not source.has_audio:
            return ()
        s.progress.set_step(0, 1, Step.TRANSCODING, 0.0)
        chunk_encode.encode_audio(
            source_input,
            out,
            source.duration_s,
            deadline=s.deadline,
            time_limit_s=s.settings.encode_time_limit_s,
            should_stop=s.should_stop,
            on_progress=lambda f: s.progress.set_step(0, 1, Step.TRANSCODING, f),
            threads=s.settings.encoder_threads,
        )
        return (AUDIO_RENDITION,)

    def _images(
        self, s: Steps, video: StagedVideo, paths: WorkPaths, source: hls.Source, source_input: MediaInput
    ) -> tuple[dict[str, Path], str | None, str | None]:
        """The lecture's thumbnail and poster, made as the whole-lecture encode makes them."""
        s.progress.set_step(0, 1, Step.THUMBNAILS, 0.0)
        paths.images.mkdir(parents=True, exist_ok=True)
        if video.thumbnail is not None and paths.uploaded_thumbnail is not None:
            s.download(video.thumbnail.key, paths.uploaded_thumbnail, video.thumbnail.filename)
            limit = s.settings.max_image_pixels
            check_image(paths.uploaded_thumbnail, video.thumbnail.filename, limit, s.settings.probe_timeout_s)
        ladder = ladder_settings(s.settings)
        plan = plan_video(
            self.events.job_id, self.events.attempt, video, paths, source, ladder, source_input=source_input
        )
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
