"""Direct uploads: the client PUTs bytes straight to S3 through presigned multipart-upload URLs.

Lifecycle: pending (parts being PUT) → completed (checked: magic bytes, ffprobe) → used (copied into
a job's staging/ by POST /v1/courses). A pending or completed upload past `expires_at` is expired by
the sweeper: its multipart upload is aborted (S3 frees the parts) or its object deleted.

This module owns the `api_uploads` table: the routes and the course submission change it only
through these functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

from anyio import to_thread
from botocore.exceptions import ClientError
from psycopg.rows import dict_row

from services.api.auth import User
from services.api.db import AsyncConn
from services.api.problems import ProblemError, too_large
from services.api.runtime import Services
from services.api.staging import check_has_video, check_image_size, display_name, safe_key_name, sniff_media

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 60.0
MAX_PARTS = 10_000
UPLOAD_PREFIX = "uploads/"

UploadKind = Literal["video", "thumbnail"]
UploadState = Literal["pending", "completed", "used", "expired"]


def _part_size(settings_part: int, size: int) -> int:
    # S3 allows at most 10,000 parts: grow the part size for very large files.
    return max(settings_part, math.ceil(size / MAX_PARTS))


@dataclass(frozen=True, slots=True)
class Upload:
    """A direct upload as its owner may see it; `parts` only when it was just opened."""

    upload_id: UUID
    kind: UploadKind
    filename: str
    size_bytes: int
    state: UploadState
    expires_at: datetime
    part_bytes: int
    parts: tuple[PresignedPart, ...] = ()

    @classmethod
    def of(cls, row: dict[str, Any], parts: Sequence[PresignedPart] = ()) -> Upload:
        """The upload an `api_uploads` row describes."""
        return cls(
            upload_id=row["upload_id"],
            kind=row["kind"],
            filename=row["filename"],
            size_bytes=row["size_bytes"],
            state=row["state"],
            expires_at=row["expires_at"],
            part_bytes=row["part_bytes"],
            parts=tuple(parts),
        )


@dataclass(frozen=True, slots=True)
class PresignedPart:
    """Where to PUT one part of the file, and how many bytes it holds."""

    part_number: int
    size_bytes: int
    url: str


async def _load(db: AsyncConn, user: User, upload_id: UUID) -> dict[str, object]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM api_uploads WHERE upload_id = %s", (upload_id,))
        row = await cur.fetchone()
    if row is None or not user.may_see(str(row["owner"])):
        raise ProblemError(404, "upload-not-found", f"no upload {upload_id}", title="Upload not found")
    return row


async def open_upload(
    services: Services,
    db: AsyncConn,
    user: User,
    *,
    filename: str,
    size_bytes: int,
    content_type: str,
    kind: UploadKind,
) -> Upload:
    """A new pending upload of `size_bytes`, with a presigned URL for each part; 413 past the limit."""
    settings = services.settings
    if size_bytes > settings.max_upload_bytes:
        raise too_large("the file", settings.max_upload_bytes)
    upload_id = uuid4()
    key = f"{UPLOAD_PREFIX}{upload_id}/{safe_key_name(filename, kind)}"
    part_bytes = _part_size(settings.upload_part_bytes, size_bytes)
    count = math.ceil(size_bytes / part_bytes)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.upload_expiry_s)
    s3 = services.s3

    # The multipart upload is opened through the services' endpoint; its part URLs are signed for the
    # endpoint the client reaches (settings.s3_public_url), which may be another name of the same server.
    def presign() -> tuple[str, list[PresignedPart]]:
        created = s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)
        s3_upload_id = created["UploadId"]
        parts = [
            PresignedPart(
                part_number=n,
                size_bytes=min(part_bytes, size_bytes - (n - 1) * part_bytes),
                url=services.presigner.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": settings.s3_bucket,
                        "Key": key,
                        "UploadId": s3_upload_id,
                        "PartNumber": n,
                    },
                    ExpiresIn=settings.upload_expiry_s,
                ),
            )
            for n in range(1, count + 1)
        ]
        return s3_upload_id, parts

    s3_upload_id, parts = await to_thread.run_sync(presign)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO api_uploads (upload_id, owner, kind, filename, content_type, size_bytes, s3_key,"
            " s3_upload_id, part_bytes, state, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s) RETURNING *",
            (upload_id, user.name, kind, display_name(filename), content_type, size_bytes,
             key, s3_upload_id, part_bytes, expires_at),
        )  # fmt: skip
        row = await cur.fetchone()
    assert row is not None
    return Upload.of(row, parts)


async def find_upload(db: AsyncConn, user: User, upload_id: UUID) -> Upload:
    """The upload if the user may see it; 404 otherwise."""
    return Upload.of(await _load(db, user, upload_id))


async def complete_upload(
    services: Services, db: AsyncConn, user: User, upload_id: UUID, etags: Sequence[tuple[int, str]]
) -> Upload:
    """Finish the multipart upload with the (part number, ETag) of each part, then check the file.

    A file that is not what it claims to be (size, magic bytes, ffprobe, pixels) is discarded: its
    upload is expired and the problem raised.
    """
    row = await _load(db, user, upload_id)
    if row["state"] != "pending":
        raise ProblemError(409, "upload-not-pending", f"the upload is {row['state']}, not pending")
    expires_at = row["expires_at"]
    if isinstance(expires_at, datetime) and expires_at <= datetime.now(UTC):
        await _expire(services, db, row)
        raise ProblemError(409, "upload-expired", "the upload expired; its parts were discarded")
    settings = services.settings
    bucket, key, s3 = settings.s3_bucket, str(row["s3_key"]), services.s3
    parts = sorted(etags, key=lambda part: part[0])

    def finish() -> tuple[int, bytes]:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=str(row["s3_upload_id"]),
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]},
        )
        head = s3.head_object(Bucket=bucket, Key=key)
        first = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-191")["Body"].read()
        return int(head["ContentLength"]), first

    try:
        size, first = await to_thread.run_sync(finish)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ProblemError(
            422, "upload-incomplete", f"S3 refused to complete the upload ({code}): check the parts and ETags"
        ) from None
    problem = None
    if size != row["size_bytes"]:
        problem = ProblemError(
            422, "size-mismatch", f"the upload has {size} bytes, {row['size_bytes']} were announced"
        )
    else:
        # The same checks as a file sent in the course form: its first bytes, ffprobe for a video,
        # the header's pixel count for an image.
        filename, video = str(row["filename"]), row["kind"] == "video"
        try:
            content_type = sniff_media(first, filename, video=video)
            if video:
                await check_has_video(
                    s3, bucket, key, filename, settings.api_probe_window_bytes, settings.probe_timeout_s
                )
            else:
                check_image_size(first, filename, settings.max_image_pixels)
        except ProblemError as refused:
            problem = refused
    if problem is not None:
        await _expire(services, db, row)
        raise problem
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE api_uploads SET state = 'completed', content_type = %s WHERE upload_id = %s RETURNING *",
            (content_type, upload_id),
        )
        updated = await cur.fetchone()
    assert updated is not None
    return Upload.of(updated)


async def _expire(services: Services, db: AsyncConn, row: dict[str, object]) -> None:
    """Abort the multipart upload (or delete the object) and mark the upload expired."""
    bucket, key, s3 = services.settings.s3_bucket, str(row["s3_key"]), services.s3

    def discard() -> None:
        with contextlib.suppress(ClientError):
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=str(row["s3_upload_id"]))
        s3.delete_object(Bucket=bucket, Key=key)

    await to_thread.run_sync(discard)
    await db.execute("UPDATE api_uploads SET state = 'expired' WHERE upload_id = %s", (row["upload_id"],))


async def sweep_expired(services: Services) -> int:
    """Expire every pending or completed (unused) upload past its time; returns how many."""
    async with services.pool.connection() as db:
        async with db.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT * FROM api_uploads WHERE state IN ('pending', 'completed') AND expires_at <= now()"
                " ORDER BY expires_at LIMIT 500"
            )
            rows = await cur.fetchall()
        for row in rows:
            await _expire(services, db, row)
    return len(rows)


def start_sweeper(services: Services) -> asyncio.Task[None]:
    """A background task expiring old uploads every minute (several api processes may all run it)."""

    async def loop() -> None:
        while True:
            try:
                await sweep_expired(services)
            except Exception:
                log.exception("upload sweep failed; trying again next round")
            await asyncio.sleep(SWEEP_INTERVAL_S)

    return asyncio.create_task(loop(), name="upload-sweeper")


def _copy(s3: S3Client, bucket: str, source: str, target: str) -> None:
    # A managed copy: server-side, in parts for large objects; no byte passes through the api.
    s3.copy({"Bucket": bucket, "Key": source}, bucket, target)


async def claim_uploads(
    services: Services,
    db: AsyncConn,
    user: User,
    upload_ids: list[UUID],
    kind: str,
    job_id: UUID,
    folder_prefix: str,
) -> list[dict[str, object]]:
    """Copy completed uploads into the job's staging folder (server side) and mark them used.

    Returns, per upload in order, the manifest entry fields (key, filename, size_bytes, content_type).
    """
    entries: list[dict[str, object]] = []
    for index, upload_id in enumerate(upload_ids):
        async with db.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "UPDATE api_uploads SET state = 'used', used_by_job = %s WHERE upload_id = %s AND owner = %s"
                " AND kind = %s AND state = 'completed' AND expires_at > now() RETURNING *",
                (job_id, upload_id, user.name, kind),
            )
            row = await cur.fetchone()
        if row is None:
            raise ProblemError(
                422,
                "upload-not-usable",
                f"upload {upload_id} is not a completed {kind} upload of yours",
            )
        source = str(row["s3_key"])
        target = f"{folder_prefix}{index:03d}-{source.rsplit('/', 1)[-1]}"
        bucket, s3 = services.settings.s3_bucket, services.s3
        await to_thread.run_sync(_copy, s3, bucket, source, target)
        entries.append(
            {
                "key": target,
                "filename": row["filename"],
                "size_bytes": row["size_bytes"],
                "content_type": row["content_type"],
            }
        )
    return entries


async def release_claims(db: AsyncConn, job_id: UUID) -> None:
    """The direct uploads claimed for `job_id`, whose job was never published, become usable again."""
    await db.execute(
        "UPDATE api_uploads SET state = 'completed', used_by_job = NULL WHERE used_by_job = %s", (job_id,)
    )
