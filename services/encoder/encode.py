"""The work of an attempt, executed: each video's plan (pipeline.py) run against S3 and ffmpeg.

Per video: a presigned URL of the staged source (no download: ffprobe and ffmpeg stream it with
ranged reads) → probe → plan → ffmpeg (the ladder, then the images), each finished segment uploaded
under hls/<job_id>/<attempt>/<video_index>/ while ffmpeg writes the next, the playlists and master
last → VideoEncoded and ThumbnailSaved, acknowledged (G3: an event names only outputs already
written). Between steps, and every 0.2 s while ffmpeg runs, the attempt's stop check is asked: past
the time limit, canceled, or fenced, the work stops (G2); so does a segment upload that failed.

G5 for a streamed source: a read that storage broke off (SourceReadError, from ffprobe or ffmpeg) is
checked against S3 itself: a source that is gone (404) or forbidden (403) fails the job as
permanent, like a failed download did; otherwise the read failure is transient and retried.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from services.core.manifest import StagedVideo, StagingManifest
from services.core.mediaprobe import MediaInput
from services.core.payloads import PublishedVideo
from services.core.settings import Settings
from services.core.storage import is_missing_object, public_url
from services.encoder import ladder as hls
from services.encoder import metrics
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
    plan_video,
    video_events,
    video_outputs,
    work_paths,
)
from services.encoder.probe import check_limits, describe, probe
from services.encoder.process import run_ffmpeg
from services.encoder.progress import ProgressParser, Step
from services.encoder.publisher import AttemptEvents
from services.encoder.source import read_failure, staged_input
from services.encoder.thumbnails import check_image, unreadable_image
from services.encoder.upload import LiveUpload, Uploaded, upload_files

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("coursecast.encoder")


@dataclass(frozen=True, slots=True)
class Encode:
    """Encodes one attempt's videos in course order; `all` returns JobCompleted's video entries."""

    settings: Settings
    s3: S3Client
    events: AttemptEvents
    progress: Progress
    # The attempt's time limit, as a time.monotonic() instant.
    deadline: float
    # What stops the work now (canceled, fenced, shutting down), or None to go on.
    should_stop: Callable[[], AttemptError | None]

    def all(self, manifest: StagingManifest) -> list[PublishedVideo]:
        """Encode every video of `manifest` in a work folder of its own, removed afterwards."""
        job_id, attempt = self.events.job_id, self.events.attempt
        workdir = Path(tempfile.mkdtemp(prefix=f"coursecast-{job_id}-{attempt}-"))
        try:
            videos = sorted(manifest.videos, key=lambda v: v.index)
            return [
                self._encode_video(video, position, len(videos), workdir)
                for position, video in enumerate(videos)
            ]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _encode_video(self, video: StagedVideo, position: int, count: int, workdir: Path) -> PublishedVideo:
        paths = work_paths(workdir, video)
        paths.hls.mkdir(parents=True)
        paths.images.mkdir()
        self.progress.set_step(position, count, Step.PROBING, 0.0)
        source_input = staged_input(self.settings, self.s3, video)
        if video.thumbnail is not None and paths.uploaded_thumbnail is not None:
            self._download(video.thumbnail.key, paths.uploaded_thumbnail, video.thumbnail.filename)
            # An image over the pixel limit fails the job now, not after the whole encode.
            check_image(
                paths.uploaded_thumbnail,
                video.thumbnail.filename,
                self.settings.max_image_pixels,
                self.settings.probe_timeout_s,
            )
        self._check()
        try:
            return self._encode_streamed(video, source_input, paths, position, count)
        except SourceReadError as exc:
            raise read_failure(self.settings, self.s3, video, exc) from None

    def _encode_streamed(
        self, video: StagedVideo, source_input: MediaInput, paths: WorkPaths, position: int, count: int
    ) -> PublishedVideo:
        source = describe(probe(source_input, video.filename, self.settings.probe_timeout_s), video.filename)
        check_limits(
            source,
            video.filename,
            self.settings.max_video_duration_s,
            self.settings.max_video_width,
            self.settings.max_video_height,
        )
        ladder = ladder_settings(self.settings)
        plan = plan_video(
            self.events.job_id, self.events.attempt, video, paths, source, ladder, source_input=source_input
        )

        self.progress.set_step(position, count, Step.TRANSCODING, 0.0)
        with LiveUpload(
            self.s3,
            self.settings.s3_bucket,
            paths.hls,
            plan.keys.prefix,
            self.settings.encoder_upload_concurrency,
        ) as live:

            def stop_or_failed_upload() -> AttemptError | None:
                stop = self.should_stop()
                if stop is not None:
                    return stop
                failed = live.error()
                return classify(failed) if failed is not None else None

            transcode_started = time.monotonic()
            self._run(
                plan.transcode,
                parser=ProgressParser(source.duration_s),
                on_progress=lambda f: self.progress.set_step(position, count, Step.TRANSCODING, f),
                source=source_input,
                should_stop=stop_or_failed_upload,
            )
            metrics.observe_encode(plan.renditions, time.monotonic() - transcode_started, source.duration_s)

            # The last segments upload while the thumbnail and poster are made.
            self.progress.set_step(position, count, Step.THUMBNAILS, 0.0)
            self._run(plan.frame_images, source=source_input, should_stop=stop_or_failed_upload)
            uploaded = plan.uploaded_thumbnail
            if uploaded is not None:
                limit = self.settings.max_image_pixels
                check_image(uploaded.path, uploaded.filename, limit, self.settings.probe_timeout_s)
                try:
                    self._run(uploaded.convert)
                except PermanentError:
                    raise unreadable_image(uploaded.filename, limit) from None

            self.progress.set_step(position, count, Step.UPLOADING, 0.0)
            self._check()
            hls_written = live.finish()
        images = upload_files(
            self.s3, self.settings.s3_bucket, plan.image_files(), self.settings.encoder_upload_concurrency
        )
        self._log_upload(video, hls_written, images)
        self._check()

        variants = hls.parse_master((paths.hls / hls.MASTER_NAME).read_text())
        outputs = video_outputs(plan, variants, source.duration_s, lambda key: public_url(self.settings, key))
        for event in video_events(plan, outputs):
            self.events.publish(event)
        return outputs

    def _log_upload(self, video: StagedVideo, hls_written: Uploaded, images: Uploaded) -> None:
        log.info(
            "uploaded",
            extra={
                **self.events.log_extra,
                "event": "upload_completed",
                "video_index": video.index,
                "files": hls_written.files + images.files,
                "bytes": hls_written.bytes + images.bytes,
                # From the first segment's PUT to the master's, mostly while ffmpeg encoded…
                "seconds": round(hls_written.seconds + images.seconds, 3),
                # …and what the job still waited for once ffmpeg had finished.
                "after_encode_s": round(hls_written.tail_s + images.seconds, 3),
            },
        )

    def _run(
        self,
        run: FfmpegRun,
        parser: ProgressParser | None = None,
        on_progress: Callable[[float], None] | None = None,
        source: MediaInput | None = None,
        should_stop: Callable[[], AttemptError | None] | None = None,
    ) -> None:
        run_ffmpeg(
            run.argv,
            deadline=self.deadline,
            time_limit_s=self.settings.encode_time_limit_s,
            should_stop=should_stop or self.should_stop,
            parser=parser,
            on_progress=on_progress,
            what=run.what,
            source=source,
        )

    def _download(self, key: str, path: Path, filename: str) -> Path:
        try:
            self.s3.download_file(self.settings.s3_bucket, key, str(path))
        except ClientError as exc:
            if is_missing_object(exc):
                raise missing_input(repr(filename)) from None
            raise
        return path

    def _check(self) -> None:
        """Between steps: raise what would have stopped ffmpeg (time limit, cancel, lost claim)."""
        if time.monotonic() >= self.deadline:
            raise TimeLimitError(
                f"The job took longer than the time limit of {self.settings.encode_time_limit_s} s "
                "and was stopped."
            )
        stop = self.should_stop()
        if stop is not None:
            raise stop
