"""The conductor's memory, pure: every course of its partitions and every task of each, folded from the log.

A course and its tasks share one partition of the events topic (a task's events are keyed by its
course, messages.Envelope.course_job_id), so a partition's history holds each of its courses whole
and in order. The book folds that history with the job state machine itself (jobs.apply): the
states it holds are exactly the rows the projector writes, and an event the state machine rejects
(a stale task attempt, a chunk event after its course ended) changes nothing here either. Rebuilt
from the log on every assignment (G4), so the conductor keeps no state of its own anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from uuid import UUID, uuid5

from services.core.jobs import JobState, Rejection, apply
from services.core.messages import Envelope
from services.core.payloads import CoursePlanned, TaskSpec

# A slot is one piece of a lecture's work as planned: which lecture, which media, which span. The task
# that stands for it may change (a canceled task is replaced by a new one), the slot does not.
Slot = tuple[int, str, int, float, float]
# The namespace of task ids: a task's id is a function of its course, its slot and its generation,
# so the planner and the conductor name the same task without asking anyone (and a replay too).
TASK_NAMESPACE: Final = UUID("8f0e6a0c-4d1b-5b9e-a3c4-2f6d7e8a9b10")


def slot_of(task: TaskSpec) -> Slot:
    """The slot a task stands for."""
    return (task.lecture_index, task.media, task.chunk_index, task.start_s, task.end_s)


def task_id_for(course_job_id: UUID, slot: Slot, generation: int = 0) -> UUID:
    """The id of the `generation`-th task of `slot` in a course (0: the one the plan names)."""
    lecture, media, chunk, start, end = slot
    return uuid5(
        TASK_NAMESPACE, f"{course_job_id}/{lecture}/{media}/{chunk}/{start:.6f}/{end:.6f}/{generation}"
    )


@dataclass(slots=True)
class Course:
    """One course as the conductor knows it: the course job, its plan, and its tasks."""

    state: JobState
    plan: CoursePlanned | None = None
    tasks: dict[UUID, JobState] = field(default_factory=dict)
    # The task that now stands for each slot, and how many tasks each slot has had.
    current: dict[Slot, UUID] = field(default_factory=dict)
    generations: dict[Slot, int] = field(default_factory=dict)

    @property
    def course_job_id(self) -> UUID:
        return self.state.job_id

    def lecture_slots(self, lecture_index: int) -> list[Slot]:
        """The slots of one lecture in the current plan, audio first, then the chunks in order."""
        if self.plan is None:
            return []
        return [slot_of(t) for t in self.plan.tasks if t.lecture_index == lecture_index]

    def current_task(self, slot: Slot) -> JobState | None:
        task_id = self.current.get(slot)
        return None if task_id is None else self.tasks.get(task_id)

    def open_tasks(self) -> list[JobState]:
        """The tasks still queued or running (current or not): what a course's end must cancel."""
        return [t for t in self.tasks.values() if t.status in ("queued", "processing")]


@dataclass(frozen=True, slots=True)
class Change:
    """One accepted event: the job it moved (the course or one of its tasks), before and after."""

    event: Envelope
    course: Course
    before: JobState | None
    after: JobState

    @property
    def is_course_event(self) -> bool:
        return self.after.job_id == self.course.course_job_id


class Book:
    """Every course of the partitions this conductor owns; `observe` folds one event."""

    def __init__(self) -> None:
        self.courses: dict[UUID, Course] = {}

    def forget_all(self) -> None:
        self.courses.clear()

    def observe(self, event: Envelope) -> Change | None:
        """Fold `event`; the change it made, or None when it changed nothing (rejected or unknown)."""
        course_job_id = event.course_job_id or event.job_id
        course = self.courses.get(course_job_id)
        if event.job_id == course_job_id:
            before = course.state if course is not None else None
            outcome = apply(before, event)
            if isinstance(outcome, Rejection):
                return None
            if course is None:
                course = self.courses[course_job_id] = Course(outcome)
            course.state = outcome
            if isinstance(event.data, CoursePlanned):
                course.plan = event.data
            return Change(event, course, before, outcome)
        if course is None:
            return None  # a task of a course this log never queued: nothing to conduct
        before = course.tasks.get(event.job_id)
        outcome = apply(before, event)
        if isinstance(outcome, Rejection):
            return None
        course.tasks[event.job_id] = outcome
        if before is None and outcome.task is not None:
            slot = slot_of(outcome.task)
            course.current[slot] = event.job_id
            course.generations[slot] = course.generations.get(slot, 0) + 1
        return Change(event, course, before, outcome)
