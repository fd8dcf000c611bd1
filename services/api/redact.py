"""What the api shows of the pipeline's own words: no hostnames, pids, paths or raw exception text.

Job views and histories carry text written by encoders, the watchdog and the projector (error
messages, rejection reasons, event data). Those may name a worker (`host:pid`), a local file
(`/tmp/...`) or quote an exception. The api shows clients only the public fields of each event, and
every free text passes through `public_text`, which masks such details and falls back to a plain
sentence when the text is a traceback.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgspec

from services.core.course_progress import TaskRow, course_percent, lecture_progress
from services.core.payloads import PlannedLecture, PublishedVideo, TaskSpec

# Event data keys that identify machines or processes: never shown.
INTERNAL_KEYS = frozenset(
    {"worker", "host", "hostname", "pid", "node", "consumer", "member_id", "path", "trace", "traceback"}
)
MAX_TEXT = 500

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.MULTILINE)
_WORKER = re.compile(r"\b[\w.\-]+@[\w.\-]+(?::\d+)?\b")  # name@host:pid
_PATH = re.compile(r"(?<![\w:/])(?:/[\w.\-@+%~]+){2,}/?|\b[A-Za-z]:\\[^\s'\"]+")
_URL = re.compile(r"\b(?:https?|s3|file)://[^\s'\"<>]+")
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\blocalhost(?::\d+)?\b")
# host:port with a letter in the host; "12:30:00" (a time) is left alone.
_HOST_PORT = re.compile(r"\b(?=[\w.\-]*[A-Za-z])[\w\-]+(?:\.[\w\-]+)*:\d{2,5}\b(?![:\d])")
_PID = re.compile(r"\b(?:pid|process)\s*[=:]?\s*\d+\b", re.IGNORECASE)


def public_text(text: str | None) -> str | None:
    """`text` with internal details masked; a traceback becomes a plain sentence."""
    if text is None:
        return None
    if _TRACEBACK.search(text):
        return "an internal error occurred (details are in the service logs)"
    for pattern, mask in (
        (_URL, "[url]"),
        (_WORKER, "[worker]"),
        (_PATH, "[path]"),
        (_ADDRESS, "[address]"),
        (_HOST_PORT, "[address]"),
        (_PID, "[process]"),
    ):
        text = pattern.sub(mask, text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def public_data(data: Any) -> Any:
    """Event data as clients see it: internal keys dropped, every string masked, outputs intact."""
    if isinstance(data, dict):
        return {
            key: value if key.endswith("_url") or key == "url" else public_data(value)
            for key, value in data.items()
            if key not in INTERNAL_KEYS
        }
    if isinstance(data, list):
        return [public_data(item) for item in data]
    if isinstance(data, str):
        return public_text(data)
    return data


def public_producer(producer: str) -> str:
    """The role that wrote an event ("encoder", "api", "watchdog"), without its host and pid."""
    role = producer.split("@", 1)[0].removeprefix("coursecast-")
    return public_text(role) or "unknown"


def public_job_row(row: dict[str, Any]) -> dict[str, Any]:
    """A job row (JobPublic's columns) with the pipeline's free text masked, and a planned course's
    lectures (from its plan, its published lectures and its tasks' rows) with their progress."""
    for column in ("error_message", "current_step"):
        if row.get(column):
            row[column] = public_text(row[column])
    plan = msgspec.convert(row.pop("lectures", None) or [], tuple[PlannedLecture, ...])
    published = msgspec.convert(row.pop("published", None) or [], tuple[PublishedVideo, ...])
    tasks = [
        TaskRow(
            task=msgspec.convert(t["task"], TaskSpec),
            status=t["status"],
            progress_percent=t["progress_percent"],
            error_message=public_text(t["error_message"]) if t.get("error_message") else None,
        )
        for t in row.pop("tasks", None) or []
    ]
    lectures = lecture_progress(plan, published, tasks)
    row["lectures"] = [dataclasses.asdict(lecture) for lecture in lectures]
    if lectures and row["status"] == "processing":
        row["progress_percent"] = course_percent(lectures)
    return row
