"""Re-encoding a published course (`coursecast reencode COURSE_ID`): a new job of the same course, run
over the sources its current job retained (COURSECAST_SOURCE_RETENTION_DAYS), e.g. for a new ladder.

Order of effects, the same as a submission's, so no job is half born:
1. the course must be in the catalogue, and its current job's manifest and videos still retained in
   staging/<job_id>/ (else a clear error: nothing is done);
2. the sources are copied, server-side, into staging/<new_job_id>/, and the new job's manifest written
   there: each job owns its staging folder and its own retention clock, so a sweep of the old job's
   folder never pulls the files from under the new one;
3. JobQueued v2 (`course_id`: the course; the catalogue's titles and file names) and PublishCourse go
   out in one Kafka transaction, keyed by the new job id.
A failure before 3 deletes staging/<new_job_id>/. When the new job completes, the projector switches
every lecture of the course to its objects in one transaction (services/core/catalogue.py); until
then the course plays the old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID, uuid4

import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from services.api.db import migrate_api
from services.api.publisher import KafkaUnavailableError, Publisher
from services.core.manifest import StagedFile, StagingManifest, manifest_key, staging_prefix
from services.core.messages import new_message
from services.core.payloads import JobQueued, QueuedLecture
from services.core.settings import Settings
from services.core.storage import delete_prefix, is_missing_object, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PRODUCER = "reencode"
F = TypeVar("F", bound=StagedFile)


class ReencodeError(Exception):
    """The course cannot be re-encoded; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class CatalogueCourse:
    """What the catalogue says of the course to re-encode."""

    course_id: UUID
    owner: str
    name: str
    curriculum: str
    job_id: UUID  # the job whose retained sources are re-encoded
    lectures: tuple[QueuedLecture, ...]


@dataclass(frozen=True, slots=True)
class Reencode:
    """A new job of the course: what to copy (source key, new key), its manifest and its JobQueued."""

    job_id: UUID
    copies: tuple[tuple[str, str], ...]
    manifest: StagingManifest
    queued: JobQueued


def plan(course: CatalogueCourse, sources: StagingManifest, job_id: UUID) -> Reencode:
    """The new job over the sources of the course's current job (pure)."""
    prefix = staging_prefix(job_id)
    copies: list[tuple[str, str]] = []

    def moved(staged: F) -> F:
        key = prefix + staged.key.removeprefix(staging_prefix(sources.job_id))
        copies.append((staged.key, key))
        return staged.model_copy(update={"key": key})

    videos = [
        moved(video).model_copy(
            update={"thumbnail": moved(video.thumbnail) if video.thumbnail is not None else None}
        )
        for video in sources.videos
    ]
    manifest = StagingManifest(
        job_id=job_id,
        owner=course.owner,
        course_name=course.name,
        curriculum=course.curriculum,
        videos=videos,
    )
    titles = {lecture.index: lecture for lecture in course.lectures}
    lectures = tuple(
        titles.get(video.index)
        or QueuedLecture(index=video.index, title=f"Lecture {video.index + 1}", filename=video.filename)
        for video in sources.videos
    )
    queued = JobQueued(
        owner=course.owner,
        course_name=course.name,
        curriculum=course.curriculum,
        staging_prefix=prefix,
        manifest_key=manifest_key(job_id),
        video_count=len(videos),
        course_id=course.course_id,
        lectures=lectures,
    )
    return Reencode(job_id, tuple(copies), manifest, queued)


def read_course(settings: Settings, course_id: UUID) -> CatalogueCourse:
    """The published course from the catalogue; ReencodeError when there is none."""
    migrate_api(settings.database_url, settings.database_schema)  # as every api command: tables exist
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
        row = conn.execute(
            "SELECT owner, name, curriculum, job_id FROM courses WHERE course_id = %s", (course_id,)
        ).fetchone()
        if row is None:
            raise ReencodeError(f"no published course {course_id} (never completed, or unpublished)")
        lectures = conn.execute(
            "SELECT index, title, filename FROM lectures WHERE course_id = %s ORDER BY index", (course_id,)
        ).fetchall()
    owner, name, curriculum, job_id = row
    return CatalogueCourse(
        course_id,
        owner,
        name,
        curriculum,
        job_id,
        tuple(QueuedLecture(index=i, title=title, filename=filename) for i, title, filename in lectures),
    )


def read_sources(s3: S3Client, bucket: str, job_id: UUID) -> StagingManifest:
    """The manifest of the job's retained sources; ReencodeError when they are gone."""
    try:
        raw = s3.get_object(Bucket=bucket, Key=manifest_key(job_id))["Body"].read()
    except ClientError as exc:
        if is_missing_object(exc):
            raise ReencodeError(
                f"the sources of job {job_id} are no longer retained (COURSECAST_SOURCE_RETENTION_DAYS);"
                " upload the course again"
            ) from None
        raise
    return StagingManifest.from_json(raw)


def reencode(settings: Settings, course_id: UUID) -> UUID:
    """Queue a new job of the course over its retained sources; returns the new job's id."""
    course = read_course(settings, course_id)
    s3 = s3_client(settings)
    bucket = settings.s3_bucket
    job = plan(course, read_sources(s3, bucket, course.job_id), uuid4())
    keep_staging = False
    try:
        for source, target in job.copies:
            _copy(s3, bucket, source, target)
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key(job.job_id),
            Body=job.manifest.to_json(),
            ContentType="application/json",
        )
        queued = new_message(job.queued, job_id=job.job_id, attempt=1, producer=PRODUCER)
        command = new_message(job.queued.publish_command(), job_id=job.job_id, attempt=1, producer=PRODUCER)
        publisher = Publisher(settings)
        try:
            publisher.publish([(settings.events_topic, queued), (settings.commands_topic, command)])
        except KafkaUnavailableError as exc:
            # A commit whose outcome is unknown may have queued the job: its files must stay.
            keep_staging = exc.maybe_committed
            raise ReencodeError(f"{exc}; the course was not re-encoded, try again later") from None
        finally:
            publisher.close()
    except BaseException:
        if not keep_staging:
            delete_prefix(s3, bucket, staging_prefix(job.job_id))
        raise
    return job.job_id


def _copy(s3: S3Client, bucket: str, source: str, target: str) -> None:
    """A server-side copy (multipart past 5 GB); ReencodeError when the source is gone."""
    try:
        s3.copy({"Bucket": bucket, "Key": source}, bucket, target)
    except ClientError as exc:
        if is_missing_object(exc):
            raise ReencodeError(f"the retained source {source} is gone; upload the course again") from None
        raise
