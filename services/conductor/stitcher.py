"""Stitching a chunked lecture in object storage: its tasks' outputs → one published lecture.

The video chunks and the audio were encoded by separate tasks, each under its own prefix
(hls/<task_id>/<attempt>/<lecture>/). The stitched lecture is written under
hls/<course_job_id>/<course attempt>/<lecture>/, like a whole lecture's encode:
  <v>/c<k>_<n>.ts     every chunk's segments, TS continuity counters made to run on across the seams
                      (ts_continuity: chunk 0's are copied as they are, later chunks' rewritten);
  audio/a_<n>.ts      the audio's segments, copied;
  <v>/index.m3u8, audio/index.m3u8   the stitched playlists (core/stitch.py), written after the
                      segments they name;
  master.m3u8         last: a reader who finds the master finds everything it names.
Every key is a function of the stitch, so stitching again (a replayed batch after a crash, G3)
writes the same bytes to the same keys. No encode happens here: the bytes are the tasks'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from services.conductor.rules import Stitch
from services.core import ts_continuity
from services.core.chunking import Chunk
from services.core.jobs import JobState
from services.core.object_headers import cache_control, content_type
from services.core.payloads import PublishedVideo, TaskCompleted
from services.core.settings import Settings
from services.core.stitch import (
    AUDIO_CHUNK_NAME,
    AUDIO_DIR,
    MASTER_NAME,
    PLAYLIST_NAME,
    ChunkPlaylist,
    StitchError,
    chunk_playlist_name,
    master_playlist,
    parse_media_playlist,
    stitch,
)
from services.core.storage import public_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def lecture_prefix(job: Stitch) -> str:
    """Where a stitched lecture is published: per course attempt, like a whole lecture's encode."""
    return f"hls/{job.course_job_id}/{job.course_attempt}/{job.lecture.index}"


@dataclass(frozen=True, slots=True)
class Stitcher:
    """Stitches lectures in the bucket; `publish` returns the lecture as LecturePublished names it."""

    settings: Settings
    s3: S3Client

    def publish(self, job: Stitch) -> PublishedVideo:
        """Raises StitchError (or ts_continuity.TsError) when the tasks' outputs do not make a whole
        lecture: a permanent fault of those outputs. S3 errors are raised as they are (transient)."""
        chunks = [(_result(t), t) for t in job.video]
        if not chunks:
            raise StitchError(f"lecture {job.lecture.index} has no video chunk to stitch")
        ladder = [r for r in chunks[0][0].renditions if r.width]
        if not ladder or any(tuple(r.renditions) != chunks[0][0].renditions for r, _ in chunks):
            raise StitchError("the chunks of the lecture were not encoded with one ladder")
        prefix = lecture_prefix(job)
        video_uris = [self._video_rendition(prefix, v, chunks) for v in range(len(ladder))]
        audio = _result(job.audio) if job.audio is not None else None
        audio_uri = None
        if audio is not None and audio.renditions:
            audio_uri = self._audio_rendition(prefix, audio, job.lecture.duration_s)
        if audio is None or audio.thumbnail_url is None:
            raise StitchError(f"lecture {job.lecture.index} has no thumbnail (its audio task made none)")
        master = master_playlist(ladder, video_uris, audio_uri)
        self._put_text(f"{prefix}/{MASTER_NAME}", master)
        return PublishedVideo(
            video_index=job.lecture.index,
            master_playlist_url=public_url(self.settings, f"{prefix}/{MASTER_NAME}"),
            renditions=tuple(ladder),
            duration_s=job.lecture.duration_s,
            thumbnail_url=audio.thumbnail_url,
            poster_url=audio.poster_url,
        )

    def _video_rendition(self, prefix: str, v: int, chunks: Sequence[tuple[TaskCompleted, JobState]]) -> str:
        parts: list[ChunkPlaylist] = []
        sources: list[str] = []
        for result, task in chunks:
            spec = task.task
            assert spec is not None
            folder = f"{result.output_prefix}{v}/"
            text = self._get_text(f"{folder}{chunk_playlist_name(spec.chunk_index)}")
            parts.append(ChunkPlaylist(Chunk(spec.chunk_index, spec.start_s, spec.end_s), text))
            sources += [f"{folder}{s.uri}" for s in parse_media_playlist(text)]
        playlist = stitch(parts)
        uris = [s.uri for s in parse_media_playlist(playlist)]
        self._copy_continuous(sources, [f"{prefix}/{v}/{uri}" for uri in uris])
        self._put_text(f"{prefix}/{v}/{PLAYLIST_NAME}", playlist)
        return f"{v}/{PLAYLIST_NAME}"

    def _audio_rendition(self, prefix: str, audio: TaskCompleted, duration_s: float) -> str:
        folder = f"{audio.output_prefix}{AUDIO_DIR}/"
        text = self._get_text(f"{folder}{AUDIO_CHUNK_NAME}")
        playlist = stitch([ChunkPlaylist(Chunk(0, 0.0, duration_s), text)])
        for segment in parse_media_playlist(playlist):
            self._copy(f"{folder}{segment.uri}", f"{prefix}/{AUDIO_DIR}/{segment.uri}")
        self._put_text(f"{prefix}/{AUDIO_DIR}/{PLAYLIST_NAME}", playlist)
        return f"{AUDIO_DIR}/{PLAYLIST_NAME}"

    def _copy_continuous(self, sources: Sequence[str], targets: Sequence[str]) -> None:
        """Copy segments in playlist order, shifting TS continuity counters so that each PID runs on
        from one segment to the next (planned per segment from the bytes as they are: see
        ts_continuity.plan_shifts). A segment that needs no shift is copied inside the bucket."""
        summaries = [ts_continuity.summarize(self._get(key)) for key in sources]
        plan = ts_continuity.plan_shifts(summaries)
        for source, target, shifts in zip(sources, targets, plan, strict=True):
            if shifts:
                data = ts_continuity.shift_counters(self._get(source), shifts)
                self._put(target, data)
            else:
                self._copy(source, target)

    # --- S3 ----------------------------------------------------------------------------------

    @property
    def _bucket(self) -> str:
        return self.settings.s3_bucket

    def _get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()

    def _get_text(self, key: str) -> str:
        try:
            return self._get(key).decode("utf-8")
        except UnicodeDecodeError:
            raise StitchError(f"{key} is not a text playlist") from None

    def _put_text(self, key: str, text: str) -> None:
        self._put(key, text.encode("utf-8"))

    def _put(self, key: str, body: bytes) -> None:
        path = PurePosixPath(key)
        self.s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType=content_type(path),
            CacheControl=cache_control(path),
        )

    def _copy(self, source: str, target: str) -> None:
        origin = {"Bucket": self._bucket, "Key": source}
        self.s3.copy_object(Bucket=self._bucket, Key=target, CopySource=origin)  # type: ignore[arg-type]


def _result(task: JobState) -> TaskCompleted:
    if task.task_result is None:
        raise StitchError(f"task {task.job_id} has no result to stitch")
    return task.task_result
