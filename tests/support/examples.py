"""Valid example `data` for every message type, shared by the unit tests.

EXAMPLES holds each payload in its JSON form (as on the wire); `example` builds the typed message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.core.messages import Envelope, MessageType, Payload, new_message
from services.core.payloads import LATEST_PAYLOADS

JOB_ID = uuid.UUID("0b7c5e2a-4f1d-4c3e-9a6b-2d8f1e0c7a51")
STAGING_PREFIX = f"staging/{JOB_ID}/"
OCCURRED_AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
CDN = "https://cdn.coursecast.dev/courses/intro-to-algorithms"

RENDITIONS: list[dict[str, Any]] = [
    {"name": "360p", "width": 640, "height": 360, "bandwidth": 800_000, "codecs": "avc1.4d401e,mp4a.40.2"},
    {"name": "720p", "width": 1280, "height": 720, "bandwidth": 2_800_000, "codecs": "avc1.64001f,mp4a.40.2"},
    {"name": "audio", "width": 0, "height": 0, "bandwidth": 128_000, "codecs": "mp4a.40.2"},
]

COURSE: dict[str, Any] = {
    "owner": "instructor-42",
    "course_name": "Introduction to Algorithms",
    "curriculum": "Computer Science",
    "staging_prefix": STAGING_PREFIX,
    "manifest_key": f"{STAGING_PREFIX}manifest.json",
    "video_count": 2,
}

TASK: dict[str, Any] = {
    "task_id": "5d2f0c1e-8a7b-4e6d-9c3f-1b0a2e4d6f80",
    "lecture_index": 1,
    "media": "video",
    "chunk_index": 2,
    "chunk_count": 3,
    "start_s": 600,
    "end_s": 720.5,
    "source_key": f"{STAGING_PREFIX}videos/1-graphs.mp4",
}

EXAMPLES: dict[MessageType, dict[str, Any]] = {
    MessageType.PUBLISH_COURSE: COURSE,
    MessageType.CANCEL_JOB: {"requested_by": "instructor-42", "reason": "wrong video uploaded"},
    MessageType.JOB_QUEUED: {
        **COURSE,
        "course_id": str(JOB_ID),
        "lectures": [
            {"index": 0, "title": "정렬과 탐색", "filename": "01 정렬과 탐색.mp4"},
            {"index": 1, "title": "Graphs"},
        ],
    },
    MessageType.JOB_STARTED: {"worker": "encoder@host-1:4242"},
    MessageType.JOB_PROGRESS: {"percent": 42.5, "step": "transcoding", "video_index": 1, "message": "720p"},
    MessageType.VIDEO_ENCODED: {
        "video_index": 0,
        "master_playlist_url": f"{CDN}/0/master.m3u8",
        "renditions": RENDITIONS,
        "duration_s": 3125.48,
    },
    MessageType.THUMBNAIL_SAVED: {
        "video_index": 0,
        "kind": "poster",
        "source": "uploaded",
        "url": f"{CDN}/0/poster.jpg",
    },
    MessageType.JOB_COMPLETED: {
        "outputs": {
            "videos": [
                {
                    "video_index": 0,
                    "master_playlist_url": f"{CDN}/0/master.m3u8",
                    "renditions": RENDITIONS,
                    "duration_s": 3125.48,
                    "thumbnail_url": f"{CDN}/0/thumbnail.jpg",
                    "poster_url": f"{CDN}/0/poster.jpg",
                },
                {
                    "video_index": 1,
                    "master_playlist_url": f"{CDN}/1/master.m3u8",
                    "renditions": RENDITIONS[:2],
                    "duration_s": 1800,
                    "thumbnail_url": f"{CDN}/1/thumbnail.jpg",
                    "poster_url": None,
                },
            ]
        }
    },
    MessageType.JOB_FAILED: {
        "error_type": "NoSuchKey",
        "message": f"staged object {STAGING_PREFIX}video-0.mp4 does not exist",
        "retryable": False,
    },
    MessageType.JOB_RETRY_SCHEDULED: {
        "error_type": "s3_unavailable",
        "message": "S3 answered 503 Slow Down while uploading segments",
        "next_attempt": 2,
        "delay_s": 30,
    },
    MessageType.JOB_RETRY_REQUESTED: {"requested_by": "instructor-42", "next_attempt": 2},
    MessageType.JOB_STALLED: {
        "last_heartbeat_at": "2026-03-01T09:25:00.5Z",
        "stall_timeout_s": 300,
        "will_retry": True,
        "message": "no heartbeat from encoder@host-1:4242 for 300 s",
    },
    MessageType.JOB_TIMED_OUT: {
        "time_limit_s": 14_400,
        "will_retry": False,
        "message": "the encode ran past its 4 h time limit and was stopped",
    },
    MessageType.JOB_CANCELED: {"requested_by": "instructor-42"},
    MessageType.ENCODE_TASK: {"owner": "instructor-42", "staging_prefix": STAGING_PREFIX, "task": TASK},
    MessageType.COURSE_PLANNED: {
        "lectures": [
            {"index": 0, "title": "Sorting", "duration_s": 61.2},
            {"index": 1, "title": "Graphs", "duration_s": 720.5},
        ],
        "tasks": [
            {
                **TASK,
                "lecture_index": 0,
                "media": "audio",
                "chunk_index": 0,
                "chunk_count": 1,
                "start_s": 0,
                "end_s": 61.2,
                "task_id": "0c5a6f7e-1b2c-4d3e-8f9a-0b1c2d3e4f50",
                "source_key": f"{STAGING_PREFIX}videos/0-sorting.mp4",
                "thumbnail_key": f"{STAGING_PREFIX}thumbnails/0-sorting.jpg",
            },
            TASK,
        ],
        "chunk_s": 300,
        "segment_s": 6,
    },
    MessageType.TASK_QUEUED: {
        "owner": "instructor-42",
        "course_name": "Introduction to Algorithms",
        "curriculum": "Computer Science",
        "staging_prefix": STAGING_PREFIX,
        "task": TASK,
    },
    MessageType.TASK_COMPLETED: {
        "output_prefix": f"hls/{JOB_ID}/tasks/{TASK['task_id']}/1/",
        "renditions": RENDITIONS[:2],
        "duration_s": 120.5,
    },
    MessageType.LECTURE_PUBLISHED: {
        "video": {
            "video_index": 1,
            "master_playlist_url": f"{CDN}/1/master.m3u8",
            "renditions": RENDITIONS,
            "duration_s": 720.5,
            "thumbnail_url": f"{CDN}/1/thumbnail.jpg",
            "poster_url": None,
        }
    },
    MessageType.COURSE_UNPUBLISHED: {"course_id": str(JOB_ID), "requested_by": "instructor-42"},
}

JOB_QUEUED_V1: dict[str, Any] = COURSE
"""JobQueued v1 data (before course ids and titles), for the upcaster's tests."""

PRODUCERS: dict[MessageType, str] = {
    MessageType.PUBLISH_COURSE: "api",
    MessageType.CANCEL_JOB: "api",
    MessageType.JOB_QUEUED: "api",
    MessageType.JOB_RETRY_REQUESTED: "api",
    MessageType.JOB_CANCELED: "api",
    MessageType.JOB_STALLED: "watchdog",
    MessageType.ENCODE_TASK: "conductor",
    MessageType.TASK_QUEUED: "conductor",
    MessageType.LECTURE_PUBLISHED: "conductor",
    MessageType.COURSE_UNPUBLISHED: "api",
}


def example_payload(type: MessageType) -> Payload:
    """The example data of `type` as its payload class (latest version)."""
    return msgspec.convert(EXAMPLES[type], LATEST_PAYLOADS[type])


def example(type: MessageType, attempt: int = 1, **data_overrides: Any) -> Envelope:
    """A valid message of `type` for the example job, with some data fields replaced.

    The replacements are not checked (a struct's constructor checks no types), so a test can build
    a message the codec must refuse.
    """
    return new_message(
        msgspec.structs.replace(example_payload(type), **data_overrides),
        job_id=JOB_ID,
        attempt=attempt,
        producer=PRODUCERS.get(type, "encoder@host-1:4242"),
        occurred_at=OCCURRED_AT,
    )
