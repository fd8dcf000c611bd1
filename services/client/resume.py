"""What `coursecast publish` has uploaded so far, kept in a small local JSON file so a re-run resumes.

A file is known by its absolute path, size and modification time (nanoseconds): change any of them
and it is a new file, uploaded afresh. For each file the state keeps its direct upload (id, expiry,
the presigned part URLs the api handed out when it opened the upload — the api shows them only then)
and the ETag of every part S3 has acknowledged. Every change is written at once, atomically (a
temporary file renamed over the old one), so a process killed at any instant leaves a state that
names exactly the parts that are in S3, or one fewer: a re-run PUTs only the rest (PUTting a part
again is harmless; S3 keeps the last). The file holds presigned URLs, so it is private (0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

STATE_VERSION = 1
# An upload this close to its expiry is not resumed: its remaining parts might not make it in time.
EXPIRY_MARGIN = timedelta(minutes=5)


def default_state_path() -> Path:
    """~/.cache/coursecast/uploads.json (XDG_CACHE_HOME respected)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "coursecast" / "uploads.json"


def file_key(path: Path) -> str:
    """The identity of a local file for resuming: absolute path, size, mtime in nanoseconds."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


@dataclass
class PartPlan:
    """Where to PUT one part, and its size."""

    part_number: int
    url: str
    size_bytes: int


@dataclass
class FileUpload:
    """One file's direct upload as far as it went."""

    upload_id: str
    expires_at: datetime
    part_size_bytes: int
    parts: list[PartPlan]
    etags: dict[int, str] = field(default_factory=dict)
    completed: bool = False

    def usable(self, now: datetime) -> bool:
        """True when the upload may still be resumed."""
        return self.completed or self.expires_at - EXPIRY_MARGIN > now

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in the state file."""
        return {
            "upload_id": self.upload_id,
            "expires_at": self.expires_at.isoformat(),
            "part_size_bytes": self.part_size_bytes,
            "parts": [vars(part) for part in self.parts],
            "etags": {str(number): etag for number, etag in self.etags.items()},
            "completed": self.completed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileUpload:
        """The upload a state-file entry describes."""
        return cls(
            upload_id=str(data["upload_id"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            part_size_bytes=int(data["part_size_bytes"]),
            parts=[
                PartPlan(int(part["part_number"]), str(part["url"]), int(part["size_bytes"]))
                for part in data["parts"]
            ],
            etags={int(number): str(etag) for number, etag in data.get("etags", {}).items()},
            completed=bool(data.get("completed", False)),
        )


class UploadState:
    """The state file: file key → FileUpload, saved after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, FileUpload] = {}
        if path.exists():
            data = orjson.loads(path.read_bytes())
            if data.get("version") == STATE_VERSION:
                self.files = {key: FileUpload.from_json(entry) for key, entry in data["files"].items()}

    def resumable(self, key: str) -> FileUpload | None:
        """The upload of the file `key` to go on with, None when there is none (or it is too old)."""
        upload = self.files.get(key)
        return upload if upload is not None and upload.usable(datetime.now(UTC)) else None

    def put(self, key: str, upload: FileUpload) -> None:
        """Record (or update) a file's upload, durably."""
        self.files[key] = upload
        self.save()

    def forget(self, keys: list[str]) -> None:
        """Drop files whose uploads became a job (or expired), durably."""
        for key in keys:
            self.files.pop(key, None)
        self.save()

    def save(self) -> None:
        """Write the whole state atomically: a crash leaves the old file or the new one, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"version": STATE_VERSION, "files": {k: v.to_json() for k, v in self.files.items()}}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
