"""What `python -m bench fanout` derives from a measured course (pure: no I/O, no clock).

A course's figures are read from its log (bench/fanout.py); here they become per-task times, rates
(seconds of encoding per second of lecture) and the projection of a lecture that was not run: how
many tasks it is, its longest task and its wall time over N encoders on N machines. A projection is
arithmetic on this run's measured rates, never a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.core.chunking import plan_chunks


@dataclass(frozen=True)
class TaskRun:
    """One task of a measured course: what it encoded and how long its completed attempt ran."""

    media: str  # "lecture" (a whole short lecture), "audio" (a long lecture's audio) or "video" (a chunk)
    span_s: float  # seconds of the lecture it encodes
    run_s: float  # its attempt's JobStarted → TaskCompleted
    worker: str  # the encoder that ran it (JobStarted's worker)


@dataclass(frozen=True)
class Rates:
    """Seconds of a task's run per second of lecture, the slowest of this run's tasks of each kind."""

    video_s_per_s: float
    audio_s_per_s: float


@dataclass(frozen=True)
class Projection:
    """A lecture of `lecture_s` over `encoders` encoders, one a machine: ceil(tasks / encoders) waves
    of the longest task, plus planning and stitching."""

    lecture_s: float
    chunk_s: int
    encoders: int
    tasks: int
    waves: int
    longest_task_s: float
    plan_s: float
    stitch_s: float

    @property
    def wall_s(self) -> float:
        """PublishCourse → JobCompleted, projected."""
        return self.waves * self.longest_task_s + self.plan_s + self.stitch_s


def rates(tasks: Iterable[TaskRun]) -> Rates:
    """The slowest video chunk and the slowest audio task, per second of lecture they encode.

    Conservative on purpose: the projection's waves last as long as their longest task.
    """
    runs = list(tasks)
    video = [t.run_s / t.span_s for t in runs if t.media == "video" and t.span_s > 0]
    audio = [t.run_s / t.span_s for t in runs if t.media == "audio" and t.span_s > 0]
    if not video or not audio:
        raise ValueError("a chunked lecture's tasks are needed: at least one video chunk and its audio task")
    return Rates(max(video), max(audio))


def lecture_tasks(lecture_s: float, chunk_s: int, segment_s: float = 6) -> Sequence[float]:
    """The spans of a lecture's tasks as the planner cuts them: the whole lecture as one task, or one
    audio task (the whole lecture) and one video task per chunk (services/core/course_plan.py)."""
    chunks = plan_chunks(lecture_s, chunk_s, segment_s)
    if len(chunks) == 1:
        return (lecture_s,)
    return (lecture_s, *(c.duration_s for c in chunks))


def project(
    lecture_s: float,
    chunk_s: int,
    encoders: int,
    measured: Rates,
    plan_s: float,
    stitch_s_per_s: float,
    segment_s: float = 6,
) -> Projection:
    """The projected wall time of one lecture of `lecture_s` over `encoders` encoders.

    The longest task is the longer of the longest chunk at the video rate and the audio task at the
    audio rate; planning is taken as measured (one probe per lecture), stitching scales with the
    lecture's length (it reads and rewrites the chunks' segments).
    """
    if encoders < 1:
        raise ValueError("at least one encoder")
    spans = lecture_tasks(lecture_s, chunk_s, segment_s)
    if len(spans) == 1:
        # One task encodes picture and sound together; no stitching.
        longest = lecture_s * (measured.video_s_per_s + measured.audio_s_per_s)
        stitch = 0.0
    else:
        longest = max(max(spans[1:]) * measured.video_s_per_s, lecture_s * measured.audio_s_per_s)
        stitch = lecture_s * stitch_s_per_s
    return Projection(
        lecture_s=lecture_s,
        chunk_s=chunk_s,
        encoders=encoders,
        tasks=len(spans),
        waves=math.ceil(len(spans) / encoders),
        longest_task_s=longest,
        plan_s=plan_s,
        stitch_s=stitch,
    )


@dataclass(frozen=True)
class Event:
    """One accepted event of a course or of one of its tasks, as the projector stored it."""

    job_id: str
    type: str
    attempt: int
    at_s: float  # occurred_at, seconds on any common clock
    data: dict[str, object]
    task: dict[str, object] | None  # the task's spec (publish_jobs.task) for a task's event


@dataclass(frozen=True)
class CourseRun:
    """A measured course, read from its log: PublishCourse → JobCompleted and where the time went."""

    wall_s: float  # the course's JobQueued → its JobCompleted
    plan_s: float  # JobQueued → CoursePlanned (the course's attempt: probe every lecture)
    stitch_s: float  # the last TaskCompleted → the course's JobCompleted (stitch, publish, complete)
    tasks: tuple[TaskRun, ...]

    @property
    def longest(self) -> TaskRun:
        """The task that ran longest."""
        return max(self.tasks, key=lambda t: t.run_s)

    def per_worker(self) -> dict[str, list[TaskRun]]:
        """The tasks each encoder ran."""
        split: dict[str, list[TaskRun]] = {}
        for task in self.tasks:
            split.setdefault(task.worker, []).append(task)
        return split


def fold_course(course_id: str, events: Iterable[Event]) -> CourseRun:
    """The course's figures from its events and its tasks' events, in log order.

    A task's run is its completing attempt's JobStarted → TaskCompleted; an earlier, failed or
    taken-over attempt is not counted (it shows in the course's wall time only).
    """
    course: dict[str, float] = {}
    started: dict[tuple[str, int], tuple[float, str]] = {}
    runs: list[TaskRun] = []
    last_task_end = 0.0
    for event in events:
        if event.job_id == course_id:
            course.setdefault(event.type, event.at_s)
            if event.type == "JobCompleted":
                course["JobCompleted"] = event.at_s
            continue
        if event.type == "JobStarted":
            started[(event.job_id, event.attempt)] = (event.at_s, str(event.data.get("worker", "?")))
        elif event.type == "TaskCompleted" and event.task is not None:
            began, worker = started[(event.job_id, event.attempt)]
            span = float(str(event.task["end_s"])) - float(str(event.task["start_s"]))
            runs.append(TaskRun(str(event.task["media"]), span, event.at_s - began, worker))
            last_task_end = max(last_task_end, event.at_s)
    missing = {"JobQueued", "CoursePlanned", "JobCompleted"} - course.keys()
    if missing or not runs:
        raise ValueError(f"the course's log lacks {sorted(missing) or 'a completed task'}")
    return CourseRun(
        wall_s=course["JobCompleted"] - course["JobQueued"],
        plan_s=course["CoursePlanned"] - course["JobQueued"],
        stitch_s=course["JobCompleted"] - last_task_end,
        tasks=tuple(runs),
    )


def held_partitions(log: Iterable[dict[str, object]], topic: str) -> list[int]:
    """The partitions of `topic` an encoder holds after its `assigned`/`revoked` log lines (incremental:
    each line names the partitions gained or lost)."""
    held: set[int] = set()
    for line in log:
        message = line.get("message")
        if message not in ("assigned", "revoked"):
            continue
        names = line.get("partitions")
        changed = {
            int(name.rsplit("[", 1)[1].rstrip("]"))
            for name in (names if isinstance(names, list) else [])
            if isinstance(name, str) and name.rsplit("[", 1)[0] == topic
        }
        held = held | changed if message == "assigned" else held - changed
    return sorted(held)


def makespan(runs: Iterable[float], encoders: int) -> float:
    """How long `encoders` encoders take over tasks of these run times when each free encoder takes the
    longest task left (longest processing time first): the tasks spread over the group as evenly as
    their lengths allow, which is what the scale-out would reach if nothing held a task to one encoder."""
    if encoders < 1:
        raise ValueError("at least one encoder")
    loads = [0.0] * encoders
    for run in sorted(runs, reverse=True):
        loads[loads.index(min(loads))] += run
    return max(loads)
