"""Upload adapter: outputs to S3, concurrently, each file with its Content-Type and Cache-Control."""

from __future__ import annotations

import mimetypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONTENT_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",
    ".webp": "image/webp",
}
# Every output lives under a prefix unique to its job and attempt and is never rewritten, so a CDN
# may keep it forever; playlists get a shorter life only to let an operator fix one by hand.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
PLAYLIST: Final = "public, max-age=300"


def content_type(path: Path) -> str:
    """The Content-Type a player expects for `path` (pure)."""
    return (
        CONTENT_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def cache_control(path: Path) -> str:
    """The Cache-Control of `path` (pure)."""
    return PLAYLIST if path.suffix.lower() == ".m3u8" else IMMUTABLE


@dataclass(frozen=True, slots=True)
class Uploaded:
    """What an upload wrote."""

    files: int
    bytes: int
    seconds: float


def upload_files(client: S3Client, bucket: str, files: dict[str, Path], concurrency: int) -> Uploaded:
    """Put every `key -> path` of `files`; raises the first error (the caller classifies it)."""
    started = time.monotonic()

    def put(item: tuple[str, Path]) -> int:
        key, path = item
        with path.open("rb") as body:
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type(path),
                CacheControl=cache_control(path),
            )
        return path.stat().st_size

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload") as pool:
        sizes = list(pool.map(put, files.items()))
    return Uploaded(len(sizes), sum(sizes), time.monotonic() - started)


def tree(local_dir: Path, prefix: str) -> dict[str, Path]:
    """`prefix/<relative path>` -> path for every file under `local_dir`.

    Upload order does not matter: nothing is reachable until JobCompleted names the master playlist.
    """
    return {
        f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}": path
        for path in sorted(local_dir.rglob("*"))
        if path.is_file()
    }
