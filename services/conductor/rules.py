"""The conductor's decisions, pure: what must follow each accepted event of a course or of its tasks.

One rule per situation; each answers with the messages to send, and at most one lecture to stitch
(the only side effect, done by the runtime before it sends the LecturePublished that reports it).
Every rule is idempotent against the state machine: a message it sends twice is either the same
command (the encoder's claim runs it once, G1) or an event the state machine rejects the second time,
so a replayed batch after a crash (G3) never does anything twice that matters.

  CoursePlanned            → each slot of the plan gets a task: a new one (TaskQueued + EncodeTask),
                             the failed one again (JobRetryRequested + EncodeTask), a canceled one
                             replaced (a new generation); completed and running ones are kept. A lecture
                             whose tasks are all complete already is stitched.
  a task completed         → when it was its lecture's last one, the lecture is stitched.
  LecturePublished         → when every lecture is published, JobCompleted with all of them.
  a task failed            → the course fails with that lecture's reason.
  the course failed/ended  → every open task is canceled.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import msgspec

from services.conductor.book import Change, Course
from services.core.course_plan import slot_of, task_id_for
from services.core.jobs import JobState, JobStatus
from services.core.lanes import lane_of
from services.core.messages import Envelope, Payload, new_message
from services.core.payloads import (
    CancelJob,
    CoursePlanned,
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobRetryRequested,
    LecturePublished,
    PlannedLecture,
    PublishedVideo,
    TaskQueued,
    TaskSpec,
)

PRODUCER = "conductor"
# The reason a course's end gives the tasks it cancels.
CANCEL_REASON = "the course ended"


@dataclass(frozen=True, slots=True)
class Stitch:
    """Stitch one lecture of a course from its completed tasks, then report it (LecturePublished)."""

    course_job_id: UUID
    course_attempt: int
    lecture: PlannedLecture
    audio: JobState | None
    video: tuple[JobState, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the conductor does after one event: send these messages, stitch this lecture."""

    messages: tuple[Envelope, ...] = ()
    stitch: tuple[Stitch, ...] = ()


NOTHING = Decision()


def decide(change: Change, *, producer: str = PRODUCER) -> Decision:
    """The decision that follows one accepted event."""
    course = change.course
    if change.is_course_event:
        return _after_course_event(change, course, producer)
    if course.state.status != JobStatus.PROCESSING:
        return NOTHING  # a task of a course that is not running: kept as it is, for a retry
    task = change.after
    became = task.status if (change.before is None or change.before.status != task.status) else None
    if became == JobStatus.COMPLETED and task.task is not None:
        return _lecture_if_whole(course, task.task.lecture_index, producer)
    if became == JobStatus.FAILED and task.task is not None:
        return Decision(messages=(_course_failed(course, task, change.event, producer),))
    return NOTHING


def completes_course(change: Change) -> bool:
    """Whether this accepted event is the course's own completion (not a task's): the moment the log
    decided the course is complete, after which nothing reads its staging again (G4)."""
    before = change.before.status if change.before is not None else None
    return (
        change.is_course_event
        and change.after.status == JobStatus.COMPLETED
        and before != JobStatus.COMPLETED
    )


def _after_course_event(change: Change, course: Course, producer: str) -> Decision:
    state = change.after
    data = change.event.data
    if isinstance(data, CoursePlanned):
        return _run_plan(course, data, producer)
    if isinstance(data, LecturePublished) and course.plan is not None:
        published = {v.video_index for v in state.published}
        if published >= {lecture.index for lecture in course.plan.lectures}:
            completed = JobCompleted(outputs=JobOutputs(videos=state.published))
            return Decision(messages=(_course_message(course, completed, producer),))
        return NOTHING
    ended = change.before is not None and change.before.status == JobStatus.PROCESSING
    if ended and state.status in (JobStatus.FAILED, JobStatus.CANCELED):
        return Decision(messages=tuple(_cancel(course, t, producer) for t in course.open_tasks()))
    return NOTHING


def _run_plan(course: Course, plan: CoursePlanned, producer: str) -> Decision:
    messages: list[Envelope] = []
    for spec in plan.tasks:
        slot = slot_of(spec)
        task = course.current_task(slot)
        if task is None:
            messages += _queue(course, spec, producer)
        elif task.status == JobStatus.FAILED:
            messages += _retry(course, task, producer)
        elif task.status == JobStatus.CANCELED:
            generation = course.generations.get(slot, 1)
            # The replacement keeps the planned task's lane, so its slot stays on the same partition.
            replacement_id = task_id_for(course.course_job_id, slot, lane_of(spec.task_id), generation)
            replacement = _with_id(spec, replacement_id)
            messages += _queue(course, replacement, producer)
    stitches: list[Stitch] = []
    for lecture in plan.lectures:
        if lecture.index not in {v.video_index for v in course.state.published}:
            ready = _lecture_if_whole(course, lecture.index, producer)
            messages += ready.messages
            stitches += ready.stitch
    return Decision(messages=tuple(messages), stitch=tuple(stitches))


def _lecture_if_whole(course: Course, lecture_index: int, producer: str) -> Decision:
    """What publishes the lecture when every slot of it has a completed task, else nothing: a whole
    lecture's task already wrote its master playlist (LecturePublished at once); chunks are stitched."""
    if course.plan is None:
        return NOTHING
    tasks = [course.current_task(slot) for slot in course.lecture_slots(lecture_index)]
    done = [t for t in tasks if t is not None and t.status == JobStatus.COMPLETED and t.task is not None]
    if not tasks or len(done) != len(tasks):
        return NOTHING
    lecture = next(lecture for lecture in course.plan.lectures if lecture.index == lecture_index)
    whole = [t for t in done if t.task is not None and t.task.media == "lecture"]
    if whole:
        video = _whole_lecture(lecture, whole[0])
        if video is None:  # never from our encoder; a course must end rather than wait for ever
            message = f'Lecture {lecture.index + 1} "{lecture.title}" was reported without its playlist.'
            failed = JobFailed(error_type="incomplete_output", message=message, retryable=True)
            return Decision(messages=(_course_message(course, failed, producer),))
        stitch = Stitch(course.course_job_id, course.state.attempt, lecture, None, (whole[0],))
        return Decision(messages=(lecture_published(stitch, video, producer),))
    audio = next((t for t in done if t.task is not None and t.task.media == "audio"), None)
    video_tasks = tuple(
        sorted((t for t in done if t.task is not None and t.task.media == "video"), key=_chunk)
    )
    return Decision(stitch=(Stitch(course.course_job_id, course.state.attempt, lecture, audio, video_tasks),))


def _chunk(task: JobState) -> int:
    return task.task.chunk_index if task.task is not None else 0


def _whole_lecture(lecture: PlannedLecture, task: JobState) -> PublishedVideo | None:
    """The published lecture a whole lecture's task reported, or None if its result lacks it."""
    result = task.task_result
    if result is None or result.master_playlist_url is None or result.thumbnail_url is None:
        return None
    return PublishedVideo(
        video_index=lecture.index,
        master_playlist_url=result.master_playlist_url,
        renditions=result.renditions,
        duration_s=result.duration_s,
        thumbnail_url=result.thumbnail_url,
        poster_url=result.poster_url,
    )


def _course_failed(course: Course, task: JobState, event: Envelope, producer: str) -> Envelope:
    spec = task.task
    assert spec is not None
    title = _title(course, spec.lecture_index)
    if spec.media == "lecture":
        what = ""  # the whole lecture was the task
    elif spec.media == "audio":
        what = " (audio)"
    else:
        what = f" (part {spec.chunk_index + 1} of {spec.chunk_count})"
    reason = task.error_message or "no reason given"
    message = f'Lecture {spec.lecture_index + 1} "{title}"{what} failed: {reason}'
    retryable = event.data.retryable if isinstance(event.data, JobFailed) else True
    failed = JobFailed(error_type=task.error_type or "task_failed", message=message, retryable=retryable)
    return _course_message(course, failed, producer)


def _title(course: Course, lecture_index: int) -> str:
    for lecture in course.state.lectures:
        if lecture.index == lecture_index:
            return lecture.title
    return f"#{lecture_index + 1}"


# --- messages ----------------------------------------------------------------------------------


def _queue(course: Course, spec: TaskSpec, producer: str) -> list[Envelope]:
    state = course.state
    queued = TaskQueued(
        owner=state.owner,
        course_name=state.course_name,
        curriculum=state.curriculum,
        staging_prefix=state.staging_prefix,
        task=spec,
    )
    return [
        _task_message(course, spec.task_id, 1, queued, producer),
        _task_message(course, spec.task_id, 1, queued.encode_command(), producer),
    ]


def _retry(course: Course, task: JobState, producer: str) -> list[Envelope]:
    assert task.task is not None
    next_attempt = task.attempt + 1
    requested = JobRetryRequested(requested_by=producer, next_attempt=next_attempt)
    queued = TaskQueued(
        owner=task.owner,
        course_name=task.course_name,
        curriculum=task.curriculum,
        staging_prefix=task.staging_prefix,
        task=task.task,
    )
    return [
        _task_message(course, task.job_id, task.attempt, requested, producer),
        _task_message(course, task.job_id, next_attempt, queued.encode_command(), producer),
    ]


def _cancel(course: Course, task: JobState, producer: str) -> Envelope:
    command = CancelJob(requested_by=producer, reason=CANCEL_REASON)
    return _task_message(course, task.job_id, task.attempt, command, producer)


def _task_message(course: Course, task_id: UUID, attempt: int, data: Payload, producer: str) -> Envelope:
    return new_message(
        data, job_id=task_id, attempt=attempt, producer=producer, course_job_id=course.course_job_id
    )


def _course_message(course: Course, data: JobCompleted | JobFailed, producer: str) -> Envelope:
    return new_message(data, job_id=course.course_job_id, attempt=course.state.attempt, producer=producer)


def _with_id(spec: TaskSpec, task_id: UUID) -> TaskSpec:
    return msgspec.structs.replace(spec, task_id=task_id)


def lecture_published(stitch: Stitch, video: PublishedVideo, producer: str = PRODUCER) -> Envelope:
    """The LecturePublished that reports a stitched lecture, in the course attempt that asked for it."""
    return new_message(
        LecturePublished(video=video),
        job_id=stitch.course_job_id,
        attempt=stitch.course_attempt,
        producer=producer,
    )
