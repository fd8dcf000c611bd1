"""One video's pipeline, planned (pure): source → ffmpeg runs → output keys → the events that name them.

From a staged video, the input ffmpeg reads it from (the presigned URL encode.py streams it through),
what the probe found in it and the ladder settings, `plan_video` says every ffmpeg run (the HLS
ladder, the thumbnail and poster, the uploaded image) and every key the outputs
get under hls/<job_id>/<attempt>/<video_index>/ — a prefix unique to the attempt, so a retry never
overwrites what an earlier attempt wrote and a CDN may cache it forever. `video_outputs` and
`video_events` say what JobCompleted, VideoEncoded and ThumbnailSaved report once it ran.

Nothing here touches a file, a process or the network: encode.py executes the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from uuid import UUID

from services.core.manifest import StagedVideo
from services.core.mediaprobe import MediaInput
from services.core.payloads import ImageSource, PublishedVideo, Rendition, ThumbnailSaved, VideoEncoded
from services.core.settings import Settings
from services.encoder import ladder as hls
from services.encoder.thumbnails import frame_images_command, normalise_command, placeholder_command

THUMBNAIL_NAME = "thumbnail.webp"
POSTER_NAME = "poster.webp"


@dataclass(frozen=True, slots=True)
class LadderSettings:
    """The settings that shape a video's ffmpeg runs."""

    preset: str  # x264's speed/quality trade-off
    realtime_input: bool  # read the source at its own pace (-re), as a live feed would arrive
    max_image_pixels: int  # the decoder refuses an uploaded image larger than this
    threads: int = 0  # ffmpeg's decoder, filter and encoder threads; 0 is ffmpeg's own choice


def ladder_settings(settings: Settings) -> LadderSettings:
    """The ladder settings of a process's configuration."""
    return LadderSettings(
        preset=settings.encoder_x264_preset,
        realtime_input=settings.encoder_realtime_input,
        max_image_pixels=settings.max_image_pixels,
        threads=settings.encoder_threads,
    )


@dataclass(frozen=True, slots=True)
class WorkPaths:
    """Where one video's files live in the attempt's work folder (the source itself is not among
    them: ffmpeg streams it from storage)."""

    folder: Path
    uploaded_thumbnail: Path | None
    hls: Path
    images: Path

    @property
    def thumbnail(self) -> Path:
        """The thumbnail ffmpeg writes (from a frame, the placeholder card, or the uploaded image)."""
        return self.images / THUMBNAIL_NAME

    @property
    def poster(self) -> Path:
        """The poster ffmpeg writes from a frame (videos with a picture only)."""
        return self.images / POSTER_NAME


def work_paths(workdir: Path, video: StagedVideo) -> WorkPaths:
    """The local paths of `video` under `workdir`; downloads keep the staged key's suffix (pure)."""
    folder = workdir / str(video.index)
    uploaded = None
    if video.thumbnail is not None:
        uploaded = folder / f"uploaded{PurePosixPath(video.thumbnail.key).suffix}"
    return WorkPaths(
        folder=folder,
        uploaded_thumbnail=uploaded,
        hls=folder / "hls",
        images=folder / "images",
    )


@dataclass(frozen=True, slots=True)
class OutputKeys:
    """The S3 keys of one video's outputs."""

    prefix: str
    master: str
    thumbnail: str
    poster: str | None


def output_keys(job_id: UUID, attempt: int, video_index: int, has_poster: bool) -> OutputKeys:
    """hls/<job_id>/<attempt>/<video_index>/…: unique to the attempt, never rewritten (pure)."""
    prefix = f"hls/{job_id}/{attempt}/{video_index}"
    return OutputKeys(
        prefix=prefix,
        master=f"{prefix}/{hls.MASTER_NAME}",
        thumbnail=f"{prefix}/{THUMBNAIL_NAME}",
        poster=f"{prefix}/{POSTER_NAME}" if has_poster else None,
    )


@dataclass(frozen=True, slots=True)
class FfmpegRun:
    """One ffmpeg invocation, and how a message names what it converts."""

    argv: list[str]
    what: str


@dataclass(frozen=True, slots=True)
class UploadedThumbnail:
    """The image uploaded for a video, and the run that makes it the thumbnail."""

    path: Path
    filename: str  # as the uploader named it, for messages
    convert: FfmpegRun


@dataclass(frozen=True, slots=True)
class VideoPlan:
    """Everything one video's encode runs and writes, decided before ffmpeg starts."""

    video: StagedVideo
    paths: WorkPaths
    renditions: list[hls.Rendition]
    # The whole ladder in one run: one decode, split to every rendition, plus the master playlist.
    transcode: FfmpegRun
    # A representative frame as thumbnail and poster, or a plain card for an audio-only lecture.
    frame_images: FfmpegRun
    # The uploaded image made the thumbnail (replacing the frame's); None when none was uploaded.
    uploaded_thumbnail: UploadedThumbnail | None
    keys: OutputKeys

    @property
    def image_source(self) -> ImageSource:
        """Where the thumbnail comes from, as ThumbnailSaved says: "uploaded" or "frame"."""
        return "uploaded" if self.uploaded_thumbnail is not None else "frame"

    def image_files(self) -> dict[str, Path]:
        """key -> local path of the thumbnail and, for a video with a picture, the poster."""
        files = {self.keys.thumbnail: self.paths.thumbnail}
        if self.keys.poster is not None:
            files[self.keys.poster] = self.paths.poster
        return files


def plan_video(
    job_id: UUID,
    attempt: int,
    video: StagedVideo,
    paths: WorkPaths,
    source: hls.Source,
    ladder: LadderSettings,
    *,
    source_input: Path | MediaInput,
) -> VideoPlan:
    """The plan of `video`, read from `source_input` (a remote input, or a local file), given what
    the probe found in it (`source`) (pure)."""
    renditions = hls.choose_ladder(source)
    transcode = hls.hls_command(
        source_input,
        paths.hls,
        renditions,
        preset=ladder.preset,
        realtime_input=ladder.realtime_input,
        threads=ladder.threads,
    )
    if source.has_video:
        frames = frame_images_command(source_input, source, paths.thumbnail, paths.poster)
    else:
        frames = placeholder_command(paths.thumbnail)
    uploaded = None
    if paths.uploaded_thumbnail is not None and video.thumbnail is not None:
        argv = normalise_command(paths.uploaded_thumbnail, paths.thumbnail, ladder.max_image_pixels)
        convert = FfmpegRun(argv, "uploaded thumbnail")
        uploaded = UploadedThumbnail(paths.uploaded_thumbnail, video.thumbnail.filename, convert)
    return VideoPlan(
        video=video,
        paths=paths,
        renditions=renditions,
        transcode=FfmpegRun(transcode, f"video {video.filename!r}"),
        frame_images=FfmpegRun(frames, "thumbnail"),
        uploaded_thumbnail=uploaded,
        keys=output_keys(job_id, attempt, video.index, has_poster=source.has_video),
    )


def rendition_list(
    renditions: Sequence[hls.Rendition], variants: Sequence[hls.Variant]
) -> tuple[Rendition, ...]:
    """The renditions as VideoEncoded lists them: what the master playlist says, else the plan (pure)."""
    return tuple(
        Rendition(
            name=rendition.name,
            width=variant.width or rendition.width,
            height=variant.height or rendition.height,
            bandwidth=variant.bandwidth or rendition.bandwidth,
            codecs=variant.codecs or hls.codecs_string(rendition),
        )
        for rendition, variant in zip(renditions, variants, strict=False)
    )


def video_outputs(
    plan: VideoPlan, variants: Sequence[hls.Variant], duration_s: float, url: Callable[[str], str]
) -> PublishedVideo:
    """The video's entry in JobCompleted's outputs; `url` makes a key the URL a player fetches (pure)."""
    return PublishedVideo(
        video_index=plan.video.index,
        master_playlist_url=url(plan.keys.master),
        renditions=rendition_list(plan.renditions, variants),
        duration_s=round(duration_s, 3),
        thumbnail_url=url(plan.keys.thumbnail),
        poster_url=url(plan.keys.poster) if plan.keys.poster is not None else None,
    )


def video_events(plan: VideoPlan, outputs: PublishedVideo) -> list[VideoEncoded | ThumbnailSaved]:
    """VideoEncoded, then ThumbnailSaved for the thumbnail and (if any) the poster (pure)."""
    index = outputs.video_index
    events: list[VideoEncoded | ThumbnailSaved] = [
        VideoEncoded(
            video_index=index,
            master_playlist_url=outputs.master_playlist_url,
            renditions=outputs.renditions,
            duration_s=outputs.duration_s,
        ),
        ThumbnailSaved(
            video_index=index, kind="thumbnail", source=plan.image_source, url=outputs.thumbnail_url
        ),
    ]
    if outputs.poster_url is not None:
        events.append(
            ThumbnailSaved(video_index=index, kind="poster", source="frame", url=outputs.poster_url)
        )
    return events
