"""Request and response bodies (XCreate / XPublic naming)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.api.text import Line, Text
from services.core.jobs import JobStatus


class LectureProgressPublic(BaseModel):
    """One lecture of a course job: its state, its progress, and once published its playlist."""

    index: int = Field(description="position in the course, from 0")
    title: str
    duration_s: float
    status: str = Field(description="queued, processing, published, failed or canceled")
    progress_percent: float
    tasks: int = Field(description="how many tasks encode it (1, or its audio + one per chunk)")
    tasks_completed: int
    error_message: str | None = None
    master_playlist_url: str | None = None


class JobPublic(BaseModel):
    """A publish job as its owner (or an admin) sees it."""

    job_id: UUID
    owner: str
    course_name: str
    curriculum: str
    video_count: int
    status: JobStatus
    attempt: int
    progress_percent: float
    current_step: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    canceled_at: datetime | None = None
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="master playlist URL, renditions and thumbnails of each video, once completed",
    )
    lectures: list[LectureProgressPublic] = Field(
        default_factory=list,
        description="each lecture's state once the course is planned (GET /v1/jobs/{id} and its stream)",
    )


class JobList(BaseModel):
    """One page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobPublic]
    next_cursor: str | None = None


class JobEventPublic(BaseModel):
    """One event of a job's history; a rejected event says why the state machine refused it."""

    event_id: UUID
    type: str
    attempt: int
    occurred_at: datetime
    producer: str
    data: dict[str, Any]
    rejected: bool
    rejection: str | None = None
    rejection_reason: str | None = None


class JobEventList(BaseModel):
    """A job's whole history, in log order."""

    job_id: UUID
    items: list[JobEventPublic]


class CourseAccepted(BaseModel):
    """The answer to an accepted course: its job, queued; follow Location for its status."""

    job_id: UUID
    status: JobStatus
    status_url: str
    stream_url: str


_EXAMPLE_HLS = "http://127.0.0.1:9000/coursecast/hls/0b7c5e2a-4f1d-4c3e-9a6b-2d8f1e0c7a51/1/0"


class LecturePublic(BaseModel):
    """One lecture of a published course: its title and where to play it."""

    lecture_id: UUID = Field(description="stable: the same after a re-encode of the course")
    index: int = Field(description="position in the course, from 0")
    title: str
    filename: str | None = Field(default=None, description="the video's original file name, if known")
    duration_s: float
    master_playlist_url: str = Field(description="the HLS master playlist")
    thumbnail_url: str
    poster_url: str | None = None


class CoursePublic(BaseModel):
    """A published course as its owner (or an admin) sees it: the catalogue entry for students."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "course_id": "0b7c5e2a-4f1d-4c3e-9a6b-2d8f1e0c7a51",
                    "owner": "kim",
                    "name": "데이터 과학 입문",
                    "curriculum": "DS-101",
                    "published_at": "2026-06-15T08:21:40.512Z",
                    "updated_at": "2026-06-15T08:21:40.512Z",
                    "job_id": "0b7c5e2a-4f1d-4c3e-9a6b-2d8f1e0c7a51",
                    "lectures": [
                        {
                            "lecture_id": "5d0f3c8e-9a41-5b7e-8c55-0f4f1a6b2c11",
                            "index": 0,
                            "title": "1강 소개",
                            "filename": "1강 소개.mp4",
                            "duration_s": 1325.4,
                            "master_playlist_url": f"{_EXAMPLE_HLS}/master.m3u8",
                            "thumbnail_url": f"{_EXAMPLE_HLS}/thumbnail.webp",
                            "poster_url": f"{_EXAMPLE_HLS}/poster.webp",
                        }
                    ],
                }
            ]
        }
    )

    course_id: UUID = Field(description="stable: the id of the job that first published the course")
    owner: str
    name: str
    curriculum: str
    published_at: datetime = Field(description="when the course was first published")
    updated_at: datetime = Field(description="when the publication its lectures come from completed")
    job_id: UUID = Field(description="the job whose objects the lectures play (a re-encode replaces it)")
    lectures: list[LecturePublic]


class CourseList(BaseModel):
    """One page of published courses, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[CoursePublic]
    next_cursor: str | None = None


class JobActionCreate(BaseModel):
    """Optional body of cancel."""

    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, max_length=2000)


class UploadCreate(BaseModel):
    """A direct upload to be: the file's name, exact size and kind."""

    model_config = ConfigDict(extra="forbid")

    filename: Line = Field(min_length=1, max_length=1000)
    size_bytes: int = Field(ge=1, le=2**63 - 1)
    content_type: Line = Field(default="application/octet-stream", min_length=1, max_length=255)
    kind: Literal["video", "thumbnail"] = "video"


class UploadPart(BaseModel):
    """Where to PUT one part of the file."""

    part_number: int
    url: str
    size_bytes: int


class UploadPublic(BaseModel):
    """A direct upload: PUT each part to its URL, then POST the ETags to `complete_url`."""

    upload_id: UUID
    kind: Literal["video", "thumbnail"]
    filename: str
    size_bytes: int
    state: Literal["pending", "completed", "used", "expired"]
    expires_at: datetime
    part_size_bytes: int
    parts: list[UploadPart] = Field(default_factory=list)
    complete_url: str


class CompletedPart(BaseModel):
    """One uploaded part: its number and the ETag S3 answered to its PUT."""

    model_config = ConfigDict(extra="forbid")

    part_number: int = Field(ge=1, le=10_000)
    etag: Line = Field(min_length=1, max_length=200)


class UploadComplete(BaseModel):
    """Every part of a direct upload, to finish it."""

    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=10_000)


class Health(BaseModel):
    """Liveness, or readiness with each dependency's answer."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


WebhookEvent = Literal["course.completed", "course.failed", "course.canceled"]


class WebhookCreate(BaseModel):
    """An endpoint to register: where to POST, and which notifications (all three by default)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http:// or https:// URL, no user or password in it, no fragment, ASCII only",
    )
    events: list[WebhookEvent] | None = Field(default=None, min_length=1, max_length=3)


class WebhookPublic(BaseModel):
    """A registered endpoint; its secret is shown only when it is created or rotated."""

    webhook_id: UUID
    url: str
    events: list[WebhookEvent]
    created_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="while set, the previous secret also signs (after a rotation)"
    )


class WebhookWithSecret(WebhookPublic):
    """A new endpoint, or one whose secret was just rotated: the signing secret, shown this once."""

    secret: str = Field(description="verify CourseCast-Signature with it; it is never shown again")


class WebhookList(BaseModel):
    """The caller's endpoints, oldest first."""

    items: list[WebhookPublic]
