"""`coursecast publish`, the steps: upload each file (resumably), submit the course, follow its job.

1. Each file goes straight to S3 as a direct multipart upload: the api opens it (POST /v1/uploads:
   presigned part URLs), the client PUTs every part, then asks the api to complete and check it.
   Each acknowledged part is recorded in the local state (resume.py) before the next is sent, so a
   re-run after an interruption PUTs only the parts S3 has not acknowledged.
2. The course is submitted from the upload ids (POST /v1/courses, multipart form without files) under
   an Idempotency-Key derived from the uploads and the form: a re-run after a crash between the
   api's answer and the state's cleanup gets the same job back, never a second one.
3. The job is followed over its SSE stream until it ends (reconnecting when the connection drops).
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.client.http import ApiClient, ApiError
from services.client.resume import FileUpload, PartPlan, UploadState, file_key
from services.core import faults

PART_ATTEMPTS = 4
PART_TIMEOUT_S = 300.0
STREAM_RECONNECTS = 5
TERMINAL = frozenset({"completed", "failed", "canceled"})


class UploadError(Exception):
    """S3 refused a part for good (an expired or wrong presigned URL), or kept failing."""


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file whose direct upload is complete, and how much of it an earlier run had sent."""

    path: Path
    key: str
    upload_id: str
    size_bytes: int
    parts: int
    parts_resumed: int

    def to_json(self) -> dict[str, Any]:
        """The file's entry in `publish --json`."""
        return {
            "file": str(self.path),
            "upload_id": self.upload_id,
            "size_bytes": self.size_bytes,
            "parts": self.parts,
            "parts_resumed": self.parts_resumed,
        }


def _read_part(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read(size)
    if len(data) != size:
        raise UploadError(f"{path} changed while it was uploaded (short read at byte {offset})")
    return data


def put_part(url: str, data: bytes) -> str:
    """PUT one part to its presigned URL; its ETag. Transient failures are retried with backoff."""
    for attempt in range(1, PART_ATTEMPTS + 1):
        try:
            response = httpx.put(url, content=data, timeout=PART_TIMEOUT_S)
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success and response.headers.get("ETag"):
                return response.headers["ETag"]
            if response.status_code < 500:
                raise UploadError(f"S3 refused a part ({response.status_code}): {response.text[:300]}")
            failure = f"S3 answered {response.status_code}"
        if attempt < PART_ATTEMPTS:
            time.sleep(2 ** (attempt - 1))
    raise UploadError(f"a part failed {PART_ATTEMPTS} times; last: {failure}")


def _open_upload(api: ApiClient, path: Path, size: int) -> FileUpload:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    opened = api.request(
        "POST",
        "/v1/uploads",
        json={"filename": path.name, "size_bytes": size, "content_type": content_type, "kind": "video"},
    )
    return FileUpload(
        upload_id=str(opened["upload_id"]),
        expires_at=datetime.fromisoformat(opened["expires_at"]),
        part_size_bytes=int(opened["part_size_bytes"]),
        parts=[PartPlan(int(p["part_number"]), str(p["url"]), int(p["size_bytes"])) for p in opened["parts"]],
    )


def _still_usable(api: ApiClient, upload: FileUpload) -> bool:
    """Whether the api still has the upload as the state says (its sweeper may have expired it)."""
    try:
        state = api.request("GET", f"/v1/uploads/{upload.upload_id}")["state"]
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    if state == "completed":
        upload.completed = True
    # `used`: a job took it, and re-submitting the same course under the same key answers that job.
    return state in ("pending", "completed", "used")


def upload_file(
    api: ApiClient,
    state: UploadState,
    path: Path,
    on_start: Callable[[int, int], None],
    on_bytes: Callable[[int], None],
) -> UploadedFile:
    """Upload `path` (or the rest of it); `on_start(total, already_sent)`, then `on_bytes(n)` per part."""
    key, size = file_key(path), path.stat().st_size
    upload = state.resumable(key)
    if upload is not None and not _still_usable(api, upload):
        upload = None
    resumed = len(upload.etags) if upload is not None else 0
    if upload is None:
        upload = _open_upload(api, path, size)
        state.put(key, upload)
    sent = [p for p in upload.parts if upload.completed or p.part_number in upload.etags]
    on_start(size, sum(part.size_bytes for part in sent))
    if not upload.completed:
        for part in upload.parts:
            if part.part_number in upload.etags:
                continue
            offset = (part.part_number - 1) * upload.part_size_bytes
            upload.etags[part.part_number] = put_part(part.url, _read_part(path, offset, part.size_bytes))
            state.put(key, upload)  # durable before the next part: a re-run starts after this one
            on_bytes(part.size_bytes)
            faults.reach("cli.after_part")
        parts = [{"part_number": n, "etag": etag} for n, etag in sorted(upload.etags.items())]
        api.request("POST", f"/v1/uploads/{upload.upload_id}/complete", json={"parts": parts})
        upload.completed = True
        state.put(key, upload)
    return UploadedFile(path, key, upload.upload_id, size, len(upload.parts), resumed)


def idempotency_key(name: str, curriculum: str, upload_ids: Sequence[str], titles: Sequence[str]) -> str:
    """The course submission's key: the same uploads and form give the same key, hence the same job."""
    digest = hashlib.sha256(orjson.dumps([name, curriculum, list(upload_ids), list(titles)])).hexdigest()
    return f"publish-{digest[:48]}"


def submit_course(
    api: ApiClient, name: str, curriculum: str, upload_ids: Sequence[str], titles: Sequence[str]
) -> dict[str, Any]:
    """POST /v1/courses from completed uploads (a multipart form of text fields); the 202 answer."""
    fields = [("name", name), ("curriculum", curriculum)]
    fields += [("video_upload_ids", upload_id) for upload_id in upload_ids]
    # Lecture titles, in file order: the catalogue's `titles` form field.
    fields += [("titles", title) for title in titles]
    accepted: dict[str, Any] = api.request(
        "POST",
        "/v1/courses",
        files=[(field, (None, value.encode())) for field, value in fields],
        headers={"Idempotency-Key": idempotency_key(name, curriculum, upload_ids, titles)},
    )
    return accepted


def follow_job(api: ApiClient, job_id: str, on_update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Follow the job's SSE stream until it ends (reconnecting when it drops); the final job."""
    drops = 0
    while True:
        try:
            for event, data in api.events(f"/v1/jobs/{job_id}/stream"):
                if event == "job":
                    on_update(data)
                elif event == "revoked":
                    raise ApiError(401, {"title": "Unauthorized", "detail": "the API token was revoked"})
                elif event == "end":
                    break
        except httpx.TransportError:
            drops += 1
            if drops > STREAM_RECONNECTS:
                raise
            time.sleep(min(2**drops, 15))
            continue
        job: dict[str, Any] = api.request("GET", f"/v1/jobs/{job_id}")
        if job["status"] in TERMINAL:
            return job
        # The stream closed before the end (the api restarted): follow it again.
        on_update(job)
        drops += 1
        if drops > STREAM_RECONNECTS:
            return job
        time.sleep(min(2**drops, 15))
