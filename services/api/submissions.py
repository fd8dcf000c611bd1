"""Accepting a course: stage its files, write the manifest, then append JobQueued + PublishCourse.

Order of effects, and why no job is ever half born:
1. every file is streamed to staging/<job_id>/ and checked (magic bytes, then ffprobe);
2. the manifest is written — before any message names it;
3. the api's submission row is inserted (unpublished); an Idempotency-Key was reserved before step 1;
4. JobQueued + PublishCourse go out in one Kafka transaction; JobQueued carries the lecture titles
   (form field 'titles', one per video, else each file's name) and the original file names;
5. the submission is marked published (GET may now show the job as queued before the projector has).
A failure before 4 commits deletes what was staged and the row; no consumer ever saw anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from anyio import to_thread

from services.api.auth import User
from services.api.db import AsyncConn
from services.api.formstream import ParsedForm, boundary_of, read_form
from services.api.handlers.uploads import claim_uploads, release_claims
from services.api.problems import ProblemError, kafka_unavailable
from services.api.publisher import KafkaUnavailableError
from services.api.runtime import Services
from services.api.staging import (
    StagedObject,
    check_has_video,
    check_image_size,
    display_name,
    safe_key_name,
    sniff_media,
)
from services.api.text import refuse_control_characters
from services.core.catalogue import MAX_TITLE_CHARS, default_title
from services.core.manifest import StagedFile, StagedVideo, StagingManifest, manifest_key, staging_prefix
from services.core.messages import new_message
from services.core.payloads import JobQueued, QueuedLecture
from services.core.storage import delete_prefix

log = logging.getLogger(__name__)

PRODUCER = "api"
# A catalogue code: letters and digits of any script, spaces and . _ - / ( ) +, at most 200 characters.
CURRICULUM_FORMAT = re.compile(r"^[\w][\w .\-/()+]{0,199}$")
TEXT_FIELDS = frozenset({"name", "curriculum", "titles", "video_upload_ids", "thumbnail_upload_ids"})
FILE_FIELDS = frozenset({"videos", "thumbnails"})


@dataclass(frozen=True, slots=True)
class Accepted:
    """A published job (or the one an earlier request with the same Idempotency-Key published)."""

    job_id: UUID
    replayed: bool


def _clean_text(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip()


def check_course_name(values: list[str] | None) -> str:
    """The course name, or a 422 saying what is wrong with it."""
    if not values:
        raise ProblemError(422, "missing-field", "the form field 'name' (the course name) is required")
    name = _clean_text(values[0])
    if not name:
        raise ProblemError(422, "missing-field", "the course name is empty")
    if len(name) > 200 or any(unicodedata.category(c) == "Cc" for c in name):
        raise ProblemError(
            422, "invalid-course-name", "the course name must be 1–200 characters with no control characters"
        )
    return name


def check_curriculum(values: list[str] | None) -> str:
    """The curriculum code, or a 422 naming the expected format."""
    if not values:
        raise ProblemError(422, "missing-field", "the form field 'curriculum' is required")
    curriculum = _clean_text(values[0])
    if not CURRICULUM_FORMAT.fullmatch(curriculum):
        raise ProblemError(
            422,
            "unknown-curriculum-format",
            "the curriculum must be a catalogue code: letters or digits (any script),"
            " spaces and . _ - / ( ) +, starting with a letter or digit, at most 200 characters"
            " (e.g. 'CS-101' or '데이터과학 2026')",
        )
    return curriculum


def check_titles(values: list[str] | None, videos: int) -> list[str] | None:
    """The lecture titles — the form field 'titles' repeated, one per video in upload order — or None
    when the form has none (each lecture is then titled after its file); else a 422 naming the field."""
    if values is None:
        return None
    if len(values) != videos:
        raise ProblemError(
            422,
            "titles-mismatch",
            f"the form has {len(values)} 'titles' for {videos} video(s): send one 'titles' field per"
            " video, in the order of the videos, or none",
            title="Titles do not match the videos",
            field="titles",
        )
    titles = []
    for position, value in enumerate(values, start=1):
        what = f"form field 'titles' (title {position})"
        title = refuse_control_characters(_clean_text(value), what)
        if not 1 <= len(title) <= MAX_TITLE_CHARS:
            raise ProblemError(
                422,
                "invalid-title",
                f"{what} must be 1–{MAX_TITLE_CHARS} characters, not {len(title)}",
                title="Invalid lecture title",
                field="titles",
            )
        titles.append(title)
    return titles


class CourseSubmission:
    """One POST /v1/courses: owns the staged objects until the job is published or everything is undone."""

    def __init__(self, services: Services, user: User, job_id: UUID | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.user = user
        # The Idempotency-Key, if any, was reserved for this job id before the body was read.
        self.job_id = job_id or uuid4()
        self.prefix = staging_prefix(self.job_id)
        self.form = ParsedForm()
        self.videos = 0
        self.thumbnails = 0
        # Set when a Kafka commit's outcome is unknown: the job may exist, so its files must stay.
        self.keep_staging = False
        self.claimed = False
        self.video_entries: list[dict[str, Any]] = []
        self.thumbnail_entries: list[dict[str, Any]] = []
        self.titles: list[str] | None = None

    # --- streaming ---------------------------------------------------------------------------

    def _open_file(self, field: str, filename: str, _declared: str | None) -> StagedObject:
        if field not in FILE_FIELDS:
            raise ProblemError(
                422,
                "unknown-field",
                f"unexpected file field {field!r}; send files as 'videos' or 'thumbnails'",
            )
        if field == "videos":
            index = self.videos
            self.videos += 1
            if self.videos > self.settings.max_videos:
                raise ProblemError(
                    422, "too-many-files", f"a course has at most {self.settings.max_videos} videos"
                )
            folder = "videos"
        else:
            index = self.thumbnails
            self.thumbnails += 1
            if self.thumbnails > self.settings.max_videos:
                raise ProblemError(422, "too-many-files", "more thumbnails than a course may have videos")
            folder = "thumbnails"
        # Hostile names never reach a key: the key is our index plus a sanitised ASCII name.
        key = f"{self.prefix}{folder}/{index:03d}-{safe_key_name(filename, folder[:-1])}"
        return StagedObject(
            s3=self.services.s3,
            bucket=self.settings.s3_bucket,
            key=key,
            form_field=field,
            filename=filename,
            part_bytes=self.settings.upload_part_bytes,
            max_bytes=self.settings.max_upload_bytes,
            content_type="video/mp4" if field == "videos" else "image/jpeg",
        )

    async def receive(self, content_type: str | None, body: AsyncIterator[bytes]) -> None:
        """Stream the form into S3, checking each file's first bytes as soon as they arrive."""
        boundary = boundary_of(content_type)
        await read_form(boundary, self._checked(body), self._open_file, self.form)

    async def _checked(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        # A file that is not a video is refused after its first bytes, not after gigabytes.
        async for chunk in body:
            yield chunk
            for staged in self.form.files:
                if not staged.head or staged.sniffed:
                    continue
                if len(staged.head) >= 16 or staged.done:
                    self._sniff(staged)

    def _sniff(self, staged: StagedObject) -> None:
        video = staged.form_field == "videos"
        staged.content_type = sniff_media(bytes(staged.head), staged.filename, video=video)
        staged.sniffed = True

    # --- checks after the body -----------------------------------------------------------------

    async def validate(self, db: AsyncConn) -> tuple[str, str]:
        """Fields present and well formed, files non-empty and really media; returns (name, curriculum)."""
        unknown = sorted(set(self.form.fields) - TEXT_FIELDS)
        if unknown:
            raise ProblemError(422, "unknown-field", f"unexpected form field(s): {', '.join(unknown)}")
        name = check_course_name(self.form.fields.get("name"))
        curriculum = check_curriculum(self.form.fields.get("curriculum"))
        videos = [f for f in self.form.files if f.form_field == "videos"]
        thumbnails = [f for f in self.form.files if f.form_field == "thumbnails"]
        video_ids = _upload_ids(self.form.fields.get("video_upload_ids"))
        thumbnail_ids = _upload_ids(self.form.fields.get("thumbnail_upload_ids"))
        if (videos and video_ids) or (thumbnails and thumbnail_ids):
            raise ProblemError(
                422, "mixed-sources", "send either files or upload ids for videos (and thumbnails), not both"
            )
        if len(video_ids) > self.settings.max_videos:
            raise ProblemError(
                422, "too-many-files", f"a course has at most {self.settings.max_videos} videos"
            )
        if not videos and not video_ids:
            raise ProblemError(
                422, "missing-field", "a course needs at least one file in 'videos' (or 'video_upload_ids')"
            )
        self.titles = check_titles(self.form.fields.get("titles"), len(videos) + len(video_ids))
        if len(thumbnails) + len(thumbnail_ids) > len(videos) + len(video_ids):
            raise ProblemError(
                422, "too-many-files", "more thumbnails than videos: thumbnail N belongs to video N"
            )
        for staged in self.form.files:
            if staged.size == 0:
                raise ProblemError(
                    422,
                    "empty-file",
                    f"{display_name(staged.filename)!r} is empty (0 bytes)",
                    filename=display_name(staged.filename),
                )
            if not staged.sniffed:
                self._sniff(staged)
            if staged.form_field == "thumbnails":
                check_image_size(bytes(staged.head), staged.filename, self.settings.max_image_pixels)
        await asyncio.gather(*(self._probe(v) for v in videos))
        self.video_entries = [_entry(v) for v in videos]
        self.thumbnail_entries = [_entry(t) for t in thumbnails]
        if video_ids:
            self.claimed = True
            self.video_entries = await claim_uploads(
                self.services, db, self.user, video_ids, "video", self.job_id, f"{self.prefix}videos/"
            )
        if thumbnail_ids:
            self.claimed = True
            self.thumbnail_entries = await claim_uploads(
                self.services,
                db,
                self.user,
                thumbnail_ids,
                "thumbnail",
                self.job_id,
                f"{self.prefix}thumbnails/",
            )
        return name, curriculum

    async def _probe(self, staged: StagedObject) -> None:
        await check_has_video(
            self.services.s3,
            staged.bucket,
            staged.key,
            staged.filename,
            self.settings.api_probe_window_bytes,
            self.settings.probe_timeout_s,
        )

    # --- publishing ------------------------------------------------------------------------------

    def manifest(self, name: str, curriculum: str) -> StagingManifest:
        """The manifest of what was staged, with the uploaders' names intact."""
        thumbnails = self.thumbnail_entries
        return StagingManifest(
            job_id=self.job_id,
            owner=self.user.name,
            course_name=name,
            curriculum=curriculum,
            videos=[
                StagedVideo(
                    index=i,
                    **v,
                    thumbnail=StagedFile(**thumbnails[i]) if i < len(thumbnails) else None,
                )
                for i, v in enumerate(self.video_entries)
            ],
        )

    def lectures(self) -> tuple[QueuedLecture, ...]:
        """Each video's title (given, or its file's name without the extension) and original name."""
        titles = self.titles or [default_title(v["filename"]) for v in self.video_entries]
        return tuple(
            QueuedLecture(index=i, title=title, filename=v["filename"])
            for i, (title, v) in enumerate(zip(titles, self.video_entries, strict=True))
        )

    async def publish(self, db: AsyncConn, name: str, curriculum: str) -> Accepted:
        """Write the manifest, record the submission, append the two messages atomically."""
        manifest = self.manifest(name, curriculum)
        body = manifest.to_json()
        key = manifest_key(self.job_id)
        await to_thread.run_sync(
            lambda: self.services.s3.put_object(
                Bucket=self.settings.s3_bucket, Key=key, Body=body, ContentType="application/json"
            )
        )
        queued_at = datetime.now(UTC)
        # Idempotency-Keys live in api_idempotency_keys (reserved before the body was read).
        await db.execute(
            "INSERT INTO api_submissions (job_id, owner, course_name, curriculum, video_count, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (self.job_id, self.user.name, name, curriculum, len(manifest.videos), queued_at),
        )
        data = JobQueued(
            owner=self.user.name,
            course_name=name,
            curriculum=curriculum,
            staging_prefix=self.prefix,
            manifest_key=key,
            video_count=len(manifest.videos),
            course_id=self.job_id,  # a new course: it is known by the id of the job that publishes it
            lectures=self.lectures(),
        )
        queued = new_message(data, job_id=self.job_id, attempt=1, producer=PRODUCER, occurred_at=queued_at)
        command = new_message(data.publish_command(), job_id=self.job_id, attempt=1, producer=PRODUCER)
        try:
            await to_thread.run_sync(
                self.services.publisher.publish,
                [(self.settings.events_topic, queued), (self.settings.commands_topic, command)],
            )
        except KafkaUnavailableError as exc:
            if not exc.maybe_committed:
                await db.execute("DELETE FROM api_submissions WHERE job_id = %s", (self.job_id,))
                await self.discard()
            else:
                self.keep_staging = True
                log.error(
                    "a commit timed out and could not be aborted; staging kept",
                    extra={"job_id": str(self.job_id)},
                )
            raise kafka_unavailable("nothing was accepted") from None
        # Committed on the log: from here on the staged files belong to the job, whatever happens next.
        self.keep_staging = True
        await db.execute("UPDATE api_submissions SET published_at = now() WHERE job_id = %s", (self.job_id,))
        log.info("course accepted", extra={"job_id": str(self.job_id), "owner": self.user.name})
        return Accepted(self.job_id, replayed=False)

    async def discard(self) -> None:
        """Undo the staging: abort unfinished multipart uploads, delete whatever landed under the prefix."""
        if self.keep_staging:
            return
        if self.claimed:
            # Direct uploads claimed for this job become usable again.
            async with self.services.pool.connection() as db:
                await release_claims(db, self.job_id)
        for staged in self.form.files:
            try:
                await staged.abort()
            except Exception:
                log.exception("could not abort a multipart upload", extra={"key": staged.key})
        await to_thread.run_sync(delete_prefix, self.services.s3, self.settings.s3_bucket, self.prefix)


def _entry(f: StagedObject) -> dict[str, Any]:
    return {
        "key": f.key,
        "filename": display_name(f.filename),
        "size_bytes": f.size,
        "content_type": f.content_type,
    }


def _upload_ids(values: list[str] | None) -> list[UUID]:
    ids: list[UUID] = []
    for value in values or []:
        for part in value.split(","):
            if part.strip():
                try:
                    ids.append(UUID(part.strip()))
                except ValueError:
                    raise ProblemError(
                        422, "invalid-upload-id", f"{part.strip()[:60]!r} is not an upload id"
                    ) from None
    return ids
