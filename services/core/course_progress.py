"""A course's progress lecture by lecture, from its plan and its tasks' rows (pure).

What the status shows while a course runs (docs/fan-out.md): each lecture's state and percent, and the
course's percent weighted by the lectures' durations, so a 2-hour lecture counts for more than a
5-minute one. A lecture's percent is its tasks' progress weighted by the time each covers; the audio
task of a chunked lecture weighs a tenth of its span (it is cheap next to the video ladder). A
published lecture is at 100 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from services.core.payloads import PlannedLecture, PublishedVideo, TaskSpec

AUDIO_WEIGHT: Final = 0.1


@dataclass(frozen=True, slots=True)
class TaskRow:
    """What the progress of a course needs of one of its tasks' rows."""

    task: TaskSpec
    status: str
    progress_percent: float
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class LectureProgress:
    """One lecture of a course, as the status shows it."""

    index: int
    title: str
    duration_s: float
    status: str  # queued, processing, published, failed or canceled
    progress_percent: float
    tasks: int
    tasks_completed: int
    error_message: str | None = None
    master_playlist_url: str | None = None


def lecture_progress(
    lectures: Sequence[PlannedLecture], published: Sequence[PublishedVideo], tasks: Iterable[TaskRow]
) -> list[LectureProgress]:
    """Each planned lecture's state; of several tasks for one slot, the latest generation counts."""
    by_lecture: dict[int, dict[tuple[object, ...], TaskRow]] = {}
    for row in tasks:
        spec = row.task
        slot = (spec.media, spec.chunk_index, spec.start_s, spec.end_s)
        # A canceled task replaced by a new one: the open or finished one stands for the slot.
        kept = by_lecture.setdefault(spec.lecture_index, {}).get(slot)
        if kept is None or kept.status == "canceled":
            by_lecture[spec.lecture_index][slot] = row
    done = {video.video_index: video for video in published}
    return [
        _one(lecture, list(by_lecture.get(lecture.index, {}).values()), done.get(lecture.index))
        for lecture in lectures
    ]


def course_percent(lectures: Sequence[LectureProgress]) -> float:
    """The course's percent, weighted by each lecture's duration."""
    total = sum(lecture.duration_s for lecture in lectures)
    if total <= 0:
        return 0.0
    return round(sum(lecture.progress_percent * lecture.duration_s for lecture in lectures) / total, 2)


def _one(lecture: PlannedLecture, rows: list[TaskRow], video: PublishedVideo | None) -> LectureProgress:
    completed = sum(1 for row in rows if row.status == "completed")
    if video is not None:
        return LectureProgress(
            lecture.index, lecture.title, lecture.duration_s, "published", 100.0, len(rows), completed,
            master_playlist_url=video.master_playlist_url,
        )  # fmt: skip
    weights = [_weight(row.task) for row in rows]
    percent = 0.0
    if rows and sum(weights) > 0:
        shares = [
            (100.0 if row.status == "completed" else row.progress_percent) * w
            for row, w in zip(rows, weights, strict=True)
        ]
        percent = round(min(sum(shares) / sum(weights), 99.9), 2)  # 100 % only once published
    failed = next((row for row in rows if row.status == "failed"), None)
    if failed is not None:
        status = "failed"
    elif rows and all(row.status == "canceled" for row in rows):
        status = "canceled"
    elif any(row.status in ("processing", "completed") for row in rows):
        status = "processing"
    else:
        status = "queued"
    return LectureProgress(
        lecture.index, lecture.title, lecture.duration_s, status, percent, len(rows), completed,
        error_message=failed.error_message if failed is not None else None,
    )  # fmt: skip


def _weight(task: TaskSpec) -> float:
    span = max(task.end_s - task.start_s, 0.0)
    return span * AUDIO_WEIGHT if task.media == "audio" else span
