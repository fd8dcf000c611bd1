"""Upload adapter: outputs to S3, concurrently, each file with its Content-Type and Cache-Control."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.core.object_headers import cache_control, content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


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
