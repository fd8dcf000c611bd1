"""Staging uploads in S3: streamed multipart uploads, filename sanitising, and "is this a video" checks.

Memory bound: a file is never held whole. Bytes arrive from the socket in chunks, gather in one buffer
per file until it reaches `upload_part_bytes`, and go to S3 as one part of a multipart upload, so the
api holds about one part (8 MiB by default) per request, whatever the file's size.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from services.api.problems import ProblemError, too_large
from services.core import mediaprobe

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MAX_KEY_NAME = 80
MAX_DISPLAY_NAME = 255
PROBE_RETRY_AFTER_S = 30
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_key_name(filename: str, fallback: str = "file") -> str:
    """A file name safe in an S3 key: ASCII letters, digits, '.', '_', '-' only, no path, ≤ 80 chars."""
    base = re.split(r"[/\\]", filename)[-1]
    base = unicodedata.normalize("NFKD", base)
    base = _UNSAFE.sub("_", base).strip("._-")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:10]
    stem = stem[: MAX_KEY_NAME - len(ext) - 1].strip("._-") or fallback
    return f"{stem}.{ext}" if ext else stem


def display_name(filename: str) -> str:
    """The uploader's file name as shown to people: intact in any script, minus control characters."""
    cleaned = _CONTROL.sub("", unicodedata.normalize("NFC", filename)).strip()
    if len(cleaned) > MAX_DISPLAY_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            cleaned = stem[: MAX_DISPLAY_NAME - len(ext) - 2] + "…." + ext
        else:
            cleaned = cleaned[: MAX_DISPLAY_NAME - 1] + "…"
    return cleaned or "unnamed"


# --- magic bytes ---------------------------------------------------------------------------------

MAGIC_PREFIX_BYTES = 192


def sniff_video(head: bytes) -> str | None:
    """The content type the first bytes announce, or None if they are not a known video container."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:3] == b"FLV":
        return "video/x-flv"
    if head[:4] == b"\x00\x00\x01\xba":
        return "video/mpeg"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video/mp2t"
    return None


def sniff_image(head: bytes) -> str | None:
    """The content type the first bytes announce, or None if they are not a JPEG, PNG or WebP image."""
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image_size(head: bytes, filename: str, max_pixels: int) -> None:
    """422 when the image header announces more than `max_pixels` (read, never decoded)."""
    size = mediaprobe.image_dimensions(head)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ProblemError(
            422,
            "image-too-large",
            f"{display_name(filename)!r} is {size[0]}x{size[1]} pixels; the largest image accepted has "
            f"{max_pixels} pixels",
            filename=display_name(filename),
            limit_pixels=max_pixels,
        )


def sniff_media(head: bytes, filename: str, *, video: bool) -> str:
    """The content type `head` announces for a video (or an image); a problem document when it is not one.

    The one check of a file's first bytes, for files in a course form and for direct uploads alike:
    415 for a video that is not a known container, 422 for an image that is not a JPEG, PNG or WebP.
    """
    kind = sniff_video(head) if video else sniff_image(head)
    if kind is None:
        what = "a video (MP4, MOV, WebM, MKV, AVI, MPEG-TS)" if video else "a JPEG, PNG or WebP image"
        raise ProblemError(
            415 if video else 422,
            "not-a-video" if video else "not-an-image",
            f"{display_name(filename)!r} is not {what}: its first bytes say otherwise",
            filename=display_name(filename),
        )
    return kind


async def check_has_video(
    s3: S3Client, bucket: str, key: str, filename: str, window_bytes: int, timeout_s: float
) -> None:
    """415 unless ffprobe, reading the staged object's local copy, finds a video stream in it."""
    streams = await probe_staged(s3, bucket, key, window_bytes, timeout_s)
    if not streams or not any(s.get("codec_type") == "video" for s in streams):
        raise ProblemError(
            415,
            "not-a-video",
            f"{display_name(filename)!r} looks like a video container but ffprobe finds no video stream"
            " in it",
            filename=display_name(filename),
        )


async def probe_staged(
    s3: S3Client, bucket: str, key: str, window_bytes: int, timeout_s: float
) -> list[dict[str, Any]] | None:
    """The stream list ffprobe reads from a staged object, or None if it cannot read one.

    ffprobe never sees the network: it reads a local sparse copy holding the object's first and last
    `window_bytes` at their own offsets (an MP4's index often sits at the end), on the leash of
    `services.core.mediaprobe`. A probe that hangs is killed at `timeout_s` and answered with 503.
    """
    with tempfile.TemporaryDirectory(prefix="coursecast-probe-") as folder:
        copy = Path(folder) / f"upload{PurePosixPath(key).suffix}"
        await to_thread.run_sync(lambda: _sparse_copy(s3, bucket, key, copy, window_bytes))
        return await probe_local_copy(copy, timeout_s)


async def probe_local_copy(path: Path, timeout_s: float) -> list[dict[str, Any]] | None:
    """The stream list of a local file on the leash; None if refused, 503 problem if it timed out."""
    try:
        info = await to_thread.run_sync(lambda: mediaprobe.probe(path, mediaprobe.VIDEO_DEMUXERS, timeout_s))
    except mediaprobe.MediaRefusedError:
        return None
    except (mediaprobe.ProbeTimeoutError, mediaprobe.ProbeKilledError):
        raise ProblemError(
            503,
            "probe-timeout",
            "checking the uploaded video took too long; please try again in a moment",
            headers={"Retry-After": str(PROBE_RETRY_AFTER_S)},
        ) from None
    streams = info.get("streams", [])
    return streams if isinstance(streams, list) else None


def _sparse_copy(s3: S3Client, bucket: str, key: str, path: Path, window_bytes: int) -> None:
    size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    ranges = [(0, size - 1)] if size <= 2 * window_bytes else [
        (0, window_bytes - 1),
        (size - window_bytes, size - 1),
    ]  # fmt: skip
    with path.open("wb") as file:
        for first, last in ranges:
            if last < first:
                continue
            body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"]
            file.seek(first)
            for chunk in body.iter_chunks(1024 * 1024):
                file.write(chunk)
        file.truncate(size)  # the gap between the windows stays a hole: no disk, reads as zeros


# --- S3 multipart writer -------------------------------------------------------------------------


@dataclass
class StagedObject:
    """One file being streamed into S3 as a multipart upload."""

    s3: S3Client
    bucket: str
    key: str
    form_field: str
    filename: str
    part_bytes: int
    max_bytes: int
    content_type: str = "application/octet-stream"
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    buffer: bytearray = field(default_factory=bytearray)
    upload_id: str | None = None
    parts: list[CompletedPartTypeDef] = field(default_factory=list)
    done: bool = False
    sniffed: bool = False

    def feed(self, data: bytes) -> None:
        """Take bytes from the parser (sync, cheap): they wait in the buffer until `drain`."""
        self.size += len(data)
        if self.size > self.max_bytes:
            raise too_large(repr(self.filename), self.max_bytes)
        if len(self.head) < MAGIC_PREFIX_BYTES:
            self.head.extend(data[: MAGIC_PREFIX_BYTES - len(self.head)])
        self.buffer.extend(data)

    @property
    def full(self) -> bool:
        """True when a whole part is waiting."""
        return len(self.buffer) >= self.part_bytes

    async def drain(self, final: bool = False) -> None:
        """Send whole parts (and, when `final`, the last short one) to S3."""
        while len(self.buffer) >= self.part_bytes or (final and self.buffer):
            chunk = bytes(self.buffer[: self.part_bytes])
            del self.buffer[: self.part_bytes]
            await self._upload_part(chunk)

    async def _upload_part(self, chunk: bytes) -> None:
        if self.upload_id is None:
            created = await to_thread.run_sync(
                lambda: self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type
                )
            )
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        upload_id = self.upload_id
        answer = await to_thread.run_sync(
            lambda: self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        """Send what is left and finish the multipart upload."""
        if self.upload_id is None:
            # The whole file fit in one part: a single PUT instead of create + part + complete.
            if self.buffer:
                body = bytes(self.buffer)
                self.buffer.clear()
                await to_thread.run_sync(
                    lambda: self.s3.put_object(
                        Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type
                    )
                )
                self.done = True
            return  # an empty file creates nothing
        await self.drain(final=True)
        upload_id = self.upload_id
        await to_thread.run_sync(
            lambda: self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id, MultipartUpload={"Parts": self.parts}
            )
        )
        self.done = True

    async def abort(self) -> None:
        """Give up on this file: abort the multipart upload so S3 frees its parts."""
        self.buffer.clear()
        if self.upload_id is not None and not self.done:
            upload_id = self.upload_id
            await to_thread.run_sync(
                lambda: self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            )
