"""A course's plan, pure: its lectures cut into tasks (docs/fan-out.md), and the ids those tasks get.

A lecture up to the chunk length is one "lecture" task: the whole lecture in one encode, as one
process would do it. A longer lecture is one "audio" task (the lecture's audio, thumbnail and poster)
and one "video" task per chunk of its timeline (chunking.plan_chunks: boundaries on the segment grid),
which the conductor stitches once they are all done. Every task may run on any encoder of the group.

A task's id is a function of its course, its slot, its generation and its lane, so the planner, the
conductor and a replay name the same task without asking anyone; a re-plan after a retry finds the
same ids. The lane (services/core/lanes.py) picks the task's partition: the plan numbers its tasks'
lanes one after the other, from the course's own, so a course's tasks take the partitions in turn and
spread over every encoder of the group; a task that replaces a canceled one keeps the slot's lane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID, uuid5

from services.core.chunking import plan_chunks
from services.core.lanes import in_lane, lane_of
from services.core.payloads import CoursePlanned, PlannedLecture, TaskSpec

# A slot is one piece of a lecture's work as planned: which lecture, which media, which span. The task
# that stands for it may change (a canceled task is replaced by a new generation); the slot does not.
Slot = tuple[int, str, int, float, float]
TASK_NAMESPACE: Final = UUID("8f0e6a0c-4d1b-5b9e-a3c4-2f6d7e8a9b10")


def slot_of(task: TaskSpec) -> Slot:
    """The slot a task stands for."""
    return (task.lecture_index, task.media, task.chunk_index, task.start_s, task.end_s)


def task_id_for(course_job_id: UUID, slot: Slot, lane: int, generation: int = 0) -> UUID:
    """The id of the `generation`-th task of `slot` in a course (0: the one the plan names), in `lane`."""
    lecture, media, chunk, start, end = slot
    name = f"{course_job_id}/{lecture}/{media}/{chunk}/{start:.6f}/{end:.6f}/{generation}"
    return in_lane(uuid5(TASK_NAMESPACE, name), lane)


def task_lane(course_job_id: UUID, ordinal: int) -> int:
    """The lane of the plan's `ordinal`-th task (from 0): the ones after the course's own lane."""
    return lane_of(course_job_id) + 1 + ordinal


@dataclass(frozen=True, slots=True)
class LectureSource:
    """A lecture as the planner measured it: what the plan needs of its staged files and its probe."""

    index: int
    title: str
    duration_s: float
    source_key: str
    thumbnail_key: str | None = None


def plan_course(
    course_job_id: UUID, lectures: Sequence[LectureSource], chunk_s: int, segment_s: int
) -> CoursePlanned:
    """Every task of the course, lecture by lecture (audio first, then the chunks in order)."""
    tasks: list[TaskSpec] = []
    for lecture in sorted(lectures, key=lambda item: item.index):
        tasks += _lecture_tasks(course_job_id, lecture, chunk_s, segment_s, first=len(tasks))
    return CoursePlanned(
        lectures=tuple(
            PlannedLecture(index=lecture.index, title=lecture.title, duration_s=lecture.duration_s)
            for lecture in sorted(lectures, key=lambda item: item.index)
        ),
        tasks=tuple(tasks),
        chunk_s=chunk_s,
        segment_s=segment_s,
    )


def _lecture_tasks(
    course_job_id: UUID, lecture: LectureSource, chunk_s: int, segment_s: int, first: int
) -> list[TaskSpec]:
    """The lecture's tasks, the plan's `first`-th onwards."""
    chunks = plan_chunks(lecture.duration_s, chunk_s, segment_s)

    def task(media: str, chunk_index: int, start_s: float, end_s: float, thumbnail: bool) -> TaskSpec:
        slot = (lecture.index, media, chunk_index, start_s, end_s)
        ordinal = first + (0 if media != "video" else 1 + chunk_index)
        return TaskSpec(
            task_id=task_id_for(course_job_id, slot, task_lane(course_job_id, ordinal)),
            lecture_index=lecture.index,
            media=media,  # type: ignore[arg-type]
            chunk_index=chunk_index,
            chunk_count=len(chunks),
            start_s=start_s,
            end_s=end_s,
            source_key=lecture.source_key,
            thumbnail_key=lecture.thumbnail_key if thumbnail else None,
        )

    if len(chunks) == 1:
        return [task("lecture", 0, 0.0, lecture.duration_s, True)]
    return [task("audio", 0, 0.0, lecture.duration_s, True)] + [
        task("video", chunk.index, chunk.start_s, chunk.end_s, False) for chunk in chunks
    ]
