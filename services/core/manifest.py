"""The staging manifest at staging/<job_id>/manifest.json: what the api staged, read by the encoder.

The api writes it before it appends JobQueued + PublishCourse, so a command never names a manifest
that is not there yet; the encoder deletes the staging folder only after the job's final events are
acknowledged and its offset committed (G3). A manifest that is missing when the job has not ended is
therefore a permanent error (G5); when the job has ended it is a redelivery (G1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
# Every job's staged uploads live in a folder of their own under this one, named by the job id.
STAGING_ROOT = "staging/"


def staging_prefix(job_id: UUID) -> str:
    """The folder of a job's staged uploads."""
    return f"{STAGING_ROOT}{job_id}/"


def manifest_key(job_id: UUID) -> str:
    """The key of a job's manifest."""
    return f"{staging_prefix(job_id)}{MANIFEST_NAME}"


class StagedFile(BaseModel):
    """One uploaded file in staging: its S3 key (sanitised) and what the uploader called it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=1024)
    filename: str = Field(min_length=1, max_length=255, description="original name, kept intact (any script)")
    size_bytes: int = Field(ge=1)
    content_type: str = Field(min_length=1, max_length=255)


class StagedVideo(StagedFile):
    """A lecture video, in course order, with the thumbnail uploaded for it, if any."""

    index: int = Field(ge=0)
    thumbnail: StagedFile | None = None


class StagingManifest(BaseModel):
    """Everything the encoder needs to publish one course, and nothing it must look up elsewhere."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    job_id: UUID
    owner: str = Field(min_length=1)
    course_name: str = Field(min_length=1, max_length=200)
    curriculum: str = Field(min_length=1, max_length=200)
    videos: list[StagedVideo] = Field(min_length=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> bytes:
        """The manifest as stored in S3."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes) -> StagingManifest:
        """Parse and validate a stored manifest (raises pydantic.ValidationError when invalid)."""
        return cls.model_validate_json(raw)
