"""Upload adapter: outputs to S3, concurrently, each file with its Content-Type and Cache-Control.

`upload_files` puts a set of finished files; `LiveUpload` uploads an HLS folder while ffmpeg is
still writing it, segment by segment, and its playlists last.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

from services.core.object_headers import cache_control, content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class Uploaded:
    """What an upload wrote; `seconds` from its first PUT to its last, `tail_s` of it after the
    encode ended (what a live upload still made the job wait; all of it for `upload_files`)."""

    files: int
    bytes: int
    seconds: float
    tail_s: float = 0.0


def put_file(client: S3Client, bucket: str, key: str, path: Path) -> int:
    """Put `path` as `key` with its Content-Type and Cache-Control; returns its size."""
    with path.open("rb") as body:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type(path),
            CacheControl=cache_control(path),
        )
    return path.stat().st_size


def upload_files(client: S3Client, bucket: str, files: dict[str, Path], concurrency: int) -> Uploaded:
    """Put every `key -> path` of `files`; raises the first error (the caller classifies it)."""
    started = time.monotonic()

    def put(item: tuple[str, Path]) -> int:
        return put_file(client, bucket, *item)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload") as pool:
        sizes = list(pool.map(put, files.items()))
    seconds = time.monotonic() - started
    return Uploaded(len(sizes), sum(sizes), seconds, seconds)


# What ffmpeg's hls muxer writes aside before it renames it to its final name (hls_flags temp_file).
PARTIAL_SUFFIX: Final = ".tmp"
PLAYLIST_SUFFIX: Final = ".m3u8"


class LiveUpload:
    """An HLS folder uploaded while ffmpeg writes it, under `prefix`/<path relative to the folder>.

    ffmpeg writes each file aside and renames it once complete (ladder.py), so a segment under its
    final name is finished: a watcher thread looks every `interval_s` and hands each new one to a
    pool of `concurrency` PUTs while the encode goes on. `finish()`, once ffmpeg has exited, puts
    the segments left, waits for every segment, then puts the renditions' playlists, and the
    folder's own playlist (the master) last: whoever can read a playlist finds every segment it
    names stored (G3: nothing names an output before it is written).

    A PUT that fails is kept (`error()`) so the caller can stop ffmpeg rather than encode for
    nothing; `finish()` raises it. Leaving the block without `finish()` (ffmpeg failed, the attempt
    was stopped) stops the watcher and drops the PUTs not started at once, without waiting: the few
    in flight end on their own, under the attempt's own prefix, which no event names.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        folder: Path,
        prefix: str,
        concurrency: int,
        interval_s: float = 0.25,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._folder = folder
        self._prefix = prefix.rstrip("/")
        self._interval_s = interval_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        self._submitted: set[str] = set()
        self._segments: list[Future[int]] = []
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="upload-watcher", daemon=True)
        self._first_put: float | None = None  # when the first segment was handed to the pool

    def __enter__(self) -> LiveUpload:
        self._watcher.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_watching()
        self._pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)

    def error(self) -> BaseException | None:
        """The first error of a PUT (or of looking at the folder) so far, or None."""
        return self._error

    def finish(self) -> Uploaded:
        """After ffmpeg has exited 0: the segments left, then the playlists, the master last;
        raises the first error of any PUT."""
        self._stop_watching()
        tail_started = time.monotonic()
        self._submit_finished_segments()
        sizes = [future.result() for future in self._segments]
        renditions: list[str] = []
        top: list[str] = []
        for relative in self._files():
            if relative.endswith(PLAYLIST_SUFFIX):
                (renditions if "/" in relative else top).append(relative)
        sizes += list(self._pool.map(self._put, renditions))
        sizes += [self._put(relative) for relative in top]
        ended = time.monotonic()
        return Uploaded(
            len(sizes), sum(sizes), ended - (self._first_put or tail_started), ended - tail_started
        )

    def _stop_watching(self) -> None:
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._submit_finished_segments()
            except OSError as exc:
                self._note(exc)

    def _submit_finished_segments(self) -> None:
        for relative in self._files():
            if relative.endswith(PLAYLIST_SUFFIX) or relative in self._submitted:
                continue
            self._submitted.add(relative)
            if self._first_put is None:
                self._first_put = time.monotonic()
            future = self._pool.submit(self._put, relative)
            future.add_done_callback(self._record)
            self._segments.append(future)

    def _files(self) -> list[str]:
        """Every finished file under the folder, as a relative POSIX path, in name order."""
        found: list[str] = []
        pending = [""]
        while pending:
            relative_dir = pending.pop()
            with os.scandir(self._folder / relative_dir) as entries:
                for entry in entries:
                    relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(relative)
                    elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(PARTIAL_SUFFIX):
                        found.append(relative)
        return sorted(found)

    def _put(self, relative: str) -> int:
        return put_file(self._client, self._bucket, f"{self._prefix}/{relative}", self._folder / relative)

    def _record(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._note(future.exception())

    def _note(self, exc: BaseException | None) -> None:
        if self._error is None and exc is not None:
            self._error = exc


def tree(local_dir: Path, prefix: str) -> dict[str, Path]:
    """`prefix/<relative path>` -> path for every file under `local_dir`.

    Upload order does not matter: nothing is reachable until JobCompleted names the master playlist.
    """
    return {
        f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}": path
        for path in sorted(local_dir.rglob("*"))
        if path.is_file()
    }
